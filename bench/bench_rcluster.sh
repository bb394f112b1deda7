#!/usr/bin/env bash
# bench_rcluster.sh [BUILD_DIR]: pipelined HSET throughput through
# worker/rcluster to a local 3-primary Redis Cluster (no replicas, loopback,
# tests/integration/cluster_lib.sh) and to one plain redis-server, plus raw
# hiredis on the plain server (what the client itself costs). One run each
# of bench_rcluster, each the median of its timed runs. Prints a table and
# the ratios; asserts nothing. Stops every server it started.
#
#   scripts/build.sh && bench/bench_rcluster.sh build
#   RUNS=7 COMMANDS=400 bench/bench_rcluster.sh build
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
BENCH="$BUILD/bench_rcluster"
[ -x "$BENCH" ] || { echo "build first: scripts/build.sh ($BENCH missing)" >&2; exit 1; }
command -v redis-server >/dev/null || { echo "redis-server not installed" >&2; exit 1; }
source tests/integration/cluster_lib.sh
TMP="$(mktemp -d)"
PLAIN_PID=""
cleanup() {
  local rc=$?
  [ -n "$PLAIN_PID" ] && kill -9 "$PLAIN_PID" 2>/dev/null || true
  stop_cluster "$rc" || true
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
ARGS=(--runs "${RUNS:-5}" --commands "${COMMANDS:-200}")

start_cluster "$TMP/cluster" 3 0
read -r PLAIN_PORT <<<"$(cluster_free_ports 1)"
mkdir -p "$TMP/plain"
redis-server --port "$PLAIN_PORT" --bind 127.0.0.1 --dir "$TMP/plain" --save '' --appendonly no \
  --daemonize yes --pidfile "$TMP/plain/pid" --logfile "$TMP/plain/log" >/dev/null
for _ in $(seq 100); do redis-cli -p "$PLAIN_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
PLAIN_PID=$(cat "$TMP/plain/pid")

echo "# pipelined HSET (512 pairs x 260 B per command), median of ${RUNS:-5} runs; $(nproc) CPUs"
"$BENCH" --seeds "$CLUSTER_SEEDS" "${ARGS[@]}" | tee "$TMP/cluster.txt"
"$BENCH" --seeds "127.0.0.1:$PLAIN_PORT" "${ARGS[@]}" | tee "$TMP/plain.txt"
"$BENCH" --seeds "127.0.0.1:$PLAIN_PORT" --raw "${ARGS[@]}" | tee "$TMP/raw.txt"
rate() { sed -n 's/.* \([0-9]*\) fields\/s.*/\1/p' "$1"; }
awk -v c="$(rate "$TMP/cluster.txt")" -v p="$(rate "$TMP/plain.txt")" -v r="$(rate "$TMP/raw.txt")" \
  'BEGIN { printf "cluster/plain %.2f   rcluster-plain/raw-hiredis %.2f\n", c / p, p / r }'
