#!/usr/bin/env bash
# test_recommend_stream.sh: `unlearnd recommend --from-topic factors` against
# a real worker: after a forget request the factors topic holds the rows the
# unlearning cycle changed (the user's and the forgotten items'); the ranking
# rebuilt from the topic agrees with the worker's own scores in Redis
# (`unlearnd state`), which checks that published item biases carry the
# global mean; an empty topic and a user the topic does not hold are refused.
source "$(dirname "$0")/worker_lib.sh"

awk 'BEGIN { print "user,item,rating";
  for (u = 1; u <= 30; u++) for (i = 1; i <= 25; i++) print u "," i "," (u * 5 + i * 3) % 5 + 1 }' \
  >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"
start_worker worker1
wait_for 60 "all $N ratings applied" total_is applied "$N"

"$BIN" recommend --from-topic factors --user 9 >"$TMP/empty.out" 2>"$TMP/empty.err" &&
  fail "recommend succeeded on an empty factors topic"
grep -q "is empty" "$TMP/empty.err" || fail "empty topic: $(cat "$TMP/empty.err")"

"$BIN" produce forget --user 9 --items 3,4 --reason MISTAKE --request-id t-rec >/dev/null 2>&1 ||
  fail "produce forget"
wait_for 60 "the forget request completed" total_is forget_completed 1

"$BIN" recommend --from-topic factors --user 9 --top 5 >"$TMP/top" 2>"$TMP/top.err" ||
  fail "recommend --from-topic: $(cat "$TMP/top.err")"
grep -q "records in 4 partitions, 1 users and 2 items, model version 1" "$TMP/top.err" ||
  fail "summary: $(cat "$TMP/top.err")"
[ "$(head -1 "$TMP/top")" = "$(printf 'rank\titem\tscore')" ] || fail "header: $(head -1 "$TMP/top")"
[ "$(tail -n +2 "$TMP/top" | cut -f2 | sort | paste -sd,)" = "3,4" ] ||
  fail "want the two published items: $(cat "$TMP/top")"

# The same scores as the worker's own prediction from Redis.
items=$(tail -n +2 "$TMP/top" | cut -f2 | paste -sd,)
state --user 9 --items "$items" >"$TMP/state"
tail -n +2 "$TMP/top" | while IFS=$'\t' read -r rank item score; do
  want=$(awk -v it="item=$item" '$1 == it { split($2, s, "="); print s[2] }' "$TMP/state")
  [ -n "$want" ] || fail "state has no score for item $item"
  awk -v a="$score" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < 1e-3) }' ||
    fail "item $item: topic score $score, worker score $want"
done

# Rank order is by score, best first.
tail -n +2 "$TMP/top" | cut -f3 | sort -gr -c || fail "not sorted: $(cat "$TMP/top")"

# A user the topic has no row for.
"$BIN" recommend --from-topic factors --user 10 >"$TMP/u.out" 2>"$TMP/u.err" &&
  fail "recommend succeeded for a user without a row"
grep -q "user 10 is not in the model" "$TMP/u.err" || fail "unknown user: $(cat "$TMP/u.err")"
echo ok
