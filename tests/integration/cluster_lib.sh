# cluster_lib.sh: a throwaway local Redis Cluster for tests and benchmarks
# (sourced, not a test itself). Every node is a redis-server on a free
# loopback port (its cluster bus port, +10000, free too), in its own
# directory, without persistence, daemonized with a pidfile; stop_cluster
# stops every node this shell started (by pid) and removes the directory.
#
#   source tests/integration/cluster_lib.sh
#   trap stop_cluster EXIT            # or call stop_cluster from your trap
#   CLUSTER_AUTH=pw                   # optional: requirepass + masterauth
#   start_cluster DIR 3 1 [--cluster-node-timeout 2000 ...]
#   ... $CLUSTER_SEEDS, ${CLUSTER_PORTS[@]}, ccli PORT CMD..., kill_node PORT
#
# Sets CLUSTER_DIR, CLUSTER_PORTS (every node, creation order) and
# CLUSTER_SEEDS ("127.0.0.1:p,127.0.0.1:q,..."). Functions:
#   ccli PORT ARGS...         redis-cli on a node (with CLUSTER_AUTH, from the environment)
#   node_id PORT              the node's cluster id
#   node_alive PORT           true when the node's process runs
#   primary_ports             ports of the reachable primaries that own slots
#   replica_of PORT           port of a replica of the primary on PORT (first one)
#   slot_owner SLOT           port of the primary owning SLOT (asked of a live node)
#   key_slot KEY              CLUSTER KEYSLOT KEY
#   kill_node PORT            SIGKILL (a crash); start_node PORT brings it back
#   stop_node PORT            SHUTDOWN NOSAVE NOW, then SIGKILL after 5 s
#   start_node PORT [OPTS]    (re)start a node with its config file
#   wait_cluster_ok [SECS]    every live node: cluster_state ok, all slots, replicas linked
#   wait_role PORT ROLE [SECS]  until the node's role is master/slave
#   migrate_slot_begin SLOT FROM TO / migrate_slot_keys SLOT FROM TO / migrate_slot_end SLOT TO
#                             move a slot by hand (IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE)
#   uncover_slot SLOT         CLUSTER DELSLOTS on every live node until none serves SLOT
#                             (with full coverage required the cluster goes down);
#                             heal with: ccli OWNER cluster addslots SLOT
# Requires redis-server, redis-cli (7.0) and python3 (free ports).

CLUSTER_DIR=""
CLUSTER_PORTS=()
CLUSTER_SEEDS=""
CLUSTER_AUTH="${CLUSTER_AUTH:-}"
CLUSTER_NODE_OPTS=()

cluster_fail() { echo "cluster_lib: $*" >&2; return 1; }

# cluster_free_ports N: N distinct ports P with P and P+10000 both free on 127.0.0.1.
cluster_free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
n, out = int(sys.argv[1]), []
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
while len(out) < n:
    p = random.randint(20000, 40000)
    if p not in out and free(p) and free(p + 10000):
        out.append(p)
print(" ".join(map(str, out)))
EOF
}

# redis-cli with the password from the environment (an empty REDISCLI_AUTH would send AUTH "").
cluster_rcli() {
  if [ -n "$CLUSTER_AUTH" ]; then
    REDISCLI_AUTH="$CLUSTER_AUTH" redis-cli --no-auth-warning "$@"
  else
    redis-cli "$@"
  fi
}

ccli() {
  local port="$1"; shift
  cluster_rcli -h 127.0.0.1 -p "$port" "$@"
}

# pid_gone PID: the process has exited (a zombie not yet reaped counts as gone).
pid_gone() {
  ! kill -0 "$1" 2>/dev/null || [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" = Z ]
}

node_alive() {
  local pidf="$CLUSTER_DIR/$1/redis.pid"
  [ -s "$pidf" ] && ! pid_gone "$(cat "$pidf")"
}

start_node() {
  local port="$1"; shift
  local d="$CLUSTER_DIR/$port"
  mkdir -p "$d"
  # The password goes through a config file, not argv (ps shows argv).
  printf '' >"$d/auth.conf"
  [ -n "$CLUSTER_AUTH" ] && printf 'requirepass "%s"\nmasterauth "%s"\n' "$CLUSTER_AUTH" \
    "$CLUSTER_AUTH" >"$d/auth.conf"
  redis-server "$d/auth.conf" --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
    --cluster-config-file "$d/nodes.conf" --dir "$d" --save '' --appendonly no \
    --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" \
    "${CLUSTER_NODE_OPTS[@]}" "$@" >/dev/null || cluster_fail "redis-server on port $port did not start"
  local i
  for i in $(seq 100); do
    ccli "$port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.05
  done
  cluster_fail "node $port does not answer PING (see $d/redis.log)"
}

# start_cluster DIR PRIMARIES REPLICAS_PER_PRIMARY [redis-server options for every node]
start_cluster() {
  CLUSTER_DIR="$1"
  local np="$2" nr="$3"; shift 3
  CLUSTER_NODE_OPTS=(--cluster-node-timeout 1000 "$@")
  local n=$((np * (nr + 1)))
  mkdir -p "$CLUSTER_DIR"
  read -r -a CLUSTER_PORTS <<<"$(cluster_free_ports "$n")"
  local p addrs=()
  for p in "${CLUSTER_PORTS[@]}"; do
    start_node "$p" || return 1
    addrs+=("127.0.0.1:$p")
  done
  CLUSTER_SEEDS=$(IFS=,; echo "${addrs[*]}")
  cluster_rcli --cluster create "${addrs[@]}" \
    --cluster-replicas "$nr" --cluster-yes >"$CLUSTER_DIR/create.log" 2>&1 ||
    { cat "$CLUSTER_DIR/create.log" >&2; cluster_fail "redis-cli --cluster create failed"; return 1; }
  wait_cluster_ok 30
}

stop_node() {
  local port="$1" pidf="$CLUSTER_DIR/$1/redis.pid" pid i
  [ -s "$pidf" ] || return 0
  pid=$(cat "$pidf")
  pid_gone "$pid" && return 0
  ccli "$port" shutdown nosave now >/dev/null 2>&1 || true
  for i in $(seq 100); do pid_gone "$pid" && return 0; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null || true
}

kill_node() {
  local pidf="$CLUSTER_DIR/$1/redis.pid" pid i
  [ -s "$pidf" ] || return 0
  pid=$(cat "$pidf")
  kill -9 "$pid" 2>/dev/null || true
  for i in $(seq 250); do pid_gone "$pid" && break; sleep 0.02; done
  rm -f "$pidf"
}

# stop_cluster [STATUS]: every node at once with SIGKILL (nothing is
# persisted, the directory goes), so stopping neither waits for replicas nor
# sets off failovers. With a non-zero STATUS (default $?) the nodes' log
# tails are printed first. Returns STATUS.
stop_cluster() {
  local rc=${1:-$?} p pid pids=() i
  [ -n "$CLUSTER_DIR" ] || return "$rc"
  for p in "${CLUSTER_PORTS[@]}"; do
    [ -s "$CLUSTER_DIR/$p/redis.pid" ] || continue
    pid=$(cat "$CLUSTER_DIR/$p/redis.pid")
    kill -9 "$pid" 2>/dev/null && pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    for i in $(seq 250); do pid_gone "$pid" && break; sleep 0.02; done
  done
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    for p in "${CLUSTER_PORTS[@]}"; do
      echo "--- node $p (log tail)" >&2; tail -5 "$CLUSTER_DIR/$p/redis.log" >&2 2>/dev/null || true
    done
  fi
  [ -n "${KEEP:-}" ] || rm -rf "$CLUSTER_DIR"
  CLUSTER_DIR=""
  return "$rc"
}

node_id() { ccli "$1" cluster myid; }

# "port flags master-id slots..." per node, from a live node's CLUSTER NODES.
cluster_nodes() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    node_alive "$p" || continue
    ccli "$p" cluster nodes 2>/dev/null |
      awk '{ split($2, a, "[:@]"); printf "%s %s %s %s", a[2], $3, $4, $1
             for (i = 9; i <= NF; i++) printf " %s", $i; print "" }' && return 0
  done
  return 1
}

primary_ports() {
  cluster_nodes | awk '$2 ~ /master/ && $2 !~ /fail/ && NF > 4 { print $1 }'
}

replica_of() {
  local id
  id=$(node_id "$1")
  cluster_nodes | awk -v id="$id" '$3 == id && $2 !~ /fail/ { print $1; exit }'
}

slot_owner() {
  cluster_nodes | awk -v s="$1" '$2 ~ /master/ && $2 !~ /fail/ {
      for (i = 5; i <= NF; i++) { if ($i ~ /^\[/) continue; n = split($i, r, "-")
        lo = r[1]; hi = n > 1 ? r[2] : r[1]; if (s >= lo + 0 && s <= hi + 0) { print $1; exit } } }'
}

key_slot() {
  local p
  for p in "${CLUSTER_PORTS[@]}"; do
    node_alive "$p" && { ccli "$p" cluster keyslot "$1"; return; }
  done
}

wait_cluster_ok() {
  local secs="${1:-30}" deadline p ok
  deadline=$((SECONDS + secs))
  while :; do
    ok=1
    for p in "${CLUSTER_PORTS[@]}"; do
      node_alive "$p" || continue
      local info
      info=$(ccli "$p" cluster info 2>/dev/null) || { ok=0; break; }
      grep -q '^cluster_state:ok' <<<"$info" && grep -q '^cluster_slots_ok:16384' <<<"$info" ||
        { ok=0; break; }
      if ccli "$p" role 2>/dev/null | head -1 | grep -q slave; then
        ccli "$p" info replication 2>/dev/null | grep -q 'master_link_status:up' || { ok=0; break; }
      fi
    done
    [ "$ok" = 1 ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || { cluster_fail "cluster not ok after ${secs}s"; return 1; }
    sleep 0.2
  done
}

wait_role() {
  local port="$1" role="$2" secs="${3:-30}" deadline
  deadline=$((SECONDS + secs))
  until ccli "$port" role 2>/dev/null | head -1 | grep -q "^$role"; do
    [ "$SECONDS" -lt "$deadline" ] || { cluster_fail "node $port not $role after ${secs}s"; return 1; }
    sleep 0.1
  done
}

migrate_slot_begin() {
  local slot="$1" from="$2" to="$3"
  ccli "$to" cluster setslot "$slot" importing "$(node_id "$from")" >/dev/null &&
    ccli "$from" cluster setslot "$slot" migrating "$(node_id "$to")" >/dev/null
}

migrate_slot_keys() {
  local slot="$1" from="$2" to="$3" keys auth=()
  [ -n "$CLUSTER_AUTH" ] && auth=(AUTH "$CLUSTER_AUTH")
  while :; do
    mapfile -t keys < <(ccli "$from" cluster getkeysinslot "$slot" 100)
    [ "${#keys[@]}" -gt 0 ] && [ -n "${keys[0]}" ] || return 0
    ccli "$from" migrate 127.0.0.1 "$to" "" 0 5000 "${auth[@]}" keys "${keys[@]}" >/dev/null ||
      { cluster_fail "MIGRATE of slot $slot failed"; return 1; }
  done
}

# The new owner first, then every other live primary (as redis-cli --cluster does).
migrate_slot_end() {
  local slot="$1" to="$2" id p
  id=$(node_id "$to")
  ccli "$to" cluster setslot "$slot" node "$id" >/dev/null || return 1
  for p in $(primary_ports); do
    [ "$p" = "$to" ] || ccli "$p" cluster setslot "$slot" node "$id" >/dev/null || true
  done
}

# DELSLOTS on the owner first (so nobody claims the slot any more), then on
# every other live node, again until each reports 16383 slots assigned: a
# node that dropped it early can re-learn it from the owner's gossip.
uncover_slot() {
  local slot="$1" owner p deadline left
  owner=$(slot_owner "$slot")
  deadline=$((SECONDS + 20))
  while :; do
    left=0
    for p in "$owner" "${CLUSTER_PORTS[@]}"; do
      node_alive "$p" || continue
      ccli "$p" cluster info 2>/dev/null | grep -q '^cluster_slots_assigned:16383' && continue
      left=1
      ccli "$p" cluster delslots "$slot" >/dev/null 2>&1 || true
    done
    [ "$left" = 0 ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || { cluster_fail "slot $slot still assigned somewhere"; return 1; }
    sleep 0.2
  done
}
