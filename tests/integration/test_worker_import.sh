#!/usr/bin/env bash
# test_worker_import.sh: `unlearnd import` puts a trained model into Redis as
# m1 (users in their partition's shard, items as base rows): the state tool
# predicts what `unlearnd recommend` predicts from the file; a second import is
# refused without --replace; bad usage is refused; and the worker continues
# learning from the imported rows.
source "$(dirname "$0")/worker_lib.sh"

awk 'BEGIN { print "user,item,rating";
  for (u = 1; u <= 60; u++) for (i = 1; i <= 40; i++) if ((u + i) % 3 != 0)
    print u "," i "," (u * 5 + i * 3) % 5 + 1 }' >"$TMP/train.csv"
"$BIN" train --data "$TMP/train.csv" --out "$TMP/m.ulmf" --epochs 20 --k 8 2>/dev/null ||
  fail "train"

expect_fail() { # code needle cmd...
  local code="$1" needle="$2" rc=0; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  [ "$rc" -eq "$code" ] || { cat "$TMP/err" >&2; fail "exit $rc (want $code): $*"; }
  grep -qF -- "$needle" "$TMP/err" || { cat "$TMP/err" >&2; fail "no '$needle' from: $*"; }
}
expect_fail 2 "--model MODEL is required" "$BIN" import "${REDIS[@]}"
expect_fail 2 "redis.host is not set" "$BIN" import --model "$TMP/m.ulmf"
expect_fail 1 "$TMP/nope" "$BIN" import --model "$TMP/nope" "${REDIS[@]}" --partitions 4

# Partition count asked from the broker (4).
"$BIN" import --model "$TMP/m.ulmf" --data "$TMP/train.csv" "${REDIS[@]}" >"$TMP/imp" 2>&1 ||
  { cat "$TMP/imp" >&2; fail "import"; }
grep -q 'imported 60 users and 40 items (k=8' "$TMP/imp" || fail "import summary: $(cat "$TMP/imp")"
grep -q 'over 4 partitions' "$TMP/imp" || fail "partition count from Kafka"
expect_fail 1 "--replace" "$BIN" import --model "$TMP/m.ulmf" "${REDIS[@]}"
"$BIN" import --model "$TMP/m.ulmf" --data "$TMP/train.csv" --replace "${REDIS[@]}" >/dev/null ||
  fail "import --replace"

# The state tool predicts from Redis what recommend predicts from the file.
"$BIN" recommend --model "$TMP/m.ulmf" --user 17 --top 3 >"$TMP/rec" || fail "recommend"
read -r _ item score < <(sed -n 2p "$TMP/rec")
state --user 17 --items "$item" >"$TMP/st" || fail "state --user"
grep -q 'known=1' "$TMP/st" || fail "user 17 not in its shard: $(cat "$TMP/st")"
got=$(awk '/^item=/ { split($2, s, "="); print s[2] }' "$TMP/st")
awk -v a="$got" -v b="$score" 'BEGIN { d = a - b; exit !(d < 1e-3 && d > -1e-3) }' ||
  fail "score of item $item for user 17: Redis $got, model file $score"

# The worker learns on top of the imported model.
printf 'user,item,rating\n17,%s,1\n18,%s,1\n19,%s,1\n' "$item" "$item" "$item" >"$TMP/more.csv"
"$BIN" produce ratings --data "$TMP/more.csv" >/dev/null 2>&1 || fail "produce"
start_worker worker1
wait_for 60 "3 ratings applied" total_is applied 3
grep -q 'k=8' "$TMP/worker1.err" || fail "worker did not use the imported k"
after=$(state --user 17 --items "$item" | awk '/^item=/ { split($2, s, "="); print s[2] }')
awk -v a="$after" -v b="$got" 'BEGIN { exit !(a < b) }' || fail "score did not move: $got -> $after"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc"
echo "ok: import matches the model file ($got), worker learns on top ($got -> $after)"
