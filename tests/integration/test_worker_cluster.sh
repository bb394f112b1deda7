#!/usr/bin/env bash
# test_worker_cluster.sh: the worker on a real local Redis Cluster (3
# primaries + 3 replicas on loopback, cluster_lib.sh), redis.cluster=seeds.
# Two workers in one group: B joins while A consumes (rebalance mid-stream);
# a primary is killed mid-stream and its replica promoted (the workers ride
# through; a checkpoint the old primary lost is replayed); a forget request
# is handled by the owner of its user's partition; A leaves (SIGTERM) while a
# second copy of the stream arrives. Asserts: per-partition applied counts
# exact; exact item statistics (count and rating sum of every item, the
# forgotten ratings taken out) at the items' home partitions; a receipt is
# not published while the replica of its partition's primary is stopped
# (WAIT), and is once it is back; the partitions' state spread over the
# primaries; import into the cluster; bad seed lists and dead seeds are
# clear errors.
source "$(dirname "$0")/worker_lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
command -v redis-cli >/dev/null || { echo "SKIP: redis-cli not installed"; exit 77; }

A="" B=""
cleanup_cluster() {
  local rc=$?
  set +e
  for pid in $A $B; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  stop_cluster "$rc" >/dev/null 2>&1
  (exit "$rc")
  cleanup
}
trap cleanup_cluster EXIT
start_cluster "$TMP/cluster" 3 1 || fail "the local cluster did not start"
REDIS=(--redis.cluster "$CLUSTER_SEEDS")
WOPTS=(--publish.interval.ms 200 --redis.retry.ms 20000)

# Bad seed lists and dead seeds: clear errors.
rc=0; state --redis.cluster "$CLUSTER_SEEDS,nope" >/dev/null 2>"$TMP/bad" || rc=$?
[ "$rc" -eq 2 ] && grep -q "'nope' is not host:port" "$TMP/bad" ||
  fail "bad seed list: exit $rc, $(cat "$TMP/bad")"
dead=$(free_port)
rc=0; state --redis.cluster "127.0.0.1:$dead" >/dev/null 2>"$TMP/dead" || rc=$?
[ "$rc" -eq 1 ] && grep -q "no Redis seed node answered: redis 127.0.0.1:$dead: cannot connect" \
  "$TMP/dead" || fail "dead seed: exit $rc, $(cat "$TMP/dead")"
"$BIN" worker --dump-config "${REDIS[@]}" >"$TMP/dump" 2>&1 || fail "--dump-config"
grep -q "^redis.cluster=$CLUSTER_SEEDS" "$TMP/dump" || fail "--dump-config lacks redis.cluster"

N=100000
awk -v n="$N" 'BEGIN { print "user,item,rating";
  for (u = 1; u <= n / 100; u++)
    for (j = 0; j < 100; j++) print u "," (u * 7 + j * 13) % 500 + 1 "," (u + j) % 5 + 1 }' \
  >"$TMP/ratings.csv"
applied_at_least() { local a; a=$(total applied); [ -n "$a" ] && [ "$a" -ge "$1" ]; }
ITEMS=$(seq -s, 1 500)
stats_ok() { wait_stats 60 "$TMP/ratings.csv" "$ITEMS" "$@"; }

start_worker a --kafka.group.id g-cluster "${WOPTS[@]}"
A=$WORKER_PID
wait_for 60 "A's assignment" grep -q 'assigned partition' "$TMP/a.err"
grep -q "connected to Redis Cluster primary 3 of 3" "$TMP/a.err" || fail "no cluster log line"
"$BIN" produce ratings --data "$TMP/ratings.csv" --rate 10000 >/dev/null 2>&1 &
P=$!
wait_for 60 "A's progress" applied_at_least 15000
start_worker b --kafka.group.id g-cluster "${WOPTS[@]}"
B=$WORKER_PID
wait_for 60 "B's assignment" grep -q 'assigned partition' "$TMP/b.err"
echo "B joined at $(total applied) applied"

# A primary holding a partition's state is killed; its replica takes over.
wait_for 60 "more progress" applied_at_least 40000
victim=$(slot_owner "$(key_slot '{p1}')")
kill_node "$victim"
echo "killed primary $victim (partition 1's slot) at $(total applied 2>/dev/null || echo '?') applied"
wait "$P" || fail "produce"
wait_for 120 "all ratings applied after the failover" total_is applied "$N"
exact_once "join and failover"
grep -q 'revoked partition' "$TMP/a.err" || fail "A never revoked a partition"
echo "the workers rode through: $(cat "$TMP/a.err" "$TMP/b.err" | grep -c 'retrying') retried Redis calls," \
  "$(cat "$TMP/a.err" "$TMP/b.err" | grep -c 'the fence moved\|lost its state') fence reloads"
primaries=$(for p in 0 1 2 3; do slot_owner "$(key_slot "{p$p}")"; done | sort -u | wc -l)
[ "$primaries" -ge 2 ] || fail "the 4 partitions' state is on $primaries primary"
stats_ok 1
echo "ok: $N ratings exactly once across a join and a failover; item statistics exact"

# Nothing a checkpoint made is published before a replica has it (WAIT):
# with the replica of a user's partition's primary stopped, the forget
# request is applied and checkpointed, its receipt waits for the replica.
FU="" rep=""
for u in $(seq 1 60); do
  pu=$(state --user "$u" | sed -n 's/.*partition=\([0-9]*\).*/\1/p')
  rep=$(replica_of "$(slot_owner "$(key_slot "{p$pu}")")")
  if [ -n "$rep" ] && node_alive "$rep"; then FU=$u; break; fi
done
[ -n "$FU" ] || fail "no partition's primary has a live replica"
FI=$(awk -v u="$FU" 'BEGIN { for (j = 0; j < 3; j++) printf "%s%d", j ? "," : "", (u * 7 + j * 13) % 500 + 1 }')
rpid=$(cat "$CLUSTER_DIR/$rep/redis.pid")
kill -STOP "$rpid"
"$BIN" produce forget --user "$FU" --items "$FI" --reason MISTAKE --request-id t-cluster \
  >/dev/null 2>&1 || { kill -CONT "$rpid"; fail "produce forget"; }
wait_for 60 "the forget request" total_is forget_completed 1
sleep 2
"$BIN" consume --topic forget-receipts --quiet --timeout-ms 1000 >"$TMP/r0" 2>&1 || true
kill -CONT "$rpid"
grep -q 'consumed 0 messages' "$TMP/r0" || fail "a receipt was published before a replica had it"
wait_for 60 "the receipt once the replica is back" \
  "$BIN" consume --topic forget-receipts --count 1 --timeout-ms 1000 --quiet
# Handled by the owner of the user's partition, once; its items'
# statistics lose exactly its ratings.
owner=$(grep -l "forget request t-cluster for user $FU done: 3 ratings forgotten" \
  "$TMP/a.err" "$TMP/b.err") || fail "no worker completed the forget request"
[ "$(echo "$owner" | wc -l)" = 1 ] || fail "both workers completed the forget request"
stats_ok 1 "$FU" "$FI" # the forgotten ratings left their items' statistics
echo "ok: a receipt waited for the replica; the forget left its items' statistics"

# A leaves while a second copy of the stream arrives: B takes everything.
"$BIN" produce ratings --data "$TMP/ratings.csv" --rate 25000 >/dev/null 2>&1 &
P=$!
wait_for 60 "progress on the second copy" applied_at_least $((N + 15000))
WORKER_PID=$A
rc=0; stop_worker TERM || rc=$?
A=""
[ "$rc" -eq 0 ] || fail "worker A exit $rc"
WORKER_PID=$B
wait "$P" || fail "produce (second copy)"
wait_for 120 "all ratings applied (second copy)" total_is applied $((2 * N))
exact_once "leave"
stats_ok 2 "$FU" "$FI"
rc=0; stop_worker TERM || rc=$?
B=""
[ "$rc" -eq 0 ] || fail "worker B exit $rc"
echo "ok: $((2 * N)) ratings exactly once over the cluster across join, failover and leave"

# import writes users to their partitions and items to their homes.
"$BIN" train --data "$TMP/ratings.csv" --out "$TMP/m.bin" --k 8 --epochs 2 >/dev/null 2>&1 ||
  fail "train"
"$BIN" import "${REDIS[@]}" --model "$TMP/m.bin" --partitions 4 --data "$TMP/ratings.csv" \
  --replace >"$TMP/imp" 2>&1 || fail "import: $(cat "$TMP/imp")"
grep -q "into the Redis Cluster of" "$TMP/imp" || fail "import summary: $(cat "$TMP/imp")"
state --item-stats 36,37 >"$TMP/imported" || fail "state after import"
grep -q "^item=36 home=0 count=200 " "$TMP/imported" &&
  grep -q "^item=37 home=1 count=200 .* bias=" "$TMP/imported" ||
  fail "imported items: $(cat "$TMP/imported")"
echo "ok: import into the cluster"
