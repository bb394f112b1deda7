# bench_lib.sh: what the benchmark scripts share (sourced, not run): a free
# loopback port, a throwaway redis-server (no persistence) under $TMP whose
# port it prints (the caller sets TMP and stops the servers), and the path
# of a data set by name.
data_path() { # ml-100k | ml-1m | PATH: the ratings file ($UNLEARND_DATA_DIR or ../shared/data)
  local dir="${UNLEARND_DATA_DIR:-../shared/data}"
  case "$1" in
    ml-100k) echo "$dir/ml-100k/u.data" ;;
    ml-1m) echo "$dir/ml-1m/ratings.csv" ;;
    *) echo "$1" ;;
  esac
}
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
start_redis() { # prints the port
  local port; port=$(free_port)
  mkdir -p "$TMP/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$TMP/redis-$port" --save '' \
    --appendonly no --daemonize yes --logfile "$TMP/redis-$port/log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$port"
}
