#!/usr/bin/env bash
# bench_state.sh [--data PATH] [--bin PATH] [--skip-ml] [--skip-steady] [--skip-scale]
#                [--scale-ratings N] [--scale-users N] [--scale-items N]
#                [--scale-workers "1 2"] [--skip-scale-first] [-- worker options...]
# What the worker's state (format 2) costs Redis, on this machine (the local
# broker, one redis-server and one worker sharing the cores):
#   1. ML-1M at 8 and at 64 partitions: all ratings produced first, one worker
#      ingests them and stops cleanly (SIGTERM: the final checkpoint and row
#      flush). Redis memory (used_memory after the stop, minus the empty
#      server's), bytes the worker sent Redis per rating (total_net_input_bytes
#      over the run / ratings), bytes Redis wrote to its append-only file per
#      rating (what replicas receive too), and ratings/s (assignment to every
#      rating applied);
#   2. a steady 20,000 ratings/s (`unlearnd produce ratings --rate 20000`,
#      ML-1M, 16 partitions) while the worker consumes: bytes sent to Redis
#      and bytes of AOF per rating from the first rating to the last applied;
#   3. scale: USERS users, ITEMS items, 64 partitions, N synthetic ratings
#      (seeded; default 1,000,000 / 100,000 / 4,000,000), produced while the
#      worker consumes (the local broker keeps ~5 MiB per partition; the
#      producer warns when it dropped any), with one worker and again with two
#      in one group (--scale-workers): ratings/s, Redis memory, each worker's
#      peak RSS (VmHWM), bytes per rating, bytes/s of item-updates records
#      (kcat, payload sizes) and the mean age of the other worker's item
#      changes when applied (the workers' item_updates_* counters), and the
#      CPU seconds Redis and the local broker used; then once more with every
#      rating produced first and one worker timed alone (row "1 first": the
#      worker's own rate, without the producer sharing the cores), unless
#      --skip-scale-first.
# Progress is polled with one small Lua call (the sum of `applied` over the
# partitions) every 250 ms, a few hundred bytes each, not subtracted.
# Default data: ML-1M from ../shared/data (the ML-1M rows are skipped
# without it). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/unlearnd
DATA=../shared/data/ml-1m/ratings.csv
ML=1 STEADY=1 SCALE=1 SCALE_FIRST=1
SN=4000000 SU=1000000 SI=100000
SCALE_WORKERS="1 2"
WOPTS=() # after --: given to every worker (e.g. --kafka.queued.min.messages 300000)
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --skip-ml) ML=0; shift ;;
    --skip-steady) STEADY=0; shift ;;
    --skip-scale) SCALE=0; shift ;;
    --skip-scale-first) SCALE_FIRST=0; shift ;;
    --scale-ratings) SN="$2"; shift 2 ;;
    --scale-users) SU="$2"; shift 2 ;;
    --scale-items) SI="$2"; shift 2 ;;
    --scale-workers) SCALE_WORKERS="$2"; shift 2 ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    --) shift; WOPTS=("$@"); break ;;
    *) echo "bench_state: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || scripts/build.sh release >/dev/null
[ -r "$DATA" ] || { echo "bench_state: $DATA not readable: skipping the ML-1M runs"; ML=0 STEADY=0; }
TMP="$(mktemp -d)"
BROKER_PID="" WORKER_PID="" REDIS_PORT="" PRODUCE_PID=""
stop_all() {
  for pid in $PRODUCE_PID $WORKER_PID ${W1:-} ${W2:-} $BROKER_PID; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  PRODUCE_PID="" WORKER_PID="" BROKER_PID="" W1="" W2=""
  [ -n "$REDIS_PORT" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  REDIS_PORT=""
}
trap 'stop_all; [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"' EXIT
export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
unset UNLEARND_REDIS_HOST UNLEARND_REDIS_PORT UNLEARND_REDIS_CLUSTER UNLEARND_REDIS_PASSWORD
now_ms() { date +%s%3N; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
r() { redis-cli -p "$REDIS_PORT" "$@"; }
info() { r info "$1" | tr -d '\r' | sed -n "s/^$2:\([0-9.]*\)/\1/p"; }

# start PARTITIONS: a fresh broker and redis-server (AOF on, never rewritten
# during the run, so its size is what was written).
start() {
  REDIS_PORT=$(free_port)
  mkdir -p "$TMP/redis-$REDIS_PORT"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis-$REDIS_PORT" --save '' \
    --appendonly yes --appendfsync no --auto-aof-rewrite-percentage 0 --daemonize yes \
    --logfile "$TMP/redis-$REDIS_PORT/log" >/dev/null
  for _ in $(seq 100); do r ping >/dev/null 2>&1 && break; sleep 0.05; done
  rm -f "$TMP/broker.addr"
  "$BIN" broker --partitions "$1" >"$TMP/broker.out" 2>"$TMP/broker.err" &
  BROKER_PID=$!
  for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
  EMPTY_MEM=$(info memory used_memory)
}
PARTS_KEYS=""
keys_of() { PARTS_KEYS=$(for p in $(seq 0 $(($1 - 1))); do printf 'ul:{p%d}:meta ' "$p"; done); }
applied() { # the sum of applied over the partitions, one call
  # shellcheck disable=SC2086
  r eval "local s = 0 for i, k in ipairs(KEYS) do s = s + (tonumber(redis.call('HGET', k, 'applied')) or 0) end return s" \
    "$NP" $PARTS_KEYS 2>/dev/null || echo 0
}
worker() { # NAME [options]
  local name="$1"; shift
  "$BIN" worker --redis.host 127.0.0.1 --redis.port "$REDIS_PORT" --kafka.group.id "g-$name" \
    "$@" "${WOPTS[@]}" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  WORKER_PID=$!
}
wait_applied() { # N: until the partitions' applied sum reaches N
  while [ "$(applied)" -lt "$1" ]; do
    kill -0 "$WORKER_PID" 2>/dev/null || { tail "$TMP"/*.err; echo "bench_state: the worker died" >&2; exit 1; }
    sleep 0.25
  done
}
stop_worker() {
  kill -TERM "$WORKER_PID"
  wait "$WORKER_PID" || true
  WORKER_PID=""
}
# measure_start / measure_end: Redis's input and AOF bytes and the time
# between the two into IN, AOF, MS.
measure_start() {
  IN0=$(info stats total_net_input_bytes)
  AOF0=$(info persistence aof_current_size)
  T0=$(now_ms)
}
measure_end() {
  MS=$(($(now_ms) - T0))
  IN=$(($(info stats total_net_input_bytes) - IN0))
  AOF=$(($(info persistence aof_current_size) - AOF0))
}
# consuming NAME PARTITIONS: a fresh broker and Redis, a worker assigned
# its partitions, the measurement started.
consuming() {
  NP=$2
  keys_of "$2"
  start "$2"
  worker "$1" "${@:3}"
  until grep -q 'assigned partition' "$TMP/$1.err" 2>/dev/null; do sleep 0.05; done
  measure_start
}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
# CPU seconds Redis (fresh per run) and the broker process have used so far.
redis_cpu() { r info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ { s += $2 } END { printf "%.1f", s }'; }
broker_cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$BROKER_PID/stat"; }
# What `produce` sent (duplicate user-item pairs of a file are collapsed).
produced() { sed -n 's/^produced \([0-9]*\) ratings.*/\1/p' "$TMP/produce.out" | tail -1; }
per() { awk -v b="$1" -v n="$2" 'BEGIN { printf "%.1f", b / n }'; }

# ingest NAME PARTITIONS DATA N [worker options]: produce everything, then one
# worker ingests it and stops. Sets MEM IN AOF RATE.
ingest() {
  local name="$1" parts="$2" data="$3" n="$4"; shift 4
  NP=$parts
  keys_of "$parts"
  start "$parts"
  "$BIN" produce ratings --data "$data" >"$TMP/produce.out" 2>&1
  n=$(produced)
  PRODUCED=$n
  worker "$name" "$@"
  until grep -q 'assigned partition' "$TMP/$name.err" 2>/dev/null; do sleep 0.05; done
  measure_start
  wait_applied "$n"
  RATE=$(awk -v n="$n" -v ms=$(($(now_ms) - T0)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
  stop_worker
  measure_end
  MEM=$(( $(info memory used_memory) - EMPTY_MEM ))
  stop_all
}

echo "bench_state: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
if [ "$ML" = 1 ]; then
  N=$(($(wc -l <"$DATA") - 1))
  printf '\n1. ML-1M (%d ratings), one worker, all produced first, clean stop\n' "$N"
  printf '%-12s %14s %16s %16s %12s\n' partitions "Redis memory" "bytes in/rating" "AOF bytes/rating" ratings/s
  for parts in 8 64; do
    ingest "ml$parts" "$parts" "$DATA" "$N"
    N=$PRODUCED
    printf '%-12s %14s %16s %16s %12s\n' "$parts" "$(mb "$MEM")" "$(per "$IN" "$N")" \
      "$(per "$AOF" "$N")" "$RATE"
    eval "MEM_$parts=$MEM"
  done
  awk -v a="$MEM_8" -v b="$MEM_64" 'BEGIN { printf "memory at 64 partitions / at 8: %.2f\n", b / a }'
fi

if [ "$STEADY" = 1 ]; then
  N=$(($(wc -l <"$DATA") - 1))
  printf '\n2. a steady 20,000 ratings/s (ML-1M, 16 partitions)\n'
  consuming steady 16
  "$BIN" produce ratings --data "$DATA" --rate 20000 >"$TMP/produce.out" 2>&1
  wait_applied "$N"
  measure_end
  printf 'bytes in per rating %s, AOF bytes per rating %s, over %.1f s\n' "$(per "$IN" "$N")" \
    "$(per "$AOF" "$N")" "$(awk -v ms="$MS" 'BEGIN { print ms / 1000 }')"
  stop_worker
  stop_all
fi

if [ "$SCALE" = 1 ]; then
  printf '\n3. scale: %d users, %d items, 64 partitions, %d synthetic ratings (seed 42; the\n   producer collapses duplicate user-item pairs)\n' \
    "$SU" "$SI" "$SN"
  awk -v n="$SN" -v nu="$SU" -v ni="$SI" 'BEGIN { srand(42); print "user,item,rating";
    for (i = 0; i < n; i++) { x = rand(); print int(rand() * nu) + 1 "," int(x * x * ni) + 1 "," int(rand() * 5) + 1 } }' \
    >"$TMP/scale.csv"
  printf '%-8s %10s %14s %22s %14s %14s %18s %16s %16s\n' workers ratings/s "Redis memory" "worker peak RSS" \
    "bytes in/rt" "AOF bytes/rt" "item-updates B/s" "item-row age" "Redis/broker CPU"
  for nw in $SCALE_WORKERS; do
    M1=$(free_port) M2=$(free_port)
    consuming "scale$nw" 64 --metrics.port "$M1"
    W1=$WORKER_PID W2=""
    if [ "$nw" = 2 ]; then
      WORKER_PID=""
      worker "scale2b" --metrics.port "$M2"
      W2=$WORKER_PID
      until grep -q 'assigned partition' "$TMP/scale2b.err" 2>/dev/null; do sleep 0.05; done
    fi
    "$BIN" produce ratings --data "$TMP/scale.csv" >"$TMP/produce.out" 2>&1 &
    PRODUCE_PID=$!
    wait "$PRODUCE_PID" || true
    PRODUCE_PID=""
    if grep -q 'dropped' "$TMP/produce.out"; then grep 'dropped' "$TMP/produce.out"; fi
    N2=$(produced) # duplicate user-item pairs were collapsed
    WORKER_PID=$W1
    wait_applied "$N2"
    RATE=$(awk -v n="$N2" -v ms=$(($(now_ms) - T0)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
    RSS="" AGE="" UPD=""
    for pid in $W1 $W2; do RSS="$RSS${RSS:+ + }$(mb "$(awk '/^VmHWM/ { print $2 * 1024 }' "/proc/$pid/status")")"; done
    for port in $M1 $M2; do # mean age of the other worker's item changes
      [ "$port" = "$M2" ] && [ "$nw" != 2 ] && continue
      AGE="$AGE${AGE:+ / }$(curl -s "http://127.0.0.1:$port/metrics" | awk '
        /^unlearnd_item_updates_received_total / { n = $2 } /^unlearnd_item_updates_age_ms_total / { a = $2 }
        END { if (n > 0) printf "%.0f ms", a / n; else printf "-" }')"
    done
    # Bytes on item-updates over the run (kcat: payload sizes; the topic is fresh per run).
    if command -v kcat >/dev/null; then
      UPD=$(kcat -C -b "$(cat "$TMP/broker.addr")" -t item-updates -e -q -f '%S\n' 2>/dev/null |
        awk -v ms=$(($(now_ms) - T0)) '{ b += $1 } END { printf "%.0f", b * 1000 / ms }')
    fi
    CPU="$(redis_cpu) s / $(broker_cpu) s"
    for pid in $W2 $W1; do WORKER_PID=$pid; stop_worker; done
    measure_end
    MEM=$(( $(info memory used_memory) - EMPTY_MEM ))
    printf '%-8s %10s %14s %22s %14s %14s %18s %16s %16s\n' "$nw" "$RATE" "$(mb "$MEM")" "$RSS" \
      "$(per "$IN" "$N2")" "$(per "$AOF" "$N2")" "${UPD:--}" "${AGE:--}" "$CPU"
    stop_all
  done
  if [ "$SCALE_FIRST" = 1 ]; then
    NP=64
    keys_of 64
    start 64
    "$BIN" produce ratings --data "$TMP/scale.csv" >"$TMP/produce.out" 2>&1
    if grep -q 'dropped' "$TMP/produce.out"; then grep 'dropped' "$TMP/produce.out"; fi
    N2=$(produced)
    worker scale1f
    until grep -q 'assigned partition' "$TMP/scale1f.err" 2>/dev/null; do sleep 0.05; done
    measure_start
    wait_applied "$N2"
    RATE=$(awk -v n="$N2" -v ms=$(($(now_ms) - T0)) 'BEGIN { printf "%.0f", n * 1000 / ms }')
    RSS=$(mb "$(awk '/^VmHWM/ { print $2 * 1024 }' "/proc/$WORKER_PID/status")")
    CPU="$(redis_cpu) s / $(broker_cpu) s"
    stop_worker
    measure_end
    MEM=$(( $(info memory used_memory) - EMPTY_MEM ))
    printf '%-8s %10s %14s %22s %14s %14s %18s %16s %16s\n' "1 first" "$RATE" "$(mb "$MEM")" "$RSS" \
      "$(per "$IN" "$N2")" "$(per "$AOF" "$N2")" - - "$CPU"
    stop_all
  fi
  echo "($N2 ratings applied; item-row age: the mean age of the other worker's item-updates records"
  echo " when applied, per worker, to which the push interval the change waited, 200 ms, adds)"
fi
