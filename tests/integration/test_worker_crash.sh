#!/usr/bin/env bash
# test_worker_crash.sh: exactly once across crashes. 200,000 ratings; the
# worker is killed with SIGKILL twice while it is consuming them and
# restarted; at the end every partition has applied exactly as many ratings
# as it holds (applied == stored next offset, and the total is 200,000):
# nothing after a checkpoint was persisted, and the replay from the stored
# offsets applied each lost rating once more, never twice; and every item's
# statistics at its home partition (count and rating sum) are the data's:
# exact deliveries replayed after a crash were applied once.
source "$(dirname "$0")/worker_lib.sh"

N=200000
# 2000 users x 100 distinct items each (13 is coprime with 500).
awk -v n="$N" 'BEGIN { print "user,item,rating";
  for (u = 1; u <= n / 100; u++)
    for (j = 0; j < 100; j++) print u "," (u * 7 + j * 13) % 500 + 1 "," (u + j) % 5 + 1 }' \
  >"$TMP/ratings.csv"
"$BIN" produce ratings --data "$TMP/ratings.csv" >"$TMP/produce.out" 2>&1 || fail "produce"

applied_between() { # lo hi: lo < applied < hi
  local a
  a=$(total applied)
  [ -n "$a" ] && [ "$a" -gt "$1" ] && [ "$a" -lt "$2" ]
}

for round in 1 2; do
  start_worker "worker$round" --checkpoint.interval.ms 100
  floor=$(total applied 2>/dev/null || true)
  floor=${floor:-0}
  # Let it apply some more, then kill it mid-stream (if it already finished,
  # the kill still tests restart, but say so).
  wait_for 120 "progress in round $round" applied_between "$((floor + 5000))" "$((N + 1))"
  rc=0
  stop_worker KILL || rc=$?
  [ "$rc" -eq 137 ] || fail "worker exit $rc after SIGKILL"
  a=$(total applied)
  echo "round $round: killed with $a of $N ratings checkpointed"
  [ "$a" -lt "$N" ] || echo "note: round $round finished before the kill"
done

# (Later restarts use a new group id: correctness never depends on the
# group's committed offsets, and the dead member's session need not expire.)
start_worker worker3 --kafka.group.id after-crash-3
wait_for 180 "all ratings applied after the restarts" total_is applied "$N"
sleep 1 # a few more checkpoints: nothing may change any more
state >"$TMP/state"
[ "$(total applied)" = "$N" ] || fail "applied changed after catching up: $(total applied)"
applied_is_offset "$TMP/state" || fail "a partition applied a rating twice or lost one"
wait_stats 60 "$TMP/ratings.csv" "$(seq -s, 1 500)" 1
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc after SIGTERM"
echo "ok: $N ratings applied exactly once across two SIGKILLs, item statistics exact"
cat "$TMP/state"


# A crash between an unlearning cycle's checkpoint and its publication: the
# receipt is in the checkpointed outbox and the next start publishes it.
"$BIN" produce forget --user 5 --items 36,49,62 --reason MISTAKE --request-id t-crash \
  >/dev/null 2>&1 || fail "produce forget"
UNLEARND_FAULT=exit-after-cycle-checkpoint start_worker worker4 --kafka.group.id after-crash-4
for _ in $(seq 300); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
rc=0
wait "$WORKER_PID" || rc=$?
WORKER_PID=""
[ "$rc" -eq 99 ] || fail "fault hook: worker exit $rc, want 99"
[ "$(total forget_completed)" = 1 ] || fail "the cycle was not checkpointed"
"$BIN" consume --topic forget-receipts --quiet >"$TMP/r0" 2>&1 || true
grep -q 'consumed 0 messages' "$TMP/r0" || fail "receipt published before the crash?"
start_worker worker5 --kafka.group.id after-crash-5
wait_for 60 "the receipt from the outbox" \
  "$BIN" consume --topic forget-receipts --count 1 --timeout-ms 1000 --quiet
"$BIN" consume --topic forget-receipts >"$TMP/r1" 2>/dev/null
grep -q 'receipt t-crash user=5 forgotten=3 ' "$TMP/r1" || fail "receipt: $(cat "$TMP/r1")"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc after SIGTERM"
[ "$(redis-cli -p "$REDIS_PORT" --scan --pattern 'ul:*:outbox' | wc -l)" -eq 0 ] ||
  fail "outbox not emptied after delivery"
echo "ok: receipt of a cycle checkpointed before a crash published after restart"
