#!/usr/bin/env bash
# test_store_cluster.sh BIN: the store's, the live model's and the replica's
# unit tests (tests/unit/test_store.c, test_live.c, test_replica.c) run
# against a real local Redis Cluster (3 primaries + 3 replicas,
# cluster_lib.sh) instead of one redis-server: every partition's checkpoint
# one single-slot transaction with its Lua history append and its fence, the
# replica's loads over every primary, WAIT for a replica after each
# checkpoint. BIN is the unlearnd binary; the test programs are in its
# build directory's tests/.
set -euo pipefail
BIN="$1"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  { echo "SKIP: redis-server/redis-cli not installed"; exit 77; }
TESTS="$(dirname "$BIN")/tests"
for t in test_store test_live test_replica; do
  [ -x "$TESTS/$t" ] || { echo "SKIP: $TESTS/$t not built"; exit 77; }
done
source "$(dirname "$0")/cluster_lib.sh"
TMP="$(mktemp -d)"
trap 'rc=$?; stop_cluster "$rc" >/dev/null 2>&1 || true; rm -rf "$TMP"; exit "$rc"' EXIT
start_cluster "$TMP/cluster" 3 1 || { echo "FAIL: the local cluster did not start" >&2; exit 1; }
export UNLEARND_TEST_REDIS_CLUSTER="$CLUSTER_SEEDS"
for t in test_store test_live test_replica; do
  echo "== $t against the cluster $CLUSTER_SEEDS"
  "$TESTS/$t" >"$TMP/$t.out" 2>&1 || { cat "$TMP/$t.out" >&2; echo "FAIL: $t" >&2; exit 1; }
  grep -E '^\[  (PASSED|SKIPPED) ' "$TMP/$t.out"
  # Only the private server's own test may skip (there is none here).
  if grep -E '^\[  SKIPPED \] test_' "$TMP/$t.out" | grep -qv test_local_stop_removes_server; then
    echo "FAIL: $t skipped tests against the cluster" >&2
    exit 1
  fi
done
echo "ok: store, live and replica tests pass on a 3+3 Redis Cluster"
