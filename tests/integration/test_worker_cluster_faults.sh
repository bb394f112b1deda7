#!/usr/bin/env bash
# test_worker_cluster_faults.sh: the worker through Redis Cluster faults on a
# real local cluster (3 primaries, no replicas, so an outage lasts until we
# heal it; cluster_lib.sh), ratings flowing at a steady rate throughout:
#   1. a primary down at start: the worker exits 1 with an error naming the
#      node; with the node back it starts;
#   2. a slot uncovered (CLUSTER DELSLOTS of partition 1's slot): every node
#      answers CLUSTERDOWN; the worker logs it, /readyz turns 503 while it
#      lasts, and after ADDSLOTS it goes on by itself (/readyz 200);
#   3. a node answering MOVED to a node that is down: partition 2's slot
#      moved from A to B behind the worker's back, B frozen (SIGSTOP, past
#      cluster-node-timeout, so the others mark it failed); the worker follows
#      the redirection, cannot reach B, says so, and goes on when B resumes;
#   4. a slot migrated mid-stream with `redis-cli --cluster reshard`.
# After each: per-partition applied counts exact (each partition's applied
# equals its stored ratings offset: nothing lost, nothing doubled) and the
# item statistics of every item exact once all ratings are in.
source "$(dirname "$0")/worker_lib.sh"
source "$(dirname "$0")/cluster_lib.sh"
command -v redis-cli >/dev/null || { echo "SKIP: redis-cli not installed"; exit 77; }
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }

P=""
cleanup_faults() {
  local rc=$?
  set +e
  [ -n "$P" ] && kill "$P" 2>/dev/null
  for port in "${CLUSTER_PORTS[@]}"; do
    [ -s "$CLUSTER_DIR/$port/redis.pid" ] && kill -CONT "$(cat "$CLUSTER_DIR/$port/redis.pid")" 2>/dev/null
  done
  stop_cluster "$rc" >/dev/null 2>&1
  (exit "$rc")
  cleanup
}
trap cleanup_faults EXIT
start_cluster "$TMP/cluster" 3 0 || fail "the local cluster did not start"
REDIS=(--redis.cluster "$CLUSTER_SEEDS")
HPORT=$(free_port)
URL="http://127.0.0.1:$HPORT"
ready() { [ "$(curl -s -o "$TMP/readyz.body" -w '%{http_code}' --max-time 5 "$URL/readyz")" = "$1" ]; }
# A long retry budget: the worker rides out each outage below instead of
# exiting (the crash-only exit after redis.retry.ms is test_worker_readiness's).
WOPTS=(--metrics.port "$HPORT" --redis.retry.ms 120000 --redis.timeout.ms 2000
  --kafka.group.id g-faults)

N=40000
awk -v n="$N" 'BEGIN { print "user,item,rating";
  for (u = 1; u <= n / 100; u++)
    for (j = 0; j < 100; j++) print u "," (u * 7 + j * 13) % 500 + 1 "," (u + j) % 5 + 1 }' \
  >"$TMP/ratings.csv"
applied_at_least() { local a; a=$(total applied); [ -n "$a" ] && [ "$a" -ge "$1" ]; }
produce() { # COPY: one copy of the ratings at a steady rate, in the background
  "$BIN" produce ratings --data "$TMP/ratings.csv" --rate 4000 >/dev/null 2>&1 &
  P=$!
}
finish() { # COPY WHAT: the copy all applied, exactly once, statistics exact
  wait "$P" || fail "produce"
  P=""
  wait_for 120 "all ratings applied after $2" total_is applied $(($1 * N))
  exact_once "$2"
  wait_stats 60 "$TMP/ratings.csv" "$(seq -s, 1 500)" "$1"
  echo "ok: $2: $(($1 * N)) ratings exactly once, item statistics exact"
}

# 1. A primary down at start: a clear error naming it, then a start once it is back.
A=$(slot_owner "$(key_slot '{p0}')")
stop_node "$A"
start_worker worker0 --redis.retry.ms 2000 --kafka.group.id g-start
wait_exit 60 "a start with primary $A down"
[ "$EXIT_RC" -eq 1 ] || fail "start with a primary down: exit $EXIT_RC, want 1"
last=$(tail -1 "$TMP/worker0.err")
grep -q "127.0.0.1:$A: cannot connect" <<<"$last" || fail "the error does not name node $A: $last"
grep -q "connected to Redis" "$TMP/worker0.err" && fail "said connected with node $A down"
echo "ok: a primary down at start: $last"
start_node "$A" || fail "node $A did not come back"
wait_cluster_ok 30 || fail "the cluster did not heal"

start_worker worker1 "${WOPTS[@]}"
wait_for 60 "the worker's assignment" grep -q 'assigned partition' "$TMP/worker1.err"
wait_for 60 "/readyz 200" ready 200

# 2. A slot uncovered: CLUSTERDOWN everywhere until it is added back.
produce
wait_for 60 "progress" applied_at_least 8000
S=$(key_slot '{p1}')
OWNER=$(slot_owner "$S")
uncover_slot "$S" || fail "could not uncover slot $S"
wait_for 30 "/readyz 503 with slot $S uncovered" ready 503
echo "ok: /readyz 503 while slot $S is uncovered: $(cut -c1-200 "$TMP/readyz.body")"
sleep 2
grep -Eq "CLUSTERDOWN|slot $S is not served" "$TMP/worker1.err" || fail "the outage was not logged"
ready 503 || fail "/readyz not 503 during the outage"
ccli "$OWNER" cluster addslots "$S" >/dev/null || fail "ADDSLOTS $S"
wait_cluster_ok 30 || fail "the cluster did not heal"
wait_for 60 "/readyz 200 after the slot came back" ready 200
finish 1 "an uncovered slot (CLUSTERDOWN)"
echo "   (log: $(grep -Em1 "CLUSTERDOWN|slot $S is not served" "$TMP/worker1.err" | cut -c1-200))"

# 3. MOVED to a node that is down: partition 2's slot goes from A to B
# (the worker keeps its old map), then B stops answering.
produce
wait_for 60 "progress" applied_at_least $((N + 8000))
S=$(key_slot '{p2}')
A=$(slot_owner "$S")
B=$(primary_ports | grep -vx "$A" | head -1)
migrate_slot_begin "$S" "$A" "$B" && migrate_slot_keys "$S" "$A" "$B" && migrate_slot_end "$S" "$B" ||
  fail "moving slot $S from $A to $B"
BPID=$(cat "$CLUSTER_DIR/$B/redis.pid")
L=$(wc -l <"$TMP/worker1.err")
kill -STOP "$BPID"
wait_for 30 "/readyz 503 with node $B frozen" ready 503
sleep 3 # past cluster-node-timeout: the other nodes mark B failed
ccli "$A" get "{p2}x" 2>&1 | grep -Eq "MOVED $S 127.0.0.1:$B|CLUSTERDOWN" ||
  { kill -CONT "$BPID"; fail "node $A does not redirect slot $S to $B"; }
kill -CONT "$BPID"
wait_cluster_ok 30 || fail "the cluster did not heal"
tail -n +$((L + 1)) "$TMP/worker1.err" >"$TMP/moved.log"
grep -q "127.0.0.1:$B" "$TMP/moved.log" || fail "the worker never named node $B"
wait_for 60 "/readyz 200 after node $B resumed" ready 200
finish 2 "MOVED to a node that was down"
echo "   (log: $(grep -m1 "127.0.0.1:$B" "$TMP/moved.log" | cut -c1-220))"

# 4. A reshard mid-stream: every slot of the owner of partition 3's slot to another primary.
produce
wait_for 60 "progress" applied_at_least $((2 * N + 8000))
A=$(slot_owner "$(key_slot '{p3}')")
B=$(primary_ports | grep -vx "$A" | head -1)
NS=$(cluster_nodes | awk -v p="$A" '$1 == p { for (i = 5; i <= NF; i++) { if ($i ~ /^\[/) continue
  n = split($i, r, "-"); c += n > 1 ? r[2] - r[1] + 1 : 1 } print c }')
cluster_rcli --cluster reshard "127.0.0.1:$A" --cluster-from "$(node_id "$A")" \
  --cluster-to "$(node_id "$B")" --cluster-slots "$NS" --cluster-yes >"$TMP/reshard.log" 2>&1 ||
  fail "reshard: $(tail -3 "$TMP/reshard.log")"
[ "$(slot_owner "$(key_slot '{p3}')")" = "$B" ] || fail "partition 3's slot stayed on $A"
finish 3 "a reshard mid-stream ($NS slots from $A to $B)"
grep -q " ERROR " "$TMP/worker1.err" && fail "errors in the worker's log: $(grep -m3 " ERROR " "$TMP/worker1.err")"
ready 200 || fail "/readyz not 200 at the end"
rc=0; stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc"
echo "ok: the worker rode through every cluster fault"
