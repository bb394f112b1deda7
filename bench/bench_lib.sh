# bench_lib.sh: what the benchmark scripts share (sourced from the
# repository's root, not run): a free loopback port, a throwaway
# redis-server (no persistence) under $TMP whose port it prints (the caller
# sets TMP and stops the servers), the path of a data set by name, the
# default data of the stream benchmarks and bench_cleanup.
data_path() { # ml-100k | ml-1m | PATH: the ratings file ($UNLEARND_DATA_DIR or ../shared/data)
  local dir="${UNLEARND_DATA_DIR:-../shared/data}"
  case "$1" in
    ml-100k) echo "$dir/ml-100k/u.data" ;;
    ml-1m) echo "$dir/ml-1m/ratings.csv" ;;
    *) echo "$1" ;;
  esac
}

# free_port: a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_redis: a redis-server on a free port under $TMP; prints the port.
start_redis() {
  local port; port=$(free_port)
  mkdir -p "$TMP/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$TMP/redis-$port" --save '' \
    --appendonly no --daemonize yes --logfile "$TMP/redis-$port/log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
  echo "$port"
}

# default_data DIR: the ratings file a benchmark runs on unless given one:
# ML-1M from ../shared/data when present, else a synthetic file of 996,000
# ratings (6000 users x 166, seed 7) written into DIR. Prints its path.
default_data() {
  local data=../shared/data/ml-1m/ratings.csv
  if [ ! -r "$data" ]; then
    data="$1/synthetic.csv"
    awk 'BEGIN { srand(7); print "user,item,rating";
      for (u = 1; u <= 6000; u++) for (j = 0; j < 166; j++)
        print u "," (u * 7 + j * 13) % 3700 + 1 "," int(rand() * 5) + 1 }' >"$data"
  fi
  echo "$data"
}

# bench_cleanup: the EXIT trap of a script with one worker, one broker and
# one redis-server ($WORKER_PID, $BROKER_PID, $REDIS_PORT, each may be
# empty): stops them and removes $TMP (kept with KEEP=1).
bench_cleanup() {
  for pid in $WORKER_PID $BROKER_PID; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -n "$REDIS_PORT" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
