#!/usr/bin/env bash
# test_recommend_stream.sh: `unlearnd recommend --from-topic factors` against
# a real worker. The worker publishes every row ratings changed (each
# publish.interval.ms) and every row of a partition it takes over, so after
# a run the model rebuilt from the topic holds every user and item, and its
# scores equal the worker's own predictions in Redis (`unlearnd state`)
# within 1e-3, before and after a forget request (which also checks that
# published item biases carry the global mean). An empty topic and a user
# the topic does not hold are refused.
source "$(dirname "$0")/worker_lib.sh"

NU=30 NI=25
awk -v nu=$NU -v ni=$NI 'BEGIN { print "user,item,rating";
  for (u = 1; u <= nu; u++) for (i = 1; i <= ni; i++) print u "," i "," (u * 5 + i * 3) % 5 + 1 }' \
  >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
ALL_ITEMS=$(seq -s, 1 $NI)

"$BIN" recommend --from-topic factors --user 9 >"$TMP/empty.out" 2>"$TMP/empty.err" &&
  fail "recommend succeeded on an empty factors topic"
grep -q "is empty" "$TMP/empty.err" || fail "empty topic: $(cat "$TMP/empty.err")"

"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"
start_worker worker1 --publish.interval.ms 300
wait_for 60 "all $N ratings applied" total_is applied "$N"

# The whole model, from the periodic publishing alone (no forget request yet).
topic_complete() {
  "$BIN" recommend --from-topic factors --user 9 --top 1 2>&1 >/dev/null |
    grep -q " $NU users and $NI items"
}
wait_for 30 "$NU users and $NI items in the factors topic" topic_complete

expect_match 1 9 30

# After a forget request: the cycle's rows are published (outbox), the
# rebuilt model still matches Redis, with the version of the cycle.
"$BIN" produce forget --user 9 --items 3,4 --reason MISTAKE --request-id t-rec >/dev/null 2>&1 ||
  fail "produce forget"
wait_for 60 "the forget request completed" total_is forget_completed 1
cycle_published() {
  "$BIN" recommend --from-topic factors --user 9 --top 1 2>&1 >/dev/null |
    grep -q " $NU users and $NI items, model version 1"
}
wait_for 30 "the cycle's rows in the factors topic" cycle_published
expect_match 9 1

# A clean stop publishes what is left and the topic still matches.
stop_worker TERM || fail "worker exit code $?"
expect_match 9

# A user the topic has no row for.
"$BIN" recommend --from-topic factors --user 999 >"$TMP/u.out" 2>"$TMP/u.err" &&
  fail "recommend succeeded for a user without a row"
grep -q "user 999 is not in the model" "$TMP/u.err" || fail "unknown user: $(cat "$TMP/u.err")"
echo ok
