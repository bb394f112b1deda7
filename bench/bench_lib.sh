# bench_lib.sh: what the benchmark scripts share (sourced, not run): a free
# loopback port, a throwaway redis-server (no persistence) under $TMP
# whose port it prints, and bench_cleanup (the caller sets TMP).
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
# bench_cleanup: the EXIT trap of a script with one worker, one broker and
# one redis-server ($WORKER_PID, $BROKER_PID, $REDIS_PORT, each may be
# empty): stops them and removes $TMP (kept with KEEP=1).
bench_cleanup() {
  for pid in $WORKER_PID $BROKER_PID; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  [ -n "$REDIS_PORT" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
