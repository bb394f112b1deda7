#!/usr/bin/env bash
# test_forget_race.sh: a forget request covers every rating acknowledged
# before it was produced. One rating, then (once `produce` has its delivery
# report) a forget request for it, TRIES times (default 100) in each of two
# settings: an idle stream at default settings, and a lagging worker (a
# background stream keeps it behind) with --metrics.port set (librdkafka
# statistics on, as in deploy/). Every receipt must say forgotten=1 and the
# rating must be gone from the history: 0 misses. (The worker once took the
# ratings partition's end from librdkafka's cache, stale or unknown, and an
# unknown end counted as "nothing to wait for": 13 of 20 missed when idle.)
source "$(dirname "$0")/worker_lib.sh"
TRIES=${TRIES:-100}

# tries PREFIX FIRST_USER: TRIES (rating, forget) pairs, users FIRST_USER..
tries() {
  local prefix="$1" first="$2" u
  for i in $(seq "$TRIES"); do
    u=$((first + i))
    printf 'user,item,rating\n%s,7,4\n' "$u" >"$TMP/one.csv"
    "$BIN" produce ratings --data "$TMP/one.csv" >/dev/null 2>&1 || fail "produce rating $i"
    "$BIN" produce forget --user "$u" --items 7 --reason MISTAKE --request-id "$prefix-$i" \
      >/dev/null 2>&1 || fail "produce forget $i"
    sleep 0.05
  done
}
# misses PREFIX: requests of PREFIX whose receipt did not forget the rating.
misses() {
  "$BIN" consume --topic forget-receipts --timeout-ms 3000 >"$TMP/receipts" 2>/dev/null || true
  local got
  got=$(grep -c "receipt $1-" "$TMP/receipts" || true)
  [ "$got" -eq "$TRIES" ] || fail "$1: $got receipts for $TRIES requests"
  grep "receipt $1-" "$TMP/receipts" | grep -vc ' forgotten=1 ' || true
}
all_done() { [ "$(total forget_completed)" = "$1" ]; }

# 1. Idle, default settings (only the test's Redis and a short session).
"$BIN" worker "${REDIS[@]}" --kafka.session.timeout.ms 6000 >"$TMP/idle.out" 2>"$TMP/idle.err" &
WORKER_PID=$!
wait_for 60 "the idle worker's assignment" grep -q 'assigned partition' "$TMP/idle.err"
tries idle 100000
wait_for 120 "the idle requests" all_done "$TRIES"
m=$(misses idle)
echo "idle, default settings: $m misses in $TRIES"
[ "$m" -eq 0 ] || fail "idle: $m of $TRIES forget requests missed the rating produced before them"
stop_worker TERM || fail "idle worker exit"

# 2. Lagging, statistics on: a background stream at a rate the worker takes
# a while to catch up with (it starts behind a backlog).
awk 'BEGIN { print "user,item,rating"; for (n = 0; n < 400000; n++)
  print 1 + n % 5000 "," 1 + (n * 7) % 400 "," 1 + n % 5 }' >"$TMP/bg.csv"
"$BIN" produce ratings --data "$TMP/bg.csv" --limit 100000 >/dev/null 2>&1 || fail "backlog"
MPORT=$(free_port)
"$BIN" worker "${REDIS[@]}" --kafka.session.timeout.ms 6000 --kafka.group.id lagging \
  --metrics.port "$MPORT" --kafka.statistics.interval.ms 100 \
  >"$TMP/lag.out" 2>"$TMP/lag.err" &
WORKER_PID=$!
"$BIN" produce ratings --data "$TMP/bg.csv" --rate 20000 >/dev/null 2>&1 &
BG=$!
wait_for 60 "the lagging worker's assignment" grep -q 'assigned partition' "$TMP/lag.err"
echo "lagging: $(total applied) of the backlog checkpointed when the first pair is sent"
tries lag 200000
kill "$BG" 2>/dev/null || true
wait "$BG" 2>/dev/null || true
wait_for 180 "the lagging requests" all_done "$((2 * TRIES))"
m=$(misses lag)
echo "lagging, statistics on: $m misses in $TRIES"
[ "$m" -eq 0 ] || fail "lagging: $m of $TRIES forget requests missed the rating produced before them"
state --user 200001 --history | grep -q '^hist ' && fail "user 200001's rating is still remembered"
stop_worker TERM || fail "lagging worker exit"
echo "ok: $((2 * TRIES)) forget requests, each covering the rating produced before it"
