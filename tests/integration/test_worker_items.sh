#!/usr/bin/env bash
# test_worker_items.sh: item rows have one home (item id mod partitions) and
# every worker keeps a replica current through topic.item_updates. Two
# workers in one group (2 of the 4 partitions each): a rating by a user of
# worker A's partitions changes an item whose home B owns; B (the only
# publisher of that item's row) publishes the changed row soon after:
# measured from producing the rating to reading the new row from the factors
# topic (items.push.interval.ms 200 + Kafka + publish.interval.ms 200;
# bench/ measures it without the readers' overhead). The test allows 5 s
# (ASan, shared cores) and prints the time. Then both workers stop cleanly:
# Redis then holds every item row (row flushes at revocation) equal to what
# the factors topic says.
source "$(dirname "$0")/worker_lib.sh"

NU=40 NI=30
awk -v nu=$NU -v ni=$NI 'BEGIN { print "user,item,rating";
  for (u = 1; u <= nu; u++) for (i = 1; i <= ni; i++) print u "," i "," (u * 3 + i * 7) % 5 + 1 }' \
  >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
ALL_ITEMS=$(seq -s, 1 $NI)
OPTS=(--publish.interval.ms 200 --items.push.interval.ms 200 --kafka.fetch.wait.max.ms 10)

A=""
trap 'rc=$?; set +e; [ -n "$A" ] && kill -9 "$A" 2>/dev/null; (exit $rc); cleanup' EXIT
start_worker wa "${OPTS[@]}"
A=$WORKER_PID
wait_for 60 "A's assignment" grep -q 'assigned partition' "$TMP/wa.err"
start_worker wb "${OPTS[@]}"
B=$WORKER_PID
two_owners() {
  [ "$(grep -c 'assign 2 partitions' "$TMP/wa.err")" -ge 1 ] &&
    [ "$(grep -c 'assign 2 partitions' "$TMP/wb.err")" -ge 1 ]
}
wait_for 60 "two partitions each" two_owners
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"
wait_for 60 "all $N ratings applied" total_is applied "$N"

# Which partitions each worker owns now (its last assignment).
owned() {
  awk '/assigned partition/ { p = $0; sub(/.*assigned partition /, "", p); sub(/:.*/, "", p); own[p] = 1 }
       /revoked partition|partition [0-9]+ lost/ { p = $0; sub(/.*partition /, "", p); sub(/[^0-9].*/, "", p); delete own[p] }
       END { for (p in own) printf "%s ", p }' "$1"
}
A_PARTS=" $(owned "$TMP/wa.err")" B_PARTS=" $(owned "$TMP/wb.err")"
U="" I=""
for u in $(seq 1 $NU); do
  pu=$(state --user "$u" | sed -n 's/.*partition=\([0-9]*\).*/\1/p')
  case "$A_PARTS" in *" $pu "*) U=$u; break ;; esac
done
for i in $(seq 1 $NI); do
  case "$B_PARTS" in *" $((i % 4)) "*) I=$i; break ;; esac
done
[ -n "$U" ] && [ -n "$I" ] || fail "no user of A ($A_PARTS) or item homed at B ($B_PARTS)"

# The item's row as published (the last record of key i:I), and how many.
item_row() {
  "$BIN" consume --topic factors --timeout-ms 500 2>/dev/null | grep " key=i:$I " | tail -1 |
    sed 's/.* bias=\([^ ]*\) .*/\1/'
}
item_rows() { "$BIN" consume --topic factors --timeout-ms 500 2>/dev/null | grep -c " key=i:$I "; }
sleep 1 # everything published
before=$(item_row) n_before=$(item_rows)
[ -n "$before" ] || fail "item $I was never published"
printf 'user,item,rating\n%s,%s,5\n' "$U" "$I" >"$TMP/one.csv"
t0=$(date +%s%N)
"$BIN" produce ratings --data "$TMP/one.csv" >/dev/null 2>&1 || fail "produce one rating"
seen_ms=""
for _ in $(seq 100); do
  if [ "$(item_rows)" -gt "$n_before" ] && [ "$(item_row)" != "$before" ]; then
    seen_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    break
  fi
done
[ -n "$seen_ms" ] || fail "worker B never published A's change of item $I"
echo "item $I (home at B) changed by user $U (at A): B published it ${seen_ms} ms after the rating was produced"
[ "$seen_ms" -le 5000 ] || fail "B published A's change after $seen_ms ms"

# A clean stop of both: Redis then holds what the topic holds.
for w in A B; do
  WORKER_PID=${!w}
  rc=0; stop_worker TERM || rc=$?
  [ "$rc" -eq 0 ] || fail "worker $w exit $rc"
  [ "$w" = A ] && A=""
done
state --item-stats "$ALL_ITEMS" >"$TMP/stats" || fail "state --item-stats"
grep -q "bias=none" "$TMP/stats" && fail "an item row never reached Redis: $(grep bias=none "$TMP/stats")"
expect_match 1 2 3 4
echo "ok: item rows converge between two workers; Redis holds them after a clean stop"
