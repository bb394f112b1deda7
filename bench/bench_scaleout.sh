#!/usr/bin/env bash
# bench_scaleout.sh [--data PATH] [--partitions N] [--seed S] [--push-ms MS]
#                   [--skip-rebalance] [--bin PATH]
# Scale-out figures on this machine (broker, Redis and workers share the cores):
#   1. convergence: an 80/20 split of the data (seeded); the 80% training
#      ratings, shuffled (seeded), are produced once; one worker builds m1 from
#      them (one Redis), then two workers in one group build it again from the
#      same topic (a fresh group, one Redis; they exchange item changes
#      through item-updates every --push-ms, default 200). Each model is read back from
#      Redis (`unlearnd state --export-model`) and scored on the 20% test ratings
#      (`unlearnd score`): test RMSE of both and the gap;
#   2. ratings/s for 1 and 2 workers: from the first partition assignment to
#      the checkpoint showing every rating applied (state polled every 50 ms);
#   3. rebalance time: while a second copy of the ratings streams in (throttled)
#      to the two workers, one leaves by SIGTERM, later one is killed with
#      SIGKILL; the time from the signal until every partition it owned shows
#      an applied-offset advance again (state polled every 50 ms).
# Default data: ML-1M from ../shared/data; else a synthetic 1,000,000-rating
# file. Prints figures; asserts nothing about speed.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/bench_lib.sh
BIN=build/unlearnd
DATA=""
PARTS=16
SEED=42
REBALANCE=1
WOPTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA="$2"; shift 2 ;;
    --partitions) PARTS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --skip-rebalance) REBALANCE=0; shift ;;
    --push-ms) WOPTS+=(--items.push.interval.ms "$2"); shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "bench_scaleout: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || scripts/build.sh release >/dev/null
bench_tmp

[ -n "$DATA" ] || DATA=$(default_data "$TMP")
split_data "$SEED"
echo "data: $DATA: $NTRAIN training ratings (shuffled, seed $SEED), $NTEST test ratings;" \
  "$PARTS partitions; $(nproc) cores shared by broker, Redis and workers"

"$BIN" broker --partitions "$PARTS" >/dev/null 2>"$TMP/broker.err" &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
"$BIN" produce ratings --data "$TMP/train.csv" >"$TMP/produce.out" 2>&1
grep -q "produced $NTRAIN ratings" "$TMP/produce.out" || { cat "$TMP/produce.out" >&2; exit 1; }

state_of() { "$BIN" state "${REDIS[@]}" "$@"; }
applied() { state_of 2>/dev/null | awk '/^total/ { split($2, a, "="); print a[2] }'; }
# start_worker NAME GROUP [options]
start_worker() {
  local name="$1" group="$2"; shift 2
  "$BIN" worker "${REDIS[@]}" --kafka.group.id "$group" --checkpoint.interval.ms 200 \
    --kafka.session.timeout.ms 6000 --kafka.heartbeat.interval.ms 500 "${WOPTS[@]}" "$@" \
    >/dev/null 2>"$TMP/$name.err" &
  LAST_PID=$!
  PIDS="$PIDS $LAST_PID"
}
wait_assigned() { # wait until one of the logs shows an assignment
  until cat "$@" 2>/dev/null | grep -q 'assigned partition'; do sleep 0.02; done
}
wait_applied() { # N
  while [ "$(applied)" != "$1" ]; do sleep 0.05; done
}
stop() { kill -TERM "$1"; wait "$1" || true; }

owned_by() { # LOG: partitions assigned last and not revoked since
  awk '{ p = ""; for (i = 1; i < NF; i++) if ($i == "partition") { p = $(i + 1); sub(":", "", p) } }
       /assigned partition/ { own[p] = 1 }
       /revoked partition|partition [0-9]+ lost/ { delete own[p] }
       END { for (p in own) print p }' "$1" | sort -n | tr '\n' ' '
}
# build NAME GROUP NWORKERS: ingest the training topic, print ratings/s, export
# and score the model. Sets RMSE_<NAME>.
build() {
  local name="$1" group="$2" nw="$3" pids="" logs=""
  for i in $(seq "$nw"); do
    start_worker "$name-$i" "$group"
    pids="$pids $LAST_PID"
    logs="$logs $TMP/$name-$i.err"
  done
  wait_assigned $logs
  local ta tb ts="" as=0 log; ta=$(now_ms)
  while :; do
    local a; a=$(applied); a=${a:-0}
    if [ -z "$ts" ]; then # the moment every worker owns partitions
      local all=1
      for log in $logs; do [ -n "$(owned_by "$log")" ] || all=0; done
      [ "$all" = 1 ] && { ts=$(now_ms); as=$a; }
    fi
    [ "$a" = "$NTRAIN" ] && break
    sleep 0.05
  done
  tb=$(now_ms)
  echo "$name: $nw worker(s), $NTRAIN ratings in $((tb - ta)) ms =" \
    "$((NTRAIN * 1000 / (tb - ta))) ratings/s (first assignment -> all applied)"
  if [ "$nw" -gt 1 ] && [ -n "$ts" ] && [ "$tb" -gt "$ts" ]; then
    echo "$name: the group settled (every worker assigned) $((ts - ta)) ms after the first" \
      "assignment with $as applied; from there $(((NTRAIN - as) * 1000 / (tb - ts))) ratings/s"
  fi
  for pid in $pids; do stop "$pid"; done
  state_of --export-model "$TMP/$name.model" >/dev/null
  local s; s=$("$BIN" score --model "$TMP/$name.model" --data "$TMP/test.csv")
  echo "$name: test $s"
  eval "RMSE_$name=$(echo "$s" | sed 's/.*rmse=\([0-9.]*\).*/\1/')"
}

P1=$(start_redis); REDIS_PORTS="$P1"
REDIS=(--redis.host 127.0.0.1 --redis.port "$P1")
build one g-one 1
# The same single worker again (fresh Redis and group): the run-to-run noise
# of one worker (the interleaving of partitions differs between runs).
P0=$(start_redis); REDIS_PORTS="$REDIS_PORTS $P0"
REDIS=(--redis.host 127.0.0.1 --redis.port "$P0")
build again g-again 1
P2=$(start_redis); REDIS_PORTS="$REDIS_PORTS $P2"
REDIS=(--redis.host 127.0.0.1 --redis.port "$P2")
build two g-two 2
awk -v a="$RMSE_one" -v c="$RMSE_again" -v b="$RMSE_two" 'BEGIN { d = b - a; e = c - a
  printf "convergence: test RMSE 1 worker %.4f (again: %.4f, %+.4f), 2 workers %.4f: gap %+.4f (|gap| %s 0.01)\n",
    a, c, e, b, d, (d < 0 ? -d : d) <= 0.01 ? "<=" : ">" }'

[ "$REBALANCE" = 1 ] || exit 0

# Rebalance: two workers on a second copy of the stream, throttled so that the
# partitions keep receiving ratings; one leaves (SIGTERM), then a new one
# joins and is killed (SIGKILL: the group notices after session.timeout.ms).
offsets() { # "p applied" lines
  state_of 2>/dev/null | awk '/^partition=/ { split($1, p, "="); split($2, a, "="); print p[2], a[2] }'
}
# moved_time SIGNAL PID LOG: signal the worker; ms until every partition it
# owned has advanced beyond its applied count at the time it stopped.
moved_time() {
  local sig="$1" pid="$2" log="$3" parts t0
  parts=$(owned_by "$log")
  t0=$(now_ms)
  kill "-$sig" "$pid"
  wait "$pid" 2>/dev/null || true
  offsets >"$TMP/at-exit"
  local t1 first="" all=""
  while :; do
    offsets >"$TMP/now"
    t1=$(now_ms)
    local adv total
    adv=$(awk -v parts="$parts" 'BEGIN { n = split(parts, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1 }
      NR == FNR { base[$1] = $2; next } ($1 in want) && $2 > base[$1] { c++ } END { print c + 0 }' \
      "$TMP/at-exit" "$TMP/now")
    total=$(echo "$parts" | wc -w)
    [ -z "$first" ] && [ "$adv" -gt 0 ] && first=$((t1 - t0))
    if [ "$adv" -eq "$total" ]; then all=$((t1 - t0)); break; fi
    [ $((t1 - t0)) -lt 120000 ] || { echo "rebalance: partitions not resumed after 120 s" >&2; exit 1; }
    sleep 0.05
  done
  echo "rebalance after SIG$sig of a worker owning partitions [ $parts]: first moved partition" \
    "consumed again after $first ms, all after $all ms"
}
# 15,000/s: the copy lasts ~53 s, longer than both rebalances with their
# waits (at 40,000/s it ended before the SIGKILL's takeover, and a moved
# partition with nothing new to apply never shows an advance).
"$BIN" produce ratings --data "$TMP/train.csv" --rate 15000 >/dev/null 2>&1 &
PROD=$!
PIDS="$PIDS $PROD"
start_worker reb-1 g-two; A=$LAST_PID
start_worker reb-2 g-two; B=$LAST_PID
until [ "$(owned_by "$TMP/reb-1.err" | wc -w)" -gt 0 ] && [ "$(owned_by "$TMP/reb-2.err" | wc -w)" -gt 0 ]; do
  sleep 0.1
done
sleep 2
moved_time TERM "$A" "$TMP/reb-1.err"
start_worker reb-3 g-two; C=$LAST_PID
until [ "$(owned_by "$TMP/reb-3.err" | wc -w)" -gt 0 ]; do sleep 0.1; done
sleep 2
moved_time KILL "$C" "$TMP/reb-3.err"
echo "  (SIGKILL: the group waits for kafka.session.timeout.ms=6000 before reassigning)"
kill "$PROD" 2>/dev/null || true
stop "$B"
