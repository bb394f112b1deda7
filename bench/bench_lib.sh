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
# bench_cleanup: the EXIT trap: kills the processes in $PIDS, $WORKER_PID,
# $BROKER_PID, $SAMPLER_PID and $BG_PID (stream_run's), stops the redis-servers on $REDIS_PORTS and $REDIS_PORT
# (each may be empty or unset) and removes $TMP (KEEP=1 keeps it).
bench_cleanup() {
  for pid in ${PIDS:-} ${WORKER_PID:-} ${BROKER_PID:-} ${SAMPLER_PID:-} ${BG_PID:-}; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
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
# ML-1M (data_path) when present, else a synthetic file of 996,000
# ratings (6000 users x 166, seed 7) written into DIR. Prints its path.
default_data() {
  local data; data=$(data_path ml-1m)
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

# ratings_csv DATA: the ratings of DATA (u.data, ratings.dat or CSV with a
# header) as user,item,rating lines without a header, in file order.
ratings_csv() {
  awk -F'[,\t]|::' '$1 ~ /^[0-9]+$/ { print $1 "," $2 "," $3 }' "$1"
}

# ---- One worker on a fresh stack (bench_forget_stall.sh, bench_stream_forget.sh)
# The caller calls bench_tmp first (TMP, the work directory) and sets BIN
# (the unlearnd binary), PARTS (the ratings topic's partitions), RATE
# (background ratings/s), NBG (the background's ratings), BURST_AFTER
# (seconds of background before the forget burst), BEFORE_WAIT (empty, or
# seconds to wait before exporting the model before the burst) and
# WORKER_OPTS (an array of extra worker options, may be empty). Files are
# named after the run (NAME).

# stack_start NAME: a fresh redis-server and broker; sets REDIS (the worker's
# redis options), REDIS_PORT, BROKER_PID and the broker's address file.
stack_start() {
  REDIS_PORT=$(start_redis)
  REDIS=(--redis.host 127.0.0.1 --redis.port "$REDIS_PORT")
  export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker-$1.addr"
  "$BIN" broker --partitions "$PARTS" >/dev/null 2>"$TMP/broker-$1.err" &
  BROKER_PID=$!
  for _ in $(seq 100); do [ -s "$UNLEARND_BROKER_BOOTSTRAP_FILE" ] && break; sleep 0.1; done
}

# stack_stop: every process of the run (sampler, producer, worker, broker)
# and its redis-server.
stack_stop() {
  for pid in ${SAMPLER_PID:-} ${BG_PID:-} ${WORKER_PID:-} ${BROKER_PID:-}; do
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  SAMPLER_PID="" BG_PID="" WORKER_PID="" BROKER_PID=""
  [ -n "${REDIS_PORT:-}" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  REDIS_PORT=""
}

# stack_applied: the ratings the worker's checkpoints say it applied.
stack_applied() {
  "$BIN" state "${REDIS[@]}" 2>/dev/null | awk '/^total/ { split($2, a, "="); print a[2] }'
}

# stack_sample PORT FILE (in the background): /metrics every 5 ms on one
# keep-alive connection, one line per reading: monotonic ms, ratings applied,
# forget requests completed. exec: $! is the sampler itself, so kill ends it.
stack_sample() {
  exec python3 - "$1" "$2" <<'PY'
import http.client, sys, time
port, path = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
with open(path, "w", buffering=1) as out:
    while True:
        t = time.monotonic()
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        except Exception:
            conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            continue
        v = {}
        for line in body.splitlines():
            if line.startswith(("unlearnd_ratings_applied_total ",
                                "unlearnd_forget_requests_completed_total ")):
                k, x = line.split()
                v[k] = int(float(x))
        out.write(f"{t * 1000:.1f} {v.get('unlearnd_ratings_applied_total', -1)} "
                  f"{v.get('unlearnd_forget_requests_completed_total', -1)}\n")
        time.sleep(max(0.0, 0.005 - (time.monotonic() - t)))
PY
}

# stream_run NAME PREFILL BACKGROUND METHOD [BURST]: on a fresh stack, every
# rating of PREFILL is produced, then a worker (--method METHOD, WORKER_OPTS)
# applies them; then BACKGROUND arrives at RATE/s and, with BURST (a
# `produce forget --batch` file), BURST_AFTER s into it the burst is produced
# by one process while /metrics is sampled into $TMP/samples-NAME until 1.2 s
# after the last receipt ($TMP/t_burst-NAME: the burst's monotonic ms; with
# BEFORE_WAIT, the model before it in $TMP/before-NAME.ulmf, exported that
# many seconds after the prefill). Returns with everything applied and the
# worker running (stack_stop ends it).
stream_run() {
  local name="$1" prefill="$2" background="$3" method="$4" burst="${5:-}" mport n nreq=0
  stack_start "$name"
  "$BIN" produce ratings --data "$prefill" >"$TMP/prefill-$name.out" 2>&1
  n=$(grep -o 'produced [0-9]* ratings' "$TMP/prefill-$name.out" | awk '{ print $2 }')
  mport=$(free_port)
  "$BIN" worker "${REDIS[@]}" --method "$method" --metrics.port "$mport" \
    --kafka.fetch.wait.max.ms 10 "${WORKER_OPTS[@]}" >/dev/null 2>"$TMP/worker-$name.err" &
  WORKER_PID=$!
  until [ "$(stack_applied)" = "$n" ]; do
    kill -0 "$WORKER_PID" || { tail "$TMP/worker-$name.err" >&2; exit 1; }
    sleep 0.1
  done
  if [ -n "$burst" ]; then
    nreq=$(grep -c -- '--user' "$burst")
    if [ -n "${BEFORE_WAIT:-}" ]; then
      sleep "$BEFORE_WAIT"
      "$BIN" state "${REDIS[@]}" --export-model "$TMP/before-$name.ulmf" >/dev/null
    fi
    stack_sample "$mport" "$TMP/samples-$name" &
    SAMPLER_PID=$!
  fi
  "$BIN" produce ratings --data "$background" --rate "$RATE" >/dev/null 2>&1 &
  BG_PID=$!
  if [ -n "$burst" ]; then
    sleep "$BURST_AFTER"
    python3 -c 'import time; print(f"{time.monotonic() * 1000:.1f}")' >"$TMP/t_burst-$name"
    "$BIN" produce forget --batch "$burst" >/dev/null 2>"$TMP/burst-$name.err"
    while [ "$(tail -1 "$TMP/samples-$name" | awk '{ print $3 }')" != "$nreq" ]; do
      kill -0 "$WORKER_PID" || { tail "$TMP/worker-$name.err" >&2; exit 1; }
      sleep 0.1
    done
    sleep 1.2
    kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
  fi
  wait "$BG_PID"; BG_PID=""
  until [ "$(stack_applied)" = "$((n + NBG))" ]; do sleep 0.1; done
}

# stack_export_stopped FILE: stop the worker cleanly (its final checkpoints
# flush every row: item rows reach Redis only at row flushes, state format 2,
# docs/store.md), then export the model from Redis into FILE.
stack_export_stopped() {
  kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""
  "$BIN" state "${REDIS[@]}" --export-model "$1" >/dev/null
}

# burst_figures NAME NREQ: after a stream_run with a burst (worker still
# running), the burst's figures as one line of name=value: stall_before (the
# longest time with no rating applied in the BURST_AFTER s before the burst),
# stall (from the burst to 1 s after the last receipt), burst_s (the burst to
# the last receipt), readings and read_ms (how many /metrics readings, their
# median spacing), receipts, forgotten, worker_p50/p99/max (completed_at -
# received_at) and e2e_p50/p99/max (completed_at - requested_at), in ms.
# The stall is the longest time between two consecutive readings at which
# unlearnd_ratings_applied_total had increased.
burst_figures() {
  local name="$1" nreq="$2"
  "$BIN" consume --topic forget-receipts --count "$nreq" --timeout-ms 60000 \
    >"$TMP/receipts-$name" 2>/dev/null
  "$BIN" consume --topic forget-requests --count "$nreq" >"$TMP/requests-$name" 2>/dev/null
  python3 - "$TMP" "$name" "$nreq" "$BURST_AFTER" <<'PY'
import sys
tmp, name, nreq, lead = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
t_burst = float(open(f"{tmp}/t_burst-{name}").read())
s = [tuple(map(float, l.split())) for l in open(f"{tmp}/samples-{name}") if len(l.split()) == 3]
t_done = min(t for t, a, c in s if c >= nreq)
def stall(lo, hi):
    best, last = 0.0, None
    for t, a, c in s:
        if t < lo or t > hi:
            continue
        if last is not None and a > last[1]:
            best = max(best, t - last[0])
        if last is None or a > last[1]:
            last = (t, a)
    return best
reads = sorted(b[0] - a[0] for a, b in zip(s, s[1:]))
req = {}
for l in open(f"{tmp}/requests-{name}"):
    f = l.split()
    if "forget" in f:
        i = f.index("forget")
        req[f[i + 1]] = int([x for x in f if x.startswith("requested_at=")][0].split("=")[1])
worker, e2e, forgot = [], [], 0
for l in open(f"{tmp}/receipts-{name}"):
    f = l.split()
    if "receipt" not in f:
        continue
    i = f.index("receipt")
    kv = dict(x.split("=", 1) for x in f[i + 2:] if "=" in x)
    worker.append(int(kv["completed_at"]) - int(kv["received_at"]))
    e2e.append(int(kv["completed_at"]) - req.get(f[i + 1], int(kv["received_at"])))
    forgot += int(kv["forgotten"])
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(len(v) * p + 0.999999) - 1))]
print(f"stall_before={stall(t_burst - lead * 1000, t_burst):.0f} "
      f"stall={stall(t_burst, t_done + 1000):.0f} burst_s={(t_done - t_burst) / 1000:.2f} "
      f"readings={len(s)} read_ms={reads[len(reads) // 2]:.1f} receipts={len(worker)} "
      f"forgotten={forgot} worker_p50={pct(worker, .5)} worker_p99={pct(worker, .99)} "
      f"worker_max={max(worker)} e2e_p50={pct(e2e, .5)} e2e_p99={pct(e2e, .99)} e2e_max={max(e2e)}")
PY
}

# item_bias MODEL FCSV: the F-weighted mean item bias of a model file: the
# mean over FCSV's ratings of their item's b_i (0 for an item the model does
# not know), read from the ULMF layout (docs/mf.md).
item_bias() {
  python3 - "$1" "$2" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
flags, nu, ni, k = struct.unpack_from("<Iiii", b, 8)
off = 64 + 4 * nu
ib = struct.unpack_from(f"<{ni}f", b, off)
off += 4 * ni + 4 * nu * k + 4 * ni * k
if flags & 1:
    off += 8 * nu
bias = dict(zip(struct.unpack_from(f"<{ni}q", b, off), ib))
F = [int(l.split(",")[1]) for l in list(open(sys.argv[2]))[1:]]
print(f"{sum(bias.get(i, 0.0) for i in F) / len(F):.4f}")
PY
}
