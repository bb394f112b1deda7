#!/usr/bin/env bash
# test_worker_rebalance.sh: two workers in one consumer group on one Redis,
# with rebalances mid-stream: worker B joins while A consumes 200,000 ratings
# (A checkpoints and gives up partitions, B resumes them from Redis), then A
# leaves with SIGTERM (B takes everything over). Run once with the eager
# protocol (range assignor) and once with cooperative-sticky. Every partition
# ends with applied == its stored offset and the total is exact: no rating
# lost or applied twice; a forget request sent during the rebalance gets its
# receipt.
source "$(dirname "$0")/worker_lib.sh"

N=200000
awk -v n="$N" 'BEGIN { print "user,item,rating";
  for (u = 1; u <= n / 100; u++)
    for (j = 0; j < 100; j++) print u "," (u * 7 + j * 13) % 500 + 1 "," (u + j) % 5 + 1 }' \
  >"$TMP/ratings.csv"

applied_at_least() { local a; a=$(total applied); [ -n "$a" ] && [ "$a" -ge "$1" ]; }

run() { # name strategy forget-requests-in-topic items-to-forget
  local name="$1" strategy="$2" nforget="$3" items="$4" rc
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
  local group="g-$name"
  start_worker "$name-a" --kafka.group.id "$group" --kafka.partition.assignment.strategy "$strategy"
  local A=$WORKER_PID
  wait_for 60 "A's assignment ($name)" grep -q 'assigned partition' "$TMP/$name-a.err"
  # Throttled, so that B joins and A leaves while ratings are still arriving.
  "$BIN" produce ratings --data "$TMP/ratings.csv" --rate 25000 >/dev/null 2>&1 &
  local P=$!
  wait_for 120 "A's progress ($name)" applied_at_least $((N - 180000))
  start_worker "$name-b" --kafka.group.id "$group" --kafka.partition.assignment.strategy "$strategy"
  local B=$WORKER_PID
  "$BIN" produce forget --user 5 --items "$items" --reason MISTAKE --request-id "t-$name" \
    >/dev/null 2>&1 || fail "produce forget"
  wait_for 60 "B's assignment ($name)" grep -q 'assigned partition' "$TMP/$name-b.err"
  echo "$name: B joined at $(total applied) applied"
  WORKER_PID=$A
  rc=0
  stop_worker TERM || rc=$?
  [ "$rc" -eq 0 ] || fail "worker A exit $rc ($name)"
  echo "$name: A left at $(total applied) applied"
  WORKER_PID=$B
  wait "$P" || fail "produce ($name)"
  wait_for 120 "all ratings applied ($name)" total_is applied "$N"
  wait_for 60 "the forget requests ($name)" total_is forget_completed "$nforget"
  state >"$TMP/state-$name"
  awk '/^partition=/ { split($2, a, "="); split($9, o, "=");
         if (a[2] != o[2]) { print $1 ": " a[2] " applied, offset " o[2]; bad = 1 } }
       END { exit bad }' "$TMP/state-$name" || fail "$name: a rating lost or applied twice"
  grep -q 'revoked partition' "$TMP/$name-a.err" || fail "$name: A never revoked"
  rc=0
  stop_worker TERM || rc=$?
  [ "$rc" -eq 0 ] || fail "worker B exit $rc ($name)"
  echo "ok ($name): $N ratings exactly once across join and leave"
}

run eager range 1 36,49,62
# The topics keep the first run's data (ratings and forget request): the
# second run, on an emptied Redis, reads both copies.
N=$((2 * N))
run coop cooperative-sticky 2 75,88,101
"$BIN" consume --topic forget-receipts >"$TMP/receipts" 2>/dev/null || fail "receipts"
grep -q 'receipt t-eager user=5 forgotten=3 ' "$TMP/receipts" || fail "receipt t-eager"
# Each rating of user 5 is in the topic twice by then: both copies go.
grep -q 'receipt t-coop user=5 forgotten=6 ' "$TMP/receipts" || fail "receipt t-coop"
