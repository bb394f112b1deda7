#!/usr/bin/env bash
# test_recommend_two_workers.sh: two workers in one group (2 of the 4
# partitions each) rate the same items; each publishes the item rows its own
# partitions changed, as it sees them (its deltas plus the other worker's as
# of its last refresh). The owner of an item's partition republishes items
# the other worker changed after its refresh, so the model rebuilt from the
# factors topic converges to Redis's (base + every partition's delta): every
# user and item, scores within 1e-3 for users of all four partitions.
source "$(dirname "$0")/worker_lib.sh"

NU=40 NI=30
awk -v nu=$NU -v ni=$NI 'BEGIN { print "user,item,rating";
  for (u = 1; u <= nu; u++) for (i = 1; i <= ni; i++) print u "," i "," (u * 3 + i * 7) % 5 + 1 }' \
  >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
ALL_ITEMS=$(seq -s, 1 $NI)

A=""
# Worker A is ours to stop; worker_lib's cleanup stops B, the broker, Redis.
trap 'rc=$?; set +e; [ -n "$A" ] && kill -9 "$A" 2>/dev/null; (exit $rc); cleanup' EXIT
start_worker wa --publish.interval.ms 300
A=$WORKER_PID
wait_for 60 "A's assignment" grep -q 'assigned partition' "$TMP/wa.err"
start_worker wb --publish.interval.ms 300
wait_for 60 "B's assignment" grep -q 'assigned partition' "$TMP/wb.err"
two_owners() { # both hold partitions after the last rebalance
  [ "$(grep -c 'assign 2 partitions' "$TMP/wa.err")" -ge 1 ] &&
    [ "$(grep -c 'assign 2 partitions' "$TMP/wb.err")" -ge 1 ]
}
wait_for 60 "two partitions each" two_owners

"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"
wait_for 60 "all $N ratings applied" total_is applied "$N"

# Users 1..4 fall in different partitions (murmur2 of "1".."4" over 4).
for u in 1 2 3 4; do state --user "$u" | grep -o 'partition=[0-9]*'; done | sort -u >"$TMP/parts"
[ "$(wc -l <"$TMP/parts")" -ge 2 ] || fail "users 1..4 in one partition: $(cat "$TMP/parts")"
expect_match 1 2 3 4
"$BIN" recommend --from-topic factors --user 1 --top 1 2>&1 >/dev/null |
  grep -q " $NU users and $NI items" || fail "not every user and item in the topic"
echo ok
