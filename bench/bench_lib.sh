# bench_lib.sh: what the benchmark scripts share (sourced, not run): a free
# loopback port, and a throwaway redis-server (no persistence) under $TMP
# whose port it prints. The caller sets TMP and stops the servers.
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
