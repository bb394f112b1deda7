#!/usr/bin/env bash
# test_receipt_dups.sh: duplicate receipts do not multiply with restarts.
# ROUNDS times: start the worker, send 5 forget requests, wait until their
# receipts are on the topic, then SIGKILL it half a second later; a final
# worker runs to the end. Checkpoints run every 3 s (a legal setting), so
# the kills land between a cycle's delivery and the next periodic checkpoint:
# an acknowledged outbox entry must be deleted at once, not by that
# checkpoint, or every later start publishes its receipts again (before: a
# request of the first round got one receipt per start). Asserts every
# request has a receipt with the right count and at most 2 (a kill can hit
# the moment between the acknowledgement and the deletion at most once per
# entry), every count exact, and the outboxes empty at the end.
source "$(dirname "$0")/worker_lib.sh"
ROUNDS=${ROUNDS:-6}

# 30 users x 10 items.
awk 'BEGIN { print "user,item,rating"; for (u = 1; u <= 30; u++)
  for (i = 1; i <= 10; i++) print u "," i "," 1 + (u + i) % 5 }' >"$TMP/ratings.csv"
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"

receipts_of() { # receipts on the topic whose request id starts with $1
  "$BIN" consume --topic forget-receipts --timeout-ms 2000 2>/dev/null | grep -c "receipt $1" || true
}
has_receipts() { [ "$(receipts_of "$1")" -ge "$2" ]; }

for r in $(seq "$ROUNDS"); do
  start_worker "w$r" --kafka.group.id "dups-$r" --checkpoint.interval.ms 3000
  wait_for 60 "round $r's assignment" grep -q 'assigned partition' "$TMP/w$r.err"
  : >"$TMP/batch"
  for k in 1 2 3 4 5; do # users 1..30 once each over the rounds; items 1,2
    echo "--user $(( (r - 1) * 5 + k )) --items 1,2 --reason MISTAKE --request-id d$r-$k" >>"$TMP/batch"
  done
  "$BIN" produce forget --batch "$TMP/batch" >/dev/null 2>&1 || fail "produce round $r"
  wait_for 60 "round $r's receipts" has_receipts "d$r-" 5
  sleep 0.5
  rc=0
  stop_worker KILL || rc=$?
  [ "$rc" -eq 137 ] || fail "round $r: worker exit $rc after SIGKILL"
done
start_worker final --kafka.group.id dups-final
wait_for 60 "all requests completed" total_is forget_completed $((5 * ROUNDS))
sleep 1
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "final worker exit $rc"

"$BIN" consume --topic forget-receipts --timeout-ms 2000 >"$TMP/receipts" 2>/dev/null || true
awk -v rounds="$ROUNDS" '/ receipt d[0-9]+-[0-9]+ / {
    for (i = 1; i <= NF; i++) if ($i == "receipt") id = $(i + 1)
    n[id]++; if ($0 !~ / forgotten=2 /) { print id ": " $0; bad = 1 } }
  END { for (r = 1; r <= rounds; r++) for (k = 1; k <= 5; k++) {
          id = "d" r "-" k; total += n[id]; if (n[id] > most) most = n[id]
          if (n[id] < 1 || n[id] > 2) { print id ": " n[id] " receipts"; bad = 1 } }
        printf "%d receipts for %d requests over %d SIGKILLs, at most %d per request\n",
          total, rounds * 5, rounds, most
        exit bad }' "$TMP/receipts" || fail "receipts per request"
[ "$(total forgotten)" = $((10 * ROUNDS)) ] || fail "forgotten $(total forgotten), want $((10 * ROUNDS))"
[ "$(redis-cli -p "$REDIS_PORT" --scan --pattern 'ul:*:outbox' | wc -l)" -eq 0 ] ||
  fail "outbox not emptied"
echo "ok: no receipt published more than twice across $ROUNDS restarts"
