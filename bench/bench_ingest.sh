#!/usr/bin/env bash
# bench_ingest.sh [--data PATH] [--partitions N] [--runs N] [--bin PATH]
#                 [--kafka.KEY VALUE ...]
# The ingest path next to the broker's speed, on one topic in one run (the
# local broker, one redis-server, the consumers sharing this machine's cores):
#   1. a plain consumer (build/bench_consume: librdkafka's balanced consumer,
#      the worker's client kind, reading every rating and doing nothing with
#      it), with librdkafka's queue defaults and with the worker's ingest
#      defaults (worker/kafka.c, KAFKA_INGEST): records/s from its first
#      record to its last;
#   2. one worker with its default settings: ratings/s from its partition
#      assignment to every rating applied to the live model (its /metrics
#      counter unlearnd_ratings_applied_total, polled every 20 ms: the
#      like-for-like figure with the plain consumer, which keeps nothing), and
#      to the checkpoint in Redis that shows them all applied ("durable": it
#      adds up to one checkpoint.interval.ms, 1 s by default), and the ratio
#      applied / plain consumer with the same settings.
# Peak RSS (VmHWM) of each. Each is repeated --runs times (default 3) on the
# same topic, one after the other; every run and the medians are printed.
# --kafka.KEY VALUE is given to both (to try other settings). Default data:
# ML-1M from ../shared/data, 16 partitions. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/unlearnd
DATA=../shared/data/ml-1m/ratings.csv
PARTS=16
RUNS=3
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --partitions) PARTS="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --kafka.*) EXTRA+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench_ingest: unknown option $1" >&2; exit 2 ;;
  esac
done
CONSUME="$(dirname "$BIN")/bench_consume"
[ -x "$BIN" ] && [ -x "$CONSUME" ] || scripts/build.sh release >/dev/null
[ -r "$DATA" ] || { echo "bench_ingest: $DATA not readable (ML-1M): nothing to measure"; exit 0; }
TMP="$(mktemp -d)"
BROKER_PID="" WORKER_PID="" REDIS_PORT=""
# shellcheck source=bench/bench_lib.sh
. bench/bench_lib.sh
trap bench_cleanup EXIT
export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
unset UNLEARND_REDIS_HOST UNLEARND_REDIS_PORT UNLEARND_REDIS_CLUSTER UNLEARND_REDIS_PASSWORD
now_ms() { date +%s%3N; }
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

"$BIN" broker --partitions "$PARTS" >/dev/null 2>"$TMP/broker.err" &
BROKER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
"$BIN" produce ratings --data "$DATA" >"$TMP/produce.out" 2>&1
N=$(sed -n 's/^produced \([0-9]*\) ratings.*/\1/p' "$TMP/produce.out" | tail -1)
echo "bench_ingest: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
echo "data: $DATA, $N ratings produced, $PARTS partitions"

plain() { # RUN [--librdkafka-defaults]: prints "ratings/s peak-RSS-bytes"
  local run="$1"; shift
  "$CONSUME" --count "$N" --kafka.group.id "plain-$run-$*" "$@" "${EXTRA[@]}" 2>"$TMP/plain.err" |
    awk '/^consumed/ { for (i = 1; i <= NF; i++) { if ($(i + 1) == "records/s,") r = $i; if ($i == "RSS") k = $(i + 1) }
                      print r, k * 1024 }'
}

applied() {
  # shellcheck disable=SC2046
  redis-cli -p "$REDIS_PORT" eval "local s = 0 for i, k in ipairs(KEYS) do s = s + (tonumber(redis.call('HGET', k, 'applied')) or 0) end return s" \
    "$PARTS" $(for p in $(seq 0 $((PARTS - 1))); do printf 'ul:{p%d}:meta ' "$p"; done) 2>/dev/null || echo 0
}
metric_applied() { # PORT: the worker's unlearnd_ratings_applied_total (0 before it answers)
  curl -s "http://127.0.0.1:$1/metrics" 2>/dev/null |
    awk '/^unlearnd_ratings_applied_total / { v = $2 } END { printf "%d\n", v + 0 }'
}
worker_run() { # RUN: prints "applied-ratings/s durable-ratings/s peak-RSS-bytes"
  local run="$1" ta tb td rss=0 mport
  REDIS_PORT=$(start_redis)
  mport=$(free_port)
  "$BIN" worker --redis.host 127.0.0.1 --redis.port "$REDIS_PORT" --kafka.group.id "w-$run" \
    --metrics.port "$mport" "${EXTRA[@]}" >/dev/null 2>"$TMP/worker-$run.err" &
  WORKER_PID=$!
  until grep -q 'assigned partition' "$TMP/worker-$run.err" 2>/dev/null; do
    kill -0 "$WORKER_PID" || { tail "$TMP/worker-$run.err" >&2; exit 1; }
    sleep 0.02
  done
  ta=$(now_ms)
  while [ "$(metric_applied "$mport")" -lt "$N" ]; do
    kill -0 "$WORKER_PID" || { tail "$TMP/worker-$run.err" >&2; exit 1; }
    sleep 0.02
  done
  tb=$(now_ms)
  while [ "$(applied)" -lt "$N" ]; do
    kill -0 "$WORKER_PID" || { tail "$TMP/worker-$run.err" >&2; exit 1; }
    sleep 0.02
  done
  td=$(now_ms)
  rss=$(awk '/^VmHWM/ { print $2 * 1024 }' "/proc/$WORKER_PID/status")
  kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || true; WORKER_PID=""
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; REDIS_PORT=""
  echo "$(( N * 1000 / (tb - ta) )) $(( N * 1000 / (td - ta) )) $rss"
}

mb() { awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; }
printf '\n%-6s %18s %10s %18s %10s %10s %10s %10s %6s\n' run "plain, librdkafka" RSS "plain, worker's" RSS \
  "worker" durable RSS ratio
: >"$TMP/rows"
for run in $(seq "$RUNS"); do
  read -r a arss < <(plain "$run" --librdkafka-defaults)
  read -r b brss < <(plain "$run")
  read -r w d wrss < <(worker_run "$run")
  ratio=$(awk -v w="$w" -v b="$b" 'BEGIN { printf "%.2f", w / b }')
  printf '%-6s %18s %10s %18s %10s %10s %10s %10s %6s\n' "$run" "$a" "$(mb "$arss")" "$b" "$(mb "$brss")" \
    "$w" "$d" "$(mb "$wrss")" "$ratio"
  echo "$a $arss $b $brss $w $d $wrss $ratio" >>"$TMP/rows"
done
col() { awk -v c="$1" '{ print $c }' "$TMP/rows" | median; }
printf '%-6s %18s %10s %18s %10s %10s %10s %10s %6s\n' median "$(col 1)" "$(col 2 | awk '{ printf "%.0f MB", $1 / 1e6 }')" \
  "$(col 3)" "$(col 4 | awk '{ printf "%.0f MB", $1 / 1e6 }')" "$(col 5)" "$(col 6)" \
  "$(col 7 | awk '{ printf "%.0f MB", $1 / 1e6 }')" "$(col 8)"
echo "ratings/s and peak RSS. plain: build/bench_consume (a balanced consumer that only reads), with"
echo "librdkafka's queue defaults and with the worker's (kafka.c, KAFKA_INGEST); worker: one"
echo "unlearnd worker (default settings), assignment to all applied (/metrics) and to the"
echo "checkpoint showing all applied (durable); ratio = worker (applied) / plain with the same"
echo "settings. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
