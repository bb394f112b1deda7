#!/usr/bin/env bash
# test_worker_stream.sh: the stream worker end to end on the local broker and
# a throwaway redis-server: ratings in -> per-partition applied counts and
# offsets in Redis; forget requests (by items, by time window, for an unknown
# user) -> receipts with the right counts, factor rows published, forgotten
# ratings gone from the history, their predicted scores lower; bad events ->
# dead-letter topic, counted, worker keeps going; SIGTERM -> checkpoint and
# exit 0.
source "$(dirname "$0")/worker_lib.sh"

# 40 users x 30 items rated 1..5 by a fixed rule; items 101..105 are rated
# low (1-2) by everyone except user 7, whose account someone else used to
# rate them 5.
awk 'BEGIN { print "user,item,rating";
  for (u = 1; u <= 40; u++) {
    for (i = 1; i <= 30; i++) print u "," i "," (u * 7 + i * 3) % 5 + 1;
    for (i = 101; i <= 105; i++) print u "," i "," (u == 7 ? 5 : (u + i) % 2 + 1);
  } }' >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"

start_worker worker1 --forget.max.items 10
wait_for 60 "all $N ratings applied" total_is applied "$N"
state >"$TMP/state1"
awk '/^partition=/ { split($2, a, "="); split($9, o, "="); if (a[2] != o[2]) bad = 1 }
     END { exit bad }' "$TMP/state1" || fail "applied != next offset: $(cat "$TMP/state1")"
[ "$(grep -c '^partition=' "$TMP/state1")" -eq 4 ] || fail "expected 4 partitions"
[ "$(total dead_letters)" = 0 ] || fail "dead letters from valid input"

# Scores of the five items for user 7 before forgetting.
mean_score() {
  state --user 7 --items 101,102,103,104,105 |
    awk '/^item=/ { split($2, s, "="); t += s[2]; n++ } END { printf "%.4f\n", t / n }'
}
state --user 7 --items 101,102,103,104,105 >"$TMP/before"
[ "$(grep -c 'rated=1' "$TMP/before")" -eq 5 ] || fail "user 7's ratings not remembered"
before=$(mean_score)

"$BIN" produce forget --user 7 --items 101,102,103,104,105 --reason SOMEONE_ELSE \
  --request-id t-items >/dev/null 2>&1 || fail "produce forget (items)"
"$BIN" produce forget --user 12 --from 0 --to 100000000 --reason ERASURE \
  --request-id t-window >/dev/null 2>&1 || fail "produce forget (window)"
"$BIN" produce forget --user 424242 --items 1,2 --reason MISTAKE \
  --request-id t-unknown >/dev/null 2>&1 || fail "produce forget (unknown user)"
wait_for 60 "3 forget requests completed" total_is forget_completed 3

"$BIN" consume --topic forget-receipts --count 3 >"$TMP/receipts" 2>/dev/null ||
  fail "3 receipts expected"
grep -q 'receipt t-items user=7 forgotten=5 ' "$TMP/receipts" || fail "t-items: $(cat "$TMP/receipts")"
grep -q 'receipt t-window user=12 forgotten=35 ' "$TMP/receipts" || fail "t-window: $(cat "$TMP/receipts")"
grep -q 'receipt t-unknown user=424242 forgotten=0 ' "$TMP/receipts" || fail "t-unknown receipt"
[ "$(total forgotten)" = 40 ] || fail "forgotten total $(total forgotten), want 40"

"$BIN" consume --topic factors >"$TMP/factors" 2>/dev/null || fail "consume factors"
grep -q 'key=u:7 factor v[0-9]* user 7 ' "$TMP/factors" || fail "no factor row for user 7"
grep -q 'key=u:12 factor v[0-9]* user 12 ' "$TMP/factors" || fail "no factor row for user 12"

state --user 7 --items 101,102,103,104,105 --history >"$TMP/after"
grep -q 'rated=1' "$TMP/after" && fail "forgotten ratings still in user 7's history"
grep -q '^hist item=10[1-5] ' "$TMP/after" && fail "forgotten items still listed"
[ "$(grep -c '^hist ' "$TMP/after")" -eq 30 ] || fail "user 7 should keep 30 ratings"
state --user 12 --history | grep -q '^hist ' && fail "user 12's window request left ratings"
after=$(mean_score)
echo "user 7, mean predicted score of the forgotten items: $before -> $after"
awk -v b="$before" -v a="$after" 'BEGIN { exit !(a < b - 0.05) }' ||
  fail "scores did not drop enough: $before -> $after"

# Bad input: unknown schema id (5), a rating off the scale (1), an item list
# longer than forget.max.items (1), and bytes that are not a forget request
# (a rating record framed with the forget schema id, on the forget topic: 1).
# The worker dead-letters each with its reason and goes on.
printf 'user,item,rating\n1,500,3\n2,500,3\n3,500,3\n4,500,3\n5,500,3\n' >"$TMP/five.csv"
"$BIN" produce ratings --data "$TMP/five.csv" --schema.id.rating 99 >/dev/null 2>&1 ||
  fail "produce with another schema id"
printf 'user,item,rating\n9,501,9\n' >"$TMP/nine.csv"
"$BIN" produce ratings --data "$TMP/nine.csv" --rating.max 10 >/dev/null 2>&1 ||
  fail "produce off-scale rating"
"$BIN" produce forget --user 3 --items 1,2,3,4,5,6,7,8,9,10,11 --reason MISTAKE >/dev/null 2>&1 ||
  fail "produce long forget request"
printf 'user,item,rating\n4,503,3\n' >"$TMP/bogus.csv"
"$BIN" produce ratings --data "$TMP/bogus.csv" --topic.ratings forget-requests \
  --schema.id.rating 2 >/dev/null 2>&1 || fail "produce a rating onto the forget topic"
wait_for 60 "8 dead letters" total_is dead_letters 8
"$BIN" consume --topic dead-letter --count 8 >"$TMP/dlq" 2>/dev/null || fail "8 dead letters expected"
[ "$(grep -c 'error.code=unknown-schema' "$TMP/dlq")" -eq 5 ] || fail "unknown-schema: $(cat "$TMP/dlq")"
[ "$(grep -c 'error.code=invalid' "$TMP/dlq")" -eq 3 ] || fail "invalid: $(cat "$TMP/dlq")"
grep -q 'error.code=invalid error.message=rating: 9 outside the scale' "$TMP/dlq" || fail "scale"
grep -q 'error.message=forget request: more than forget.max.items' "$TMP/dlq" || fail "max items"
grep -q 'key=4 13 bytes error.code=invalid error.message=forget request: ' "$TMP/dlq" ||
  fail "a rating's bytes on the forget topic: $(cat "$TMP/dlq")"
grep -q 'dead-lettered forget-requests \[' "$TMP/worker1.err" || fail "no log line for a bad forget request"
grep -q 'dead-lettered ratings \[' "$TMP/worker1.err" || fail "no log line for a dead letter"
printf 'user,item,rating\n1,502,4\n' >"$TMP/one.csv"
"$BIN" produce ratings --data "$TMP/one.csv" >/dev/null 2>&1 || fail "produce one more"
wait_for 30 "the next valid rating" total_is applied "$((N + 1))"

# SIGTERM: final checkpoint, clean exit 0, every offset stored.
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit code $rc after SIGTERM"
grep -q 'stopped cleanly' "$TMP/worker1.err" || fail "no clean-stop log line"
offsets=$(state | awk '/^partition=/ { split($9, o, "="); if (o[2] > 0) t += o[2] } END { print t }')
[ "$offsets" -eq $((N + 7)) ] || fail "stored ratings offsets sum to $offsets, want $((N + 7))"
echo "ok: $N ratings, 3 forget requests, 8 dead letters, clean SIGTERM"
