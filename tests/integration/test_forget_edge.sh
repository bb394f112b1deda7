#!/usr/bin/env bash
# test_forget_edge.sh: forget requests at the edges, end to end.
#  1. retention.per.user=5 (each user's items 1..5 are dropped from the
#     history): a user never seen, a list partly beyond the retention
#     (ERASURE: a WARN and erasure_beyond_retention_total), the same items
#     twice, a window over dropped ratings only; the receipts' requested /
#     forgotten / not_found / beyond_retention are exact.
#  2. A worker killed while a cycle is out (the exit-during-cycle fault hook:
#     the thread computed, the loop never merged) and one killed by SIGKILL
#     just after a burst: after a restart every request has a receipt with
#     the right count, nothing is forgotten twice (forgotten and
#     forget_completed exact), histories lose exactly F.
#  3. Requests arriving while a second worker joins and the first leaves
#     (rebalances): every request receipted with the right count (at most
#     twice: a revoke may hand an entry on unacknowledged), forgotten and
#     forget_completed exact, every rating once.
source "$(dirname "$0")/worker_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }

# 40 users x items 1..10 in file order (event time = line number - 2, ms).
awk 'BEGIN { print "user,item,rating"; for (u = 1; u <= 40; u++)
  for (i = 1; i <= 10; i++) print u "," i "," 1 + (u + i) % 5 }' >"$TMP/ratings.csv"
N=400
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"
receipt() { grep " receipt $1 " "$TMP/receipts" | head -1; }
# stop_clean: SIGTERM, exit 0.
stop_clean() { local rc=0; stop_worker TERM || rc=$?; [ "$rc" -eq 0 ] || fail "worker exit $rc"; }
# at_most_twice REGEX: no request whose id matches has more than 2 receipts.
at_most_twice() {
  "$BIN" consume --topic forget-receipts >"$TMP/receipts" 2>/dev/null || true
  awk -v re="$1" '$0 ~ " receipt " re " " { for (i = 1; i <= NF; i++) if ($i == "receipt") n[$(i + 1)]++ }
    END { for (id in n) if (n[id] > 2) { print id ": " n[id]; bad = 1 }; exit bad }' \
    "$TMP/receipts" || fail "a request receipted more than twice"
}
# exactly_once: every partition applied as many ratings as its stored offset.
exactly_once() {
  state >"$TMP/state"
  awk '/^partition=/ { split($2, a, "="); split($9, o, "="); if (a[2] != o[2]) bad = 1 }
       END { exit bad }' "$TMP/state" || fail "a rating lost or applied twice: $(cat "$TMP/state")"
}
expect_receipt() { # id field=value...
  local id="$1" line; shift
  line=$(receipt "$id")
  [ -n "$line" ] || fail "no receipt for $id"
  for kv in "$@"; do
    grep -q " $kv\( \|$\)" <<<"$line" || fail "$id: want $kv in: $line"
  done
}

# ---- 1. edge cases of one request ----------------------------------------
PORT=$(free_port)
start_worker edge --retention.per.user 5 --metrics.port "$PORT" --metrics.bind 127.0.0.1
wait_for 60 "all ratings applied" total_is applied "$N"
# user 5's ratings are lines 41..50: items 1..5 (dropped) at times 40..44.
cat >"$TMP/edge.batch" <<'EOF'
--user 424242 --items 1,2 --reason MISTAKE --request-id e-never
--user 3 --items 2,4,8,99 --reason ERASURE --request-id e-partly
--user 4 --items 7,9 --reason MISTAKE --request-id e-twice-1
--user 4 --items 9,7,9 --reason MISTAKE --request-id e-twice-2
--user 5 --from 40 --to 44 --reason ERASURE --request-id e-window-old
--user 6 --from 0 --to 100000 --reason LOST_INTEREST --request-id e-window-all
EOF
"$BIN" produce forget --batch "$TMP/edge.batch" >/dev/null 2>&1 || fail "produce edge requests"
wait_for 60 "the edge requests" total_is forget_completed 6
"$BIN" consume --topic forget-receipts --count 6 >"$TMP/receipts" 2>/dev/null || fail "6 receipts"
expect_receipt e-never forgotten=0 requested=2 not_found=2 beyond_retention=0
expect_receipt e-partly forgotten=1 requested=4 not_found=1 beyond_retention=2
expect_receipt e-twice-1 forgotten=2 requested=2 not_found=0
expect_receipt e-twice-2 forgotten=0 requested=2 not_found=2 beyond_retention=0
expect_receipt e-window-old forgotten=0 requested=0 beyond_retention=5
expect_receipt e-window-all forgotten=5 requested=0 beyond_retention=5
[ "$(total forgotten)" = 8 ] || fail "forgotten $(total forgotten), want 8"
grep -q 'WARN .*ERASURE request e-partly for user 3 reaches beyond the retained history: at most 2' \
  "$TMP/edge.err" || fail "no WARN for e-partly"
grep -q 'WARN .*ERASURE request e-window-old .* at most 5 ' "$TMP/edge.err" ||
  fail "no WARN for e-window-old"
grep -q 'WARN .*request e-window-all' "$TMP/edge.err" && fail "a WARN for a request that is no ERASURE"
curl -fsS --max-time 5 "http://127.0.0.1:$PORT/metrics" >"$TMP/metrics"
grep -qx 'unlearnd_erasure_beyond_retention_total 2' "$TMP/metrics" ||
  fail "erasure counter: $(grep erasure "$TMP/metrics")"
state --user 4 --history | grep -q '^hist item=[79] ' && fail "user 4 still remembers 7 or 9"
stop_clean
echo "ok: edge cases receipted exactly"

# ---- 2. killed while a cycle is out ----------------------------------------
# Users 11..30 forget items 6 and 8 (2 remembered ratings each).
: >"$TMP/kill.batch"
for u in $(seq 11 30); do
  echo "--user $u --items 6,8 --reason MISTAKE --request-id k-$u" >>"$TMP/kill.batch"
done
UNLEARND_FAULT=exit-during-cycle start_worker hook --retention.per.user 5 --kafka.group.id hook
"$BIN" produce forget --batch "$TMP/kill.batch" >/dev/null 2>&1 || fail "produce kill requests"
wait_exit 30 "the requests for the fault hook"
[ "$EXIT_RC" -eq 98 ] || fail "fault hook: worker exit $EXIT_RC, want 98"
[ "$(total forget_completed)" = 6 ] || fail "a cycle out was made durable before its merge"
start_worker after-hook --retention.per.user 5 --kafka.group.id after-hook
wait_for 60 "the requests after the crash" total_is forget_completed 26
[ "$(total forgotten)" = 48 ] || fail "forgotten $(total forgotten) after the crash, want 48"
# A real SIGKILL just after a second burst (users 31..40 forget item 10).
: >"$TMP/kill2.batch"
for u in $(seq 31 40); do
  echo "--user $u --items 10 --reason MISTAKE --request-id s-$u" >>"$TMP/kill2.batch"
done
"$BIN" produce forget --batch "$TMP/kill2.batch" >/dev/null 2>&1 || fail "produce burst"
sleep 0.15
rc=0
stop_worker KILL || rc=$?
[ "$rc" -eq 137 ] || fail "worker exit $rc after SIGKILL"
echo "killed with $(total forget_completed) of 36 requests completed"
start_worker after-kill --retention.per.user 5 --kafka.group.id after-kill
wait_for 60 "the requests after SIGKILL" total_is forget_completed 36
[ "$(total forgotten)" = 58 ] || fail "forgotten $(total forgotten) after SIGKILL, want 58"
sleep 1
stop_clean
at_most_twice '[ks]-[0-9]+'
for u in $(seq 11 30); do
  expect_receipt "k-$u" forgotten=2 requested=2
done
for u in $(seq 31 40); do
  expect_receipt "s-$u" forgotten=1 requested=1
done
for u in 11 30; do
  state --user "$u" --history | grep -q '^hist item=[68] ' && fail "user $u remembers F"
done
state --user 35 --history | grep -q '^hist item=10 ' && fail "user 35 remembers F"
[ "$(state --user 35 --history | grep -c '^hist ')" = 4 ] || fail "user 35 lost more than F"
exactly_once
echo "ok: killed during cycles, every request receipted, counts exact"

# ---- 3. requests during rebalances -----------------------------------------
# Users 21..40 (not in the stream below) forget items 7 and 9 while worker B
# joins and A leaves; a stream of other users keeps the partitions busy.
awk 'BEGIN { print "user,item,rating"; for (n = 0; n < 150000; n++)
  print 1000 + n % 3000 "," 1 + int(n / 3000) "," 1 + n % 5 }' >"$TMP/stream.csv"
: >"$TMP/reb.batch"
for u in $(seq 21 40); do
  echo "--user $u --items 7,9 --reason MISTAKE --request-id r-$u" >>"$TMP/reb.batch"
done
applied_at_least() { local a; a=$(total applied); [ -n "$a" ] && [ "$a" -ge "$1" ]; }
start_worker reb-a --kafka.group.id reb --method cff
A=$WORKER_PID
wait_for 60 "A's assignment" grep -q 'assigned partition' "$TMP/reb-a.err"
"$BIN" produce ratings --data "$TMP/stream.csv" --rate 25000 >/dev/null 2>&1 &
P=$!
wait_for 60 "A's progress" applied_at_least $((N + 20000))
start_worker reb-b --kafka.group.id reb --method cff
B=$WORKER_PID
"$BIN" produce forget --batch "$TMP/reb.batch" >/dev/null 2>&1 || fail "produce rebalance requests"
wait_for 60 "B's assignment" grep -q 'assigned partition' "$TMP/reb-b.err"
WORKER_PID=$A
stop_clean
WORKER_PID=$B
wait "$P" || fail "produce stream"
wait_for 120 "every rating" total_is applied $((N + 150000))
wait_for 60 "the rebalance requests" total_is forget_completed 56
[ "$(total forgotten)" = 98 ] || fail "forgotten $(total forgotten) after the rebalances, want 98"
stop_clean
at_most_twice 'r-[0-9]+'
for u in $(seq 21 40); do
  expect_receipt "r-$u" forgotten=2 requested=2
done
exactly_once
echo "ok: 20 requests across a join and a leave, each receipted, counts exact"
