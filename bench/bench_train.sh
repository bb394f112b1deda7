#!/usr/bin/env bash
# bench_train.sh [--data PATH] [--partitions N] [--seed S] [--after "10 30 60"]
#                [--runs N] [--two] [--flush-ms MS] [--bin PATH] [-- worker options...]
# Continuous training, end to end (broker, Redis and the worker share this
# machine's cores):
#   1. an 80/20 split of the data (seeded); `unlearnd train` on the 80% gives
#      the offline reference (test RMSE, distinct items over 500 random users'
#      top-10 lists: build/bench_topk);
#   2. the 80% training ratings, shuffled (seeded), are produced once; then,
#      per run, two workers build m1 from that topic, each with a fresh Redis
#      and consumer group: training off, then training on. Ingest rate = the
#      ratings / the time from the first partition assignment to the
#      checkpoint showing every rating applied (state polled every 50 ms);
#   3. the model is read back from Redis (`unlearnd state --export-model`)
#      one row flush after the stream (Redis holds item rows and training's
#      user rows as of the last row flush: the workers run with
#      --rows.flush.interval.ms --flush-ms, default 1000) and, for the
#      training-on worker of the first run, again --after seconds later
#      (default 10, 30 and 60 s after every rating was applied: the export
#      and scoring take a moment, so each figure is printed with the seconds
#      actually elapsed), each scored on the 20% test ratings (`unlearnd
#      score`) and with bench_topk;
#   4. with --two, once more with training on and two workers in one group
#      (they share item rows through item-updates), exported at the same
#      times, each figure printed with its gap to the one-worker run's.
# Options after `--` go to both workers (e.g. --training.share 0.1). Default
# data: ML-1M from ../shared/data; else a synthetic 1,000,000-rating file.
# Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/unlearnd
TOPK=build/bench_topk
DATA=""
PARTS=16
SEED=42
AFTER="10 30 60"
RUNS=1
TWO=0
FLUSH_MS=1000
WOPTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --partitions) PARTS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --after) AFTER="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --two) TWO=1; shift ;;
    --flush-ms) FLUSH_MS="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    --) shift; WOPTS=("$@"); break ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "bench_train: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] && [ -x "$TOPK" ] || scripts/build.sh release >/dev/null
source bench/bench_lib.sh
bench_tmp

[ -n "$DATA" ] || DATA=$(default_data "$TMP")
split_data "$SEED"
echo "data: $DATA: $NTRAIN training ratings (shuffled, seed $SEED), $NTEST test ratings;" \
  "$PARTS partitions; $(nproc) cores shared by broker, Redis and the worker;" \
  "worker options: ${WOPTS[*]:-(defaults)}"

rmse_of() { sed 's/.*rmse=\([0-9.]*\).*/\1/'; }
distinct_of() { sed 's/.*distinct=\([0-9]*\).*/\1/'; }
# evaluate NAME MODEL: prints "rmse distinct"
evaluate() {
  local r d
  r=$("$BIN" score --model "$2" --data "$TMP/test.csv" | rmse_of)
  d=$("$TOPK" "$2" --users 500 --top 10 | distinct_of)
  echo "$r $d"
}

"$BIN" train --data "$TMP/train.csv" --out "$TMP/offline.model" 2>/dev/null
read -r R D < <(evaluate offline "$TMP/offline.model")
echo "offline (unlearnd train, defaults): test RMSE $R, distinct items in 500 users' top-10: $D"

"$BIN" broker --partitions "$PARTS" >/dev/null 2>"$TMP/broker.err" &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
"$BIN" produce ratings --data "$TMP/train.csv" >"$TMP/produce.out" 2>&1
grep -q "produced $NTRAIN ratings" "$TMP/produce.out" || { cat "$TMP/produce.out" >&2; exit 1; }

applied() { "$BIN" state "${REDIS[@]}" 2>/dev/null | awk '/^total/ { split($2, a, "="); print a[2] }'; }
export_eval() { # NAME: exports the model, prints "rmse distinct"
  "$BIN" state "${REDIS[@]}" --export-model "$TMP/$1.model" >/dev/null
  evaluate "$1" "$TMP/$1.model"
}
# start_worker NAME ENABLED GROUP: one worker of group g-GROUP on $REDIS, its
# log in $TMP/NAME.err; sets PID.
start_worker() {
  "$BIN" worker "${REDIS[@]}" --kafka.group.id "g-$3" --checkpoint.interval.ms 200 \
    --rows.flush.interval.ms "$FLUSH_MS" \
    --training.enabled "$2" "${WOPTS[@]}" >/dev/null 2>"$TMP/$1.err" &
  PID=$!
  PIDS="$PIDS $PID"
}
# run NAME ENABLED CONTINUE [WORKERS]: WORKERS (1) workers in one group with a
# fresh Redis; sets RATE, and with CONTINUE the test RMSE at every --after
# time in RMSE_AT (space separated).
run() {
  local name="$1" enabled="$2" cont="$3" nw="${4:-1}" port pids="" ta tb w
  port=$(start_redis); REDIS_PORTS="$REDIS_PORTS $port"
  REDIS=(--redis.host 127.0.0.1 --redis.port "$port")
  for w in $(seq "$nw"); do
    local wname="$name"; [ "$nw" = 1 ] || wname="$name.w$w"
    start_worker "$wname" "$enabled" "$name"
    pids="$pids $PID"
  done
  until grep -qs 'assigned partition' "$TMP/$name"*.err; do sleep 0.02; done
  ta=$(now_ms)
  while [ "$(applied)" != "$NTRAIN" ]; do
    for pid in $pids; do kill -0 "$pid" 2>/dev/null || { cat "$TMP/$name"*.err >&2; exit 1; }; done
    sleep 0.05
  done
  tb=$(now_ms)
  RATE=$((NTRAIN * 1000 / (tb - ta)))
  while [ "$(now_ms)" -lt $((tb + FLUSH_MS + 200)) ]; do sleep 0.05; done
  local te; te=$(now_ms)
  read -r R D < <(export_eval "$name-stream")
  echo "$name: $nw worker(s): ingest $NTRAIN ratings in $((tb - ta)) ms = $RATE ratings/s;" \
    "after the stream (export at +$(((te - tb) / 100))00 ms): test RMSE $R, distinct items $D"
  RMSE_AT=""
  if [ "$cont" = 1 ]; then
    for s in $AFTER; do
      local due=$((tb + s * 1000)) t
      while [ "$(now_ms)" -lt "$due" ]; do sleep 0.1; done
      t=$(now_ms)
      read -r R D < <(export_eval "$name-$s")
      RMSE_AT="$RMSE_AT $R"
      echo "$name: +$(((t - tb) / 1000)).$((((t - tb) % 1000) / 100)) s of continued training:" \
        "test RMSE $R, distinct items $D"
    done
    grep -h 'train: ' "$TMP/$name"*.err | tail -2 | sed "s/^/$name: log: /"
  fi
  for pid in $pids; do kill -TERM "$pid"; done
  for pid in $pids; do wait "$pid" || true; done
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
}
for i in $(seq "$RUNS"); do
  run "off-$i" 0 0; OFF=$RATE
  run "on-$i" 1 "$([ "$i" = 1 ] && echo 1 || echo 0)"; ON=$RATE
  [ "$i" = 1 ] && RMSE_FIRST="$RMSE_AT"
  awk -v on="$ON" -v off="$OFF" -v i="$i" 'BEGIN {
    printf "run %d: ingest with training on / off = %d / %d = %.2f\n", i, on, off, on / off }'
done
if [ "$TWO" = 1 ]; then
  ONE_AT="$RMSE_FIRST"
  run "two" 1 1 2
  paste -d' ' <(tr ' ' '\n' <<<"$AFTER") <(tr ' ' '\n' <<<"${ONE_AT# }") \
    <(tr ' ' '\n' <<<"${RMSE_AT# }") | awk '{
      d = $3 - $2; printf "two workers vs one at +%s s: test RMSE %s vs %s, gap %+.4f\n", $1, $3, $2, d }'
fi
