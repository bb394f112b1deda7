#!/usr/bin/env bash
# bench_forget_stall.sh [--data PATH] [--partitions N] [--method M] [--rate R]
#                       [--background N] [--no-retrain] [--bin PATH]
# Does unlearning stall ingestion? One worker, everything local (the broker,
# a throwaway redis-server, the producers and the worker share the cores):
#   1. prefill: every rating of the data is produced and applied;
#   2. a background stream of N more ratings (default 400,000: ratings of the
#      users who forget nothing, in file order) arrives at R ratings/s
#      (default 40,000) with `unlearnd produce ratings --rate`;
#   3. 3 s into it, a burst of forget requests is produced by one process
#      (`unlearnd produce forget --batch`): 10% of the users (the tenth with
#      the lowest hash of their id: 604 on ML-1M), each asking to forget every
#      second of their ratings in file order (F, the paper's 50%), which the
#      prefill carries as 5s (the paper's faulty ratings).
# STALL: /metrics is read every 5 ms on one keep-alive connection (the HTTP
# server runs on its own thread, so it answers while the loop is busy); the
# stall is the longest time between two consecutive readings at which
# unlearnd_ratings_applied_total had increased, i.e. the longest time the
# worker applied no rating while ratings were waiting. It is taken over the
# window from the burst to 1 s after the last receipt, and over the 3 s
# before the burst (the floor: checkpoints, publishing, the broker's batches).
# RECEIPTS: completed_at - received_at (the worker's part) and
# completed_at - requested_at (end to end, including the producer process),
# p50/p99/max over every request, wall clock of this machine.
# ITEMS: the F-weighted mean item bias (mean over F's ratings of b_i) of the
# live model exported before the burst and after the worker applied
# everything (the forgotten model), of M1 (the same stream without the
# burst) and of a stream retrain (the prefill without F, then the same
# background); each from a fresh broker and Redis (--no-retrain skips both).
# Item rows reach Redis at row flushes (state format 2, docs/store.md): the
# models after the stream are exported once the worker stopped cleanly
# (SIGTERM flushes every row), the one before the burst after the worker
# idled one rows.flush.interval.ms (10 s) past the prefill.
# The worker runs with kafka.fetch.wait.max.ms=10: the local broker answers
# an empty fetch only when that wait expires (docs/broker.md), which at the
# default 500 ms alone stalls ingestion for ~500 ms twice a second.
# Default data: ML-1M from ../shared/data, else a synthetic file. Prints
# figures; asserts nothing about speed. KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/bench_lib.sh
BIN=build/unlearnd
DATA=""
PARTS=16
METHOD=cff
RATE=40000
BACKGROUND=400000
RETRAIN=1
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --partitions) PARTS="$2"; shift 2 ;;
    --method) METHOD="$2"; shift 2 ;;
    --rate) RATE="$2"; shift 2 ;;
    --background) BACKGROUND="$2"; shift 2 ;;
    --no-retrain) RETRAIN=0; shift ;;
    --bin) BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
    *) echo "bench_forget_stall: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || scripts/build.sh release >/dev/null
command -v redis-server >/dev/null || { echo "bench_forget_stall: needs redis-server" >&2; exit 2; }
TMP="$(mktemp -d)"
BROKER_PID="" WORKER_PID="" REDIS_PORT="" BG_PID="" SAMPLER_PID=""
stop_all() {
  for pid in $SAMPLER_PID $BG_PID $WORKER_PID $BROKER_PID; do
    kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
  SAMPLER_PID="" BG_PID="" WORKER_PID="" BROKER_PID=""
  [ -n "$REDIS_PORT" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  REDIS_PORT=""
}
cleanup() {
  stop_all
  [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

[ -n "$DATA" ] || DATA=$(default_data "$TMP")

# The files of the protocol: all.csv (prefill), retain.csv (prefill without
# F), background.csv, forget.batch (one request per line), F.csv.
python3 - "$DATA" "$TMP" "$BACKGROUND" <<'EOF'
import sys
data, tmp, nbg = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
with open(data) as f:
    first = f.readline()
    sep = "::" if "::" in first else ("\t" if "\t" in first else ",")
    lines = ([] if first.strip().lower().startswith("user") else [first]) + f.readlines()
    for line in lines:
        p = line.strip().split(sep)
        if len(p) >= 3:
            rows.append((int(p[0]), int(p[1]), p[2]))
users = sorted({u for u, _, _ in rows}, key=lambda u: ((u * 2654435761) % 2**32, u))
chosen = set(users[: round(len(users) / 10)])
seen, F = {}, set()
for i, (u, it, r) in enumerate(rows):
    if u in chosen:
        seen[u] = seen.get(u, 0) + 1
        if seen[u] % 2 == 1:
            F.add(i)
def write(path, idx):
    with open(path, "w") as out:
        out.write("user,item,rating\n")
        for i in idx:
            u, it, r = rows[i]
            out.write(f"{u},{it},{5 if i in F else r}\n")
write(f"{tmp}/all.csv", range(len(rows)))
write(f"{tmp}/retain.csv", [i for i in range(len(rows)) if i not in F])
write(f"{tmp}/F.csv", sorted(F))
write(f"{tmp}/background.csv", [i for i in range(len(rows)) if rows[i][0] not in chosen][:nbg])
items = {}
for i in sorted(F):
    items.setdefault(rows[i][0], []).append(rows[i][1])
with open(f"{tmp}/forget.batch", "w") as out:
    for u in sorted(items):
        out.write(f"--user {u} --items {','.join(map(str, items[u]))} --reason MISTAKE "
                  f"--request-id s-{u}\n")
print(f"{len(rows)} ratings, {len(users)} users; {len(items)} users forget {len(F)} ratings")
EOF
NREQ=$(wc -l <"$TMP/forget.batch")
NBG=$(( $(wc -l <"$TMP/background.csv") - 1 ))

# start_stack NAME: a fresh redis-server and broker.
start_stack() {
  REDIS_PORT=$(free_port)
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP" --save '' --appendonly no \
    --daemonize yes --logfile "$TMP/redis-$1.log" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  REDIS=(--redis.host 127.0.0.1 --redis.port "$REDIS_PORT")
  export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker-$1.addr"
  "$BIN" broker --partitions "$PARTS" >/dev/null 2>"$TMP/broker-$1.err" &
  BROKER_PID=$!
  for _ in $(seq 100); do [ -s "$UNLEARND_BROKER_BOOTSTRAP_FILE" ] && break; sleep 0.1; done
}
applied() { "$BIN" state "${REDIS[@]}" 2>/dev/null | awk '/^total/ { split($2, a, "="); print a[2] }'; }
# run_stream NAME PREFILL WITH_BURST: prefill, worker, background (+ burst);
# leaves the worker running with everything applied.
run_stream() {
  local name="$1" prefill="$2" burst="$3" mport
  start_stack "$name"
  "$BIN" produce ratings --data "$prefill" >"$TMP/prefill-$name.out" 2>&1
  local n
  n=$(grep -o 'produced [0-9]* ratings' "$TMP/prefill-$name.out" | awk '{ print $2 }')
  mport=$(free_port)
  "$BIN" worker "${REDIS[@]}" --method "$METHOD" --metrics.port "$mport" \
    --kafka.fetch.wait.max.ms 10 >/dev/null 2>"$TMP/worker-$name.err" &
  WORKER_PID=$!
  until [ "$(applied)" = "$n" ]; do
    kill -0 "$WORKER_PID" || { tail "$TMP/worker-$name.err" >&2; exit 1; }
    sleep 0.1
  done
  if [ "$burst" = 1 ]; then
    sleep 11 # every partition's row flush: Redis holds the replica's item rows
    "$BIN" state "${REDIS[@]}" --export-model "$TMP/before.ulmf" >/dev/null
    python3 - "$mport" "$TMP/samples" <<'EOF' &
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
EOF
    SAMPLER_PID=$!
  fi
  "$BIN" produce ratings --data "$TMP/background.csv" --rate "$RATE" >/dev/null 2>&1 &
  BG_PID=$!
  if [ "$burst" = 1 ]; then
    sleep 3
    python3 -c 'import time; print(f"{time.monotonic() * 1000:.1f}")' >"$TMP/t_burst"
    "$BIN" produce forget --batch "$TMP/forget.batch" >/dev/null 2>"$TMP/burst.err"
    while [ "$(tail -1 "$TMP/samples" | awk '{ print $3 }')" != "$NREQ" ]; do
      kill -0 "$WORKER_PID" || { tail "$TMP/worker-$name.err" >&2; exit 1; }
      sleep 0.1
    done
    sleep 1.2
    kill "$SAMPLER_PID"; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""
  fi
  wait "$BG_PID"; BG_PID=""
  until [ "$(applied)" = "$((n + NBG))" ]; do sleep 0.1; done
}
# export NAME: stop the worker cleanly (its final checkpoints flush every
# row), then export the model from Redis.
export_model() {
  kill "$WORKER_PID"; wait "$WORKER_PID" 2>/dev/null || true; WORKER_PID=""
  "$BIN" state "${REDIS[@]}" --export-model "$TMP/$1.ulmf" >/dev/null
}

echo "data: $DATA; $PARTS partitions, method $METHOD, background $NBG ratings at $RATE/s," \
  "$NREQ forget requests in one burst, $(nproc) cores"
run_stream forget "$TMP/all.csv" 1
export_model forgotten
"$BIN" consume --topic forget-receipts --count "$NREQ" --timeout-ms 60000 >"$TMP/receipts" 2>/dev/null
"$BIN" consume --topic forget-requests --count "$NREQ" >"$TMP/requests" 2>/dev/null
stop_all
if [ "$RETRAIN" = 1 ]; then
  run_stream m1 "$TMP/all.csv" 0
  export_model m1
  stop_all
  run_stream retrain "$TMP/retain.csv" 0
  export_model retrain
  stop_all
fi

python3 - "$TMP" "$NREQ" "$RETRAIN" <<'EOF'
import os, struct, sys
tmp, nreq, retrain = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
t_burst = float(open(f"{tmp}/t_burst").read())
s = [tuple(map(float, l.split())) for l in open(f"{tmp}/samples") if len(l.split()) == 3]
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
reads = [b[0] - a[0] for a, b in zip(s, s[1:])]
print(f"ingest stall (longest time with no rating applied), {len(s)} readings of /metrics, "
      f"median {sorted(reads)[len(reads) // 2]:.1f} ms apart:")
print(f"  3 s before the burst: {stall(t_burst - 3000, t_burst):.0f} ms")
print(f"  burst -> 1 s after the last receipt ({(t_done - t_burst) / 1000:.2f} s): "
      f"{stall(t_burst, t_done + 1000):.0f} ms")
req = {}
for l in open(f"{tmp}/requests"):
    f = l.split()
    if "forget" in f:
        i = f.index("forget")
        req[f[i + 1]] = int([x for x in f if x.startswith("requested_at=")][0].split("=")[1])
worker, e2e, forgot = [], [], 0
for l in open(f"{tmp}/receipts"):
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
print(f"receipts: {len(worker)} of {nreq}, {forgot} ratings forgotten")
for name, v in (("consumed by the worker -> receipt", worker), ("request created -> receipt", e2e)):
    print(f"  {name}: p50 {pct(v, .5)} ms, p99 {pct(v, .99)} ms, max {max(v)} ms")
def load(path):
    b = open(path, "rb").read()
    flags, nu, ni, k = struct.unpack_from("<Iiii", b, 8)
    off = 64 + 4 * nu
    ib = struct.unpack_from(f"<{ni}f", b, off)
    off += 4 * ni + 4 * nu * k + 4 * ni * k
    if flags & 1:
        off += 8 * nu
    ids = struct.unpack_from(f"<{ni}q", b, off)
    return dict(zip(ids, ib))
F = [int(l.split(",")[1]) for l in list(open(f"{tmp}/F.csv"))[1:]]
def fbias(path):
    b = load(path)
    return sum(b.get(i, 0.0) for i in F) / len(F)
line = f"F-weighted mean item bias: before the burst {fbias(f'{tmp}/before.ulmf'):.4f}; " \
       f"after the background: forgotten {fbias(f'{tmp}/forgotten.ulmf'):.4f}"
if retrain:
    line += f", M1 (no forgetting) {fbias(f'{tmp}/m1.ulmf'):.4f}, " \
            f"stream retrain without F {fbias(f'{tmp}/retrain.ulmf'):.4f}"
print(line)
EOF
grep 'unlearning cycle' "$TMP/worker-forget.err" | awk '{ t = $(NF - 1); s += t; if (t > mx) mx = t; c++ }
  END { if (c) printf "cycles: %d, unlearning step mean %.3f s, max %.3f s\n", c, s / c, mx }'
