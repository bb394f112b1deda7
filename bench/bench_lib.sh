# bench_lib.sh: what the benchmark scripts share (sourced from the
# repository's root, not run): a scratch directory with the cleanup of what
# a run started (bench_tmp), a free loopback port, a throwaway redis-server
# (no persistence) under $TMP whose port it prints, the path of a data set
# by name, the default data of the stream benchmarks and the seeded 80/20
# split.

# bench_tmp: a fresh $TMP for the run, the local broker's address file in it,
# no Redis settings from the environment; at exit the processes in $PIDS are
# killed, the redis-servers on $REDIS_PORTS stopped and $TMP removed (KEEP=1
# keeps it).
bench_tmp() {
  TMP="$(mktemp -d)"
  PIDS="" REDIS_PORTS=""
  trap bench_cleanup EXIT
  export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
  unset UNLEARND_REDIS_HOST UNLEARND_REDIS_PORT UNLEARND_REDIS_CLUSTER UNLEARND_REDIS_PASSWORD
}
# bench_cleanup: the EXIT trap: kills the processes in $PIDS, $WORKER_PID
# and $BROKER_PID, stops the redis-servers on $REDIS_PORTS and $REDIS_PORT
# (each may be empty or unset) and removes $TMP (KEEP=1 keeps it).
bench_cleanup() {
  for pid in ${PIDS:-} ${WORKER_PID:-} ${BROKER_PID:-}; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for port in ${REDIS_PORTS:-} ${REDIS_PORT:-}; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
now_ms() { date +%s%3N; }

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

# split_data SEED: the 80/20 split of $DATA (seeded awk) into $TMP/test.csv
# and $TMP/train.csv, the training ratings in a seeded random order; sets
# NTRAIN and NTEST.
split_data() {
  awk -F'[,\t]|::' -v seed="$1" -v train="$TMP/train.body" -v test="$TMP/test.csv" '
    BEGIN { srand(seed); print "user,item,rating" > test }
    $1 !~ /^[0-9]+$/ { next }
    { r = rand(); line = $1 "," $2 "," $3
      if (r < 0.2) print line > test; else printf "%.9f,%s\n", rand(), line > train }' "$DATA"
  { echo "user,item,rating"; sort -t, -k1,1 "$TMP/train.body" | cut -d, -f2-; } >"$TMP/train.csv"
  NTRAIN=$(($(wc -l <"$TMP/train.csv") - 1))
  NTEST=$(($(wc -l <"$TMP/test.csv") - 1))
}
