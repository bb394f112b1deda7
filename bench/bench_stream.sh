#!/usr/bin/env bash
# bench_stream.sh [--data PATH] [--partitions N] [--method cff|foldin]
#                 [--requests N] [--cycle-ms MS] [--bin PATH]
# End-to-end figures on this machine with everything local (the broker, a
# throwaway redis-server and one worker sharing the cores):
#   1. ratings/s ingested into m1: all ratings are produced first, then one
#      worker starts; the rate is measured from its partition assignment to the
#      checkpoint that shows every rating applied (checkpoints every 100 ms);
#   2. latency from forget request to its receipt, p50/p99 over N requests
#      sent one after another with `unlearnd produce forget`, at default
#      settings unless --cycle-ms: receipt.completed_at - request.requested_at
#      (includes the producer tool's start-up) and receipt.completed_at -
#      receipt.received_at (the worker's part), wall clock of this machine.
# Default data: ML-1M from ../shared/data if present, else a synthetic
# 1,000,000-rating file. Prints figures; asserts nothing about speed.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/bench_lib.sh
BIN=build/unlearnd
DATA=""
PARTS=16
METHOD=cff
REQUESTS=200
CYCLE_MS=""
CKPT_MS=1000
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --partitions) PARTS="$2"; shift 2 ;;
    --method) METHOD="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --cycle-ms) CYCLE_MS="$2"; shift 2 ;;
    --checkpoint-ms) CKPT_MS="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bench_stream: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || scripts/build.sh release >/dev/null
TMP="$(mktemp -d)"
BROKER_PID="" WORKER_PID="" REDIS_PORT=""
# shellcheck source=bench/bench_lib.sh
. bench/bench_lib.sh
trap bench_cleanup EXIT
export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
now_ms() { date +%s%3N; }

[ -n "$DATA" ] || DATA=$(default_data "$TMP")

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP" --save '' --appendonly no \
  --daemonize yes --logfile "$TMP/redis.log" >/dev/null
REDIS=(--redis.host 127.0.0.1 --redis.port "$REDIS_PORT")
"$BIN" broker --partitions "$PARTS" >/dev/null 2>"$TMP/broker.err" &
BROKER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done

t0=$(now_ms)
"$BIN" produce ratings --data "$DATA" >"$TMP/produce.out" 2>&1
t1=$(now_ms)
N=$(grep -o 'produced [0-9]* ratings' "$TMP/produce.out" | awk '{ print $2 }')
echo "data: $DATA ($N ratings), $PARTS partitions, method $METHOD, $(nproc) cores"
echo "produce: $N ratings in $(( t1 - t0 )) ms"

CYCLE=()
[ -n "$CYCLE_MS" ] && CYCLE=(--cycle.interval.ms "$CYCLE_MS")
"$BIN" worker "${REDIS[@]}" --method "$METHOD" --checkpoint.interval.ms "$CKPT_MS" "${CYCLE[@]}" \
  >/dev/null 2>"$TMP/worker.err" &
WORKER_PID=$!
applied() { "$BIN" state "${REDIS[@]}" 2>/dev/null | awk '/^total/ { split($2, a, "="); print a[2] }'; }
until grep -q 'assigned partition' "$TMP/worker.err" 2>/dev/null; do
  kill -0 "$WORKER_PID" || { cat "$TMP/worker.err" >&2; exit 1; }
  sleep 0.02
done
ta=$(now_ms)
while [ "$(applied)" != "$N" ]; do
  kill -0 "$WORKER_PID" || { tail "$TMP/worker.err" >&2; exit 1; }
  sleep 0.05
done
tb=$(now_ms)
echo "ingest: $N ratings in $(( tb - ta )) ms = $(( N * 1000 / (tb - ta) )) ratings/s" \
  "(from assignment to the checkpoint showing all applied)"

# Forget requests for the first REQUESTS users of the file, 3 of their items each.
awk -F'[,\t]|::' -v n="$REQUESTS" '$1 ~ /^[0-9]+$/ && !done[$1] { items[$1] = items[$1] (c[$1]++ ? "," : "") $2;
    if (c[$1] == 3) { print $1, items[$1]; done[$1] = 1; if (++k == n) exit } }' "$DATA" \
  >"$TMP/requests"
i=0
while read -r user items; do
  i=$((i + 1))
  "$BIN" produce forget --user "$user" --items "$items" --reason MISTAKE \
    --request-id "b-$i" >/dev/null 2>>"$TMP/forget.err"
  sleep 0.05
done <"$TMP/requests"
n=$(wc -l <"$TMP/requests")
"$BIN" consume --topic forget-receipts --count "$n" --timeout-ms 60000 >"$TMP/receipts" 2>/dev/null
"$BIN" consume --topic forget-requests --count "$n" >"$TMP/reqs" 2>/dev/null
awk '/ forget b-/ { for (i = 1; i <= NF; i++) if ($i ~ /^requested_at=/) { split($i, a, "=");
       req[$5] = a[2] } }
     / receipt b-/ { for (i = 1; i <= NF; i++) { split($i, a, "=");
       if (a[1] == "completed_at") done[$5] = a[2]; if (a[1] == "received_at") got[$5] = a[2];
       if (a[1] == "forgotten") forgot += a[2] } }
     END { for (r in done) print done[r] - req[r], done[r] - got[r];
           print forgot > "/dev/stderr" }' "$TMP/reqs" "$TMP/receipts" 2>"$TMP/forgot" >"$TMP/lat"
pct() { # column percentile
  sort -n -k"$1","$1" "$TMP/lat" | awk -v c="$1" -v p="$2" '{ v[NR] = $c }
    END { i = int(NR * p + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print v[i] }'
}
m=$(wc -l <"$TMP/lat")
echo "forget -> receipt, $m requests ($(cat "$TMP/forgot") ratings forgotten):"
echo "  request created -> receipt done: p50 $(pct 1 0.5) ms, p99 $(pct 1 0.99) ms, max $(pct 1 1) ms" \
  "(includes the start-up of one 'unlearnd produce' process per request)"
echo "  consumed by the worker -> receipt done: p50 $(pct 2 0.5) ms, p99 $(pct 2 0.99) ms," \
  "max $(pct 2 1) ms"
grep 'unlearning cycle' "$TMP/worker.err" | awk '{ for (i = 1; i <= NF; i++) if ($i == "s" || $(i+1) == "s") {} }
  { t = $(NF - 1); s += t; if (t > mx) mx = t; c++ } END { if (c) printf "cycles: %d, unlearning step mean %.3f s, max %.3f s\n", c, s / c, mx }'
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || true; WORKER_PID=""
