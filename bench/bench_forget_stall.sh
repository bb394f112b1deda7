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
bench_tmp
BURST_AFTER=3
BEFORE_WAIT=11 # every partition's row flush: Redis holds the replica's item rows
WORKER_OPTS=()
[ -n "$DATA" ] || DATA=$(default_data "$TMP")

# The files of the protocol: all.csv (prefill), retain.csv (prefill without
# F), background.csv, forget.batch (one request per line), F.csv.
ratings_csv "$DATA" >"$TMP/ratings.csv"
python3 - "$TMP/ratings.csv" "$TMP" "$BACKGROUND" <<'EOF'
import sys
data, tmp, nbg = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [(int(u), int(i), r) for u, i, r in (l.split(",") for l in open(data).read().split())]
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

echo "data: $DATA; $PARTS partitions, method $METHOD, background $NBG ratings at $RATE/s," \
  "$NREQ forget requests in one burst, $(nproc) cores"
stream_run forget "$TMP/all.csv" "$TMP/background.csv" "$METHOD" "$TMP/forget.batch"
FIG=$(burst_figures forget "$NREQ")
stack_export_stopped "$TMP/forgotten.ulmf"
stack_stop
if [ "$RETRAIN" = 1 ]; then
  stream_run m1 "$TMP/all.csv" "$TMP/background.csv" "$METHOD"
  stack_export_stopped "$TMP/m1.ulmf"
  stack_stop
  stream_run retrain "$TMP/retain.csv" "$TMP/background.csv" "$METHOD"
  stack_export_stopped "$TMP/retrain.ulmf"
  stack_stop
fi

fig() { echo "$FIG" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
echo "ingest stall (longest time with no rating applied), $(fig readings) readings of /metrics," \
  "median $(fig read_ms) ms apart:"
echo "  3 s before the burst: $(fig stall_before) ms"
echo "  burst -> 1 s after the last receipt ($(fig burst_s) s): $(fig stall) ms"
echo "receipts: $(fig receipts) of $NREQ, $(fig forgotten) ratings forgotten"
for w in "worker:consumed by the worker -> receipt" "e2e:request created -> receipt"; do
  k=${w%%:*}
  echo "  ${w#*:}: p50 $(fig "${k}_p50") ms, p99 $(fig "${k}_p99") ms, max $(fig "${k}_max") ms"
done
line="F-weighted mean item bias: before the burst $(item_bias "$TMP/before-forget.ulmf" "$TMP/F.csv");"
line+=" after the background: forgotten $(item_bias "$TMP/forgotten.ulmf" "$TMP/F.csv")"
if [ "$RETRAIN" = 1 ]; then
  line+=", M1 (no forgetting) $(item_bias "$TMP/m1.ulmf" "$TMP/F.csv"),"
  line+=" stream retrain without F $(item_bias "$TMP/retrain.ulmf" "$TMP/F.csv")"
fi
echo "$line"
grep 'unlearning cycle' "$TMP/worker-forget.err" | awk '{ t = $(NF - 1); s += t; if (t > mx) mx = t; c++ }
  END { if (c) printf "cycles: %d, unlearning step mean %.3f s, max %.3f s\n", c, s / c, mx }'
