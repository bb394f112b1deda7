#!/usr/bin/env bash
# test_worker_truncated.sh: an empty state facing a partition that lost its
# oldest records (issue 10.3). The local broker keeps about 5 MiB per
# partition and deletes the oldest batches beyond (docs/broker.md): 250,000
# ratings of one user (partition 0 of 4) leave partition 0 with a low
# watermark above 0. A worker with an empty Redis must refuse to build a
# partial model (on.truncated=refuse, the default), naming the topic, the
# partition and the lost range; with on.truncated=accept it warns with the
# range and applies exactly the records left, logging the real start offset.
source "$(dirname "$0")/worker_lib.sh"

N=250000
# User 21 is in partition 0 of 4 (test_rows); items 1..N, one rating each.
awk -v n="$N" 'BEGIN { print "user,item,rating"; for (i = 1; i <= n; i++) print "21," i "," i % 5 + 1 }' \
  >"$TMP/ratings.csv"
"$BIN" produce ratings --data "$TMP/ratings.csv" >"$TMP/produce.out" 2>&1 || fail "produce"
# `produce` itself warns about the loss; the worker must not rely on anyone reading it.
grep -q 'no longer holds' "$TMP/produce.out" ||
  fail "the broker kept every record; the test needs a truncated partition: $(cat "$TMP/produce.out")"

# 1. refuse (default): exits non-zero, says which records are gone, applies nothing.
start_worker refuse
wait_exit 30 "starting on a truncated partition"
[ "$EXIT_RC" -ne 0 ] || fail "worker exit 0 on a truncated partition"
line=$(grep 'on.truncated=refuse' "$TMP/refuse.err" | head -1)
[ -n "$line" ] || fail "no refusal naming on.truncated: $(tail -5 "$TMP/refuse.err")"
echo "$line" | grep -Eq 'ratings \[0\]: records 0\.\.[0-9]+ \([0-9]+\) were deleted' ||
  fail "refusal does not name topic, partition and range: $line"
lo=$(echo "$line" | sed -E 's/.*records 0\.\.([0-9]+) .*/\1/')
lo=$((lo + 1))
[ "$lo" -gt 0 ] && [ "$lo" -lt "$N" ] || fail "odd low watermark $lo"
a=$(total applied)
[ "${a:-0}" = 0 ] || fail "refused, but $a ratings were checkpointed"
echo "ok: refused, records 0..$((lo - 1)) of ratings [0] are gone"

# 2. accept: a WARN with the same range, the real start offset in the
# assignment line, and exactly N - lo ratings applied.
start_worker accept --on.truncated accept
wait_for 120 "the records left applied" total_is applied "$((N - lo))"
grep -q "WARN.*ratings \[0\]: records 0\.\.$((lo - 1)) ($lo) were deleted.*on.truncated=accept" \
  "$TMP/accept.err" || fail "no WARN naming the range: $(grep -m3 'ratings \[0\]' "$TMP/accept.err")"
grep -q "assigned partition 0: ratings from offset $lo," "$TMP/accept.err" ||
  fail "assignment log does not give the real start: $(grep -m1 'assigned partition 0' "$TMP/accept.err")"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc after SIGTERM"

# 3. A restart resumes from the stored offset (above the low watermark): no warning.
start_worker again
wait_for 60 "assignment" grep -q 'assigned partition 0' "$TMP/again.err"
sleep 1
grep -q 'were deleted' "$TMP/again.err" && fail "warned again although the state is intact"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc after SIGTERM"
echo "ok: accepted with a warning, $((N - lo)) of $N ratings applied, restart silent"
