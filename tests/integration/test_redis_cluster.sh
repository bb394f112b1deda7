#!/usr/bin/env bash
# test_redis_cluster.sh DRIVER: worker/rcluster against a real local Redis 7
# Cluster (3 primaries + 3 replicas on loopback, tests/integration/
# cluster_lib.sh), through tests/rcluster_drive. Run 1 (no password):
# slots agree with CLUSTER KEYSLOT; writes and reads over all 16384 slots;
# SCAN + DEL over every primary; a seed down at start (clear error when none answers, success when another
# does); a workload riding through a CLUSTER FAILOVER, a hand-made slot
# migration (ASK, then MOVED), a `redis-cli --cluster reshard` and a killed
# primary; a node that answers MOVED to a node that is down; CLUSTERDOWN
# from an uncovered slot and from a primary and its replica both down, with
# clear errors and recovery once healed. Run 2 (requirepass + masterauth):
# AUTH errors named without the secret, an ACL user, a killed primary.
# Workloads check that every guarded transaction is whole and none was lost
# without notice (rcluster_drive.c).
set -euo pipefail
DRIVE="$1"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  { echo "SKIP: redis-server/redis-cli not installed"; exit 77; }
source "$(dirname "$0")/cluster_lib.sh"
TMP="$(mktemp -d)"
BG_PID=""
cleanup() {
  local rc=$?
  [ -n "$BG_PID" ] && { kill -9 "$BG_PID" 2>/dev/null || true; wait "$BG_PID" 2>/dev/null || true; }
  if [ "$rc" -ne 0 ]; then
    for f in "$TMP"/*.log; do [ -f "$f" ] && { echo "--- $f (tail)" >&2; tail -15 "$f" >&2; }; done
  fi
  stop_cluster "$rc" || true
  [ -n "${KEEP:-}" ] || rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== [${SECONDS}s] $*"; }

drive() { "$DRIVE" --seeds "$CLUSTER_SEEDS" "$@"; }

# status FIELD: a counter from the background workload's status file.
status() { sed -n "s/.*\b$1=\([0-9]*\).*/\1/p" "$TMP/status" 2>/dev/null || true; }
wait_status() { # FIELD MIN SECS
  local deadline=$((SECONDS + $3)) v
  while :; do
    v=$(status "$1"); [ -n "$v" ] && [ "$v" -ge "$2" ] && return 0
    pid_gone "$BG_PID" && fail "the driver exited early waiting for $1 >= $2"
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out waiting for $1 >= $2 ($(cat "$TMP/status"))"
    sleep 0.1
  done
}
# start_workload NAME [options]: the driver's workload in the background.
start_workload() {
  local name="$1"; shift
  rm -f "$TMP/stop" "$TMP/status"
  drive --status-file "$TMP/status" --stop-file "$TMP/stop" --retry-ms 30000 "$@" workload \
    >"$TMP/$name.out" 2>"$TMP/$name.log" &
  BG_PID=$!
  wait_status round 2 30
}
# stop_workload NAME: stop after a few more rounds; fail unless it exits 0.
stop_workload() {
  local r rc=0
  r=$(status round)
  wait_status round $((r + 3)) 60
  touch "$TMP/stop"
  wait "$BG_PID" || rc=$?
  BG_PID=""
  [ "$rc" -eq 0 ] || fail "$1: workload exited $rc: $(tail -3 "$TMP/$1.log")"
  cat "$TMP/$1.out"
}
field() { sed -n "s/.*\b$2=\([0-9]*\).*/\1/p" "$TMP/$1.out"; }
other_primary() { primary_ports | grep -vx "$1" | head -1; }

step "run 1: a 3+3 cluster without a password"
start_cluster "$TMP/c1" 3 1
out=$(drive connect)
grep -q "mode=cluster primaries=3 covered=16384" <<<"$out" || fail "connect: $out"

step "key slots agree with CLUSTER KEYSLOT"
"$DRIVE" keyslots 2000 >"$TMP/ks"
awk '{ print "CLUSTER KEYSLOT " $1 }' "$TMP/ks" | ccli "${CLUSTER_PORTS[0]}" >"$TMP/ks.server"
bad=$(paste -d' ' "$TMP/ks" "$TMP/ks.server" | awk '$2 != $3' | head -3)
[ -z "$bad" ] && [ "$(wc -l <"$TMP/ks.server")" -eq 2000 ] || fail "slots differ: $bad"

step "writes and reads over every slot"
drive fill v1 >/dev/null
drive check v1 >/dev/null
drive ping | grep -q "pinged 3 primaries" || fail "ping"
# The keys really are spread: every primary holds about a third.
for p in $(primary_ports); do
  n=$(ccli "$p" dbsize)
  [ "$n" -gt 5000 ] && [ "$n" -lt 6000 ] || fail "primary $p holds $n of 16384 keys"
done

step "SCAN + DEL over every primary"
ccli "$(slot_owner "$(key_slot other-key)")" set other-key kept >/dev/null # its slot's owner
drive clear 'ks:*' | grep -q "deleted 16384 keys" || fail "clear did not delete every slot's key"
left=0
for p in $(primary_ports); do left=$((left + $(ccli "$p" dbsize))); done
[ "$left" -eq 1 ] || fail "$left keys left after clear (expected only other-key)"
drive fill v1 >/dev/null

step "a seed down at start"
DEAD=$(cluster_free_ports 1)
rc=0; "$DRIVE" --seeds "127.0.0.1:$DEAD" connect >"$TMP/dead.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "no Redis seed node answered: redis 127.0.0.1:$DEAD: cannot connect: Connection refused" \
  "$TMP/dead.out" || fail "dead seed: exit $rc, $(cat "$TMP/dead.out")"
"$DRIVE" --seeds "127.0.0.1:$DEAD,127.0.0.1:${CLUSTER_PORTS[1]}" connect | grep -q covered=16384 ||
  fail "a live second seed was not used"

step "CLUSTER FAILOVER mid-workload: nothing lost"
P=$(slot_owner "$(key_slot 'rd:{t0}:meta')")
R=$(replica_of "$P")
start_workload failover --strict
ccli "$R" cluster failover >/dev/null
wait_role "$R" master 30
stop_workload failover
[ "$(field failover moved)" -gt 0 ] || fail "the failover gave no MOVED"
wait_cluster_ok 30

step "a slot migrated by hand mid-workload: ASK, then MOVED"
S=$(key_slot 'rd:{t3}:meta')
A=$(slot_owner "$S"); B=$(other_primary "$A")
start_workload migrate --strict
migrate_slot_begin "$S" "$A" "$B"
# First only tag 3's data key: its guarded transactions find their keys
# split between A and B (TRYAGAIN, wait), never a false guard mismatch.
ccli "$A" migrate 127.0.0.1 "$B" 'rd:{t3}:data' 0 5000 >/dev/null
deadline=$((SECONDS + 30))
until grep -q "slot $S.*split by a migration" "$TMP/migrate.log"; do
  [ "$SECONDS" -lt "$deadline" ] || fail "no split transaction seen"; sleep 0.1
done
migrate_slot_keys "$S" "$A" "$B"
wait_status ask 1 30
moved_before=$(status moved)
migrate_slot_keys "$S" "$A" "$B"
migrate_slot_end "$S" "$B"
wait_status moved $((moved_before + 1)) 30
stop_workload migrate
[ "$(slot_owner "$S")" = "$B" ] || fail "slot $S not on $B"
[ "$(ccli "$B" cluster countkeysinslot "$S")" -ge 2 ] || fail "slot $S's keys are not on $B"

step "HSCAN of a hash whose slot moves mid-scan: restarted, every field once"
S=$(key_slot 'hs:{h}'); A=$(slot_owner "$S"); B=$(other_primary "$A")
rm -f "$TMP/status" "$TMP/go"
drive --wait-file "$TMP/go" --status-file "$TMP/status" hscan 20000 >"$TMP/hscan.out" \
  2>"$TMP/hscan.log" &
BG_PID=$!
wait_status round 1 60 # the first page is in, the scan waits
migrate_slot_begin "$S" "$A" "$B"
migrate_slot_keys "$S" "$A" "$B"
migrate_slot_end "$S" "$B"
touch "$TMP/go"
rc=0; wait "$BG_PID" || rc=$?
BG_PID=""
[ "$rc" -eq 0 ] && grep -q "fields=20000 restarts=1" "$TMP/hscan.out" &&
  grep -q "HSCAN hs:{h}: moved from 127.0.0.1:$A to 127.0.0.1:$B" "$TMP/hscan.log" ||
  fail "hscan across a migration: exit $rc, $(cat "$TMP/hscan.out") $(tail -2 "$TMP/hscan.log")"

step "redis-cli --cluster reshard mid-workload"
A=$(slot_owner 0); B=$(other_primary "$A")
start_workload reshard --strict
cluster_rcli --cluster reshard "127.0.0.1:$A" --cluster-from "$(node_id "$A")" \
  --cluster-to "$(node_id "$B")" --cluster-slots 300 --cluster-yes >"$TMP/reshard.log" 2>&1 ||
  fail "reshard failed"
stop_workload reshard
[ "$(field reshard moved)" -gt 0 ] || fail "the reshard gave no MOVED"
wait_cluster_ok 30

step "a primary killed mid-workload: its replica takes over"
P=$(slot_owner "$(key_slot 'rd:{t1}:meta')")
R=$(replica_of "$P")
start_workload kill
kill_node "$P"
wait_role "$R" master 30
stop_workload kill
[ "$(field kill node_errors)" -gt 0 ] || fail "the kill was not noticed"
echo "   (lost with the primary: $(field kill lost_writes) writes; transactions reloaded: $(field kill guard_reloads) guard, $(field kill unknown) unknown)"
start_node "$P"
wait_cluster_ok 30

step "MOVED to a node that is down"
# Without full coverage the other nodes keep serving (and redirecting)
# while the dead node's slots wait for its replica, instead of all
# answering CLUSTERDOWN.
for p in "${CLUSTER_PORTS[@]}"; do ccli "$p" config set cluster-require-full-coverage no >/dev/null; done
drive fill v2 >/dev/null
rm -f "$TMP/go"
rm -f "$TMP/status"
S=$(key_slot 'rd:{t5}:meta')
A=$(slot_owner "$S"); B=$(other_primary "$A")
# Only slot S's key: the first request meets A's MOVED (a full check would
# notice B down on another slot first and refresh the map).
drive --wait-file "$TMP/go" --status-file "$TMP/status" --retry-ms 30000 --show-slot "$S" \
  --slot "$S" check v2 >"$TMP/moved-dead.out" 2>"$TMP/moved-dead.log" &
BG_PID=$!
wait_status round 0 30 # connected with the map loaded; now waiting for $TMP/go
migrate_slot_begin "$S" "$A" "$B"
migrate_slot_keys "$S" "$A" "$B"
migrate_slot_end "$S" "$B"
BR=$(replica_of "$B")
echo "   slot $S: $A -> $B (replica $BR)"
sleep 0.3 # the migrated keys reach B's replica
kill_node "$B"
touch "$TMP/go"
rc=0; wait "$BG_PID" || rc=$?
BG_PID=""
[ "$rc" -eq 0 ] || fail "MOVED to a dead node: exit $rc"
grep -q "slot $S is on 127.0.0.1:$A" "$TMP/moved-dead.log" || fail "the map was not stale"
grep -q "redis 127.0.0.1:$A: GET ks:[0-9]*: MOVED $S 127.0.0.1:$B" "$TMP/moved-dead.log" &&
  grep -q "redis 127.0.0.1:$B: cannot connect" "$TMP/moved-dead.log" ||
  fail "MOVED to $B then a refused connection not logged: $(head -5 "$TMP/moved-dead.log")"
wait_role "$BR" master 30
drive check v2 >/dev/null # every slot, B's now on BR
start_node "$B"
wait_cluster_ok 30
for p in "${CLUSTER_PORTS[@]}"; do ccli "$p" config set cluster-require-full-coverage yes >/dev/null; done

step "CLUSTERDOWN: a slot uncovered"
S=$(key_slot 'rd:{t7}:meta'); A=$(slot_owner "$S")
uncover_slot "$S"
rc=0; drive --retry-ms 1500 fill v3 >"$TMP/down.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "CLUSTERDOWN" "$TMP/down.out" && grep -q "gave up after 1500 ms" \
  "$TMP/down.out" && grep -q "redis 127.0.0.1:[0-9]*: SET ks:" "$TMP/down.out" ||
  fail "uncovered slot: exit $rc, $(tail -2 "$TMP/down.out")"
out=$(drive connect 2>&1)
grep -q "covered=16383" <<<"$out" && grep -q "1 of 16384 slots are not served" <<<"$out" ||
  fail "connect with a slot uncovered: $out"
drive --retry-ms 30000 fill v3 >"$TMP/heal.out" 2>"$TMP/heal.log" &
BG_PID=$!
sleep 1
ccli "$A" cluster addslots "$S" >/dev/null
rc=0; wait "$BG_PID" || rc=$?
BG_PID=""
[ "$rc" -eq 0 ] || fail "no recovery after ADDSLOTS: exit $rc"
grep -q CLUSTERDOWN "$TMP/heal.log" || fail "the outage was not logged"
drive check v3 >/dev/null
wait_cluster_ok 30

step "CLUSTERDOWN: a primary and its replica both down"
A=$(slot_owner 100); AR=$(replica_of "$A")
kill_node "$AR"; kill_node "$A"
deadline=$((SECONDS + 30))
until ccli "$(other_primary "$A")" cluster info | grep -q cluster_state:fail; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the cluster never noticed"; sleep 0.2
done
rc=0; drive --retry-ms 1500 fill v4 >"$TMP/down2.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "gave up after 1500 ms" "$TMP/down2.out" &&
  grep -Eq "CLUSTERDOWN|127.0.0.1:$A: cannot connect" "$TMP/down2.out" ||
  fail "both down: exit $rc, $(tail -2 "$TMP/down2.out")"
drive --retry-ms 30000 fill v4 >"$TMP/heal2.out" 2>"$TMP/heal2.log" &
BG_PID=$!
sleep 1
start_node "$A"; start_node "$AR"
rc=0; wait "$BG_PID" || rc=$?
BG_PID=""
[ "$rc" -eq 0 ] || fail "no recovery after the nodes came back: exit $rc"
drive check v4 >/dev/null
stop_cluster 0

step "run 2: requirepass + masterauth"
CLUSTER_AUTH='clu-s3cret'
start_cluster "$TMP/c2" 3 1
rc=0; drive connect >"$TMP/noauth.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "NOAUTH" "$TMP/noauth.out" || fail "no password: $(cat "$TMP/noauth.out")"
rc=0; RCLUSTER_PASSWORD=wrong-pw drive connect >"$TMP/wrongpw.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "AUTH (redis.password) failed: WRONGPASS" "$TMP/wrongpw.out" ||
  fail "wrong password: $(cat "$TMP/wrongpw.out")"
grep -q wrong-pw "$TMP/wrongpw.out" && fail "the password was echoed"
export RCLUSTER_PASSWORD="$CLUSTER_AUTH"
drive fill a1 >/dev/null
drive check a1 >/dev/null
for p in "${CLUSTER_PORTS[@]}"; do ccli "$p" acl setuser alice on '>alice-pw' '~*' '+@all' >/dev/null; done
RCLUSTER_PASSWORD=alice-pw drive --user alice check a1 >/dev/null || fail "ACL user alice"
P=$(slot_owner "$(key_slot 'rd:{t2}:meta')")
R=$(replica_of "$P")
start_workload kill-auth
kill_node "$P"
wait_role "$R" master 30
stop_workload kill-auth
grep -rq "$CLUSTER_AUTH" "$TMP"/*.log "$TMP"/*.out && fail "the password appears in the output"
echo "PASS"
