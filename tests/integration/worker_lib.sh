# worker_lib.sh: shared setup for the stream worker's integration tests
# (sourced, not a test itself). Starts `unlearnd broker` and a throwaway
# redis-server on a free port, each in $TMP, and stops everything on exit.
# Provides: start_worker, stop_worker, wait_exit, state, total, total_is,
# stats_match, wait_for, fail.
set -euo pipefail
BIN="$1"
command -v redis-server >/dev/null || { echo "SKIP: redis-server not installed"; exit 77; }
TMP="$(mktemp -d)"
BROKER_PID=""
WORKER_PID=""
REDIS_PORT=""
export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
unset UNLEARND_KAFKA_BOOTSTRAP_SERVERS UNLEARND_CONFIG UNLEARND_REDIS_HOST UNLEARND_REDIS_PORT

cleanup() {
  local rc=$?
  for pid in $WORKER_PID $BROKER_PID; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -n "$REDIS_PORT" ] && redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
    for f in "$TMP"/worker*.err "$TMP/broker.err"; do
      [ -f "$f" ] && { echo "--- $f (tail)" >&2; tail -25 "$f" >&2; }
    done
  fi
  [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A throwaway redis-server (no persistence) in $TMP/redis.
REDIS_PORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" --save '' \
  --appendonly no --daemonize yes --logfile "$TMP/redis/redis.log" >/dev/null
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 || fail "redis-server did not start"
REDIS=(--redis.host 127.0.0.1 --redis.port "$REDIS_PORT")

# The local broker with 4 partitions per topic.
"$BIN" broker --partitions 4 >"$TMP/broker.out" 2>"$TMP/broker.err" &
BROKER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
[ -s "$TMP/broker.addr" ] || fail "broker wrote no address"

# start_worker NAME [options]: run the worker in the background, logs in
# $TMP/NAME.err; short cycles and row flushes so tests do not wait, and a
# short session timeout so a killed member's partitions are reassigned
# within seconds.
start_worker() {
  local name="$1"; shift
  "$BIN" worker "${REDIS[@]}" --method foldin --cycle.interval.ms 100 \
    --kafka.session.timeout.ms 6000 --kafka.heartbeat.interval.ms 500 \
    --checkpoint.interval.ms 200 --rows.flush.interval.ms 1000 "$@" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  WORKER_PID=$!
}

# stop_worker SIGNAL: signal the worker and return its exit code (waits up
# to 20 s).
stop_worker() {
  local sig="$1" rc=0
  kill "-$sig" "$WORKER_PID"
  for _ in $(seq 200); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$WORKER_PID" 2>/dev/null && fail "worker still running 20 s after SIG$sig"
  wait "$WORKER_PID" || rc=$?
  WORKER_PID=""
  return "$rc"
}

# wait_exit SECONDS WHAT: wait for the worker to exit by itself; its exit
# code goes to EXIT_RC (fails when it still runs after SECONDS).
wait_exit() {
  EXIT_RC=0
  for _ in $(seq $(($1 * 10))); do kill -0 "$WORKER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$WORKER_PID" 2>/dev/null && fail "worker still running $1 s after $2"
  wait "$WORKER_PID" || EXIT_RC=$?
  WORKER_PID=""
}

state() { "$BIN" state "${REDIS[@]}" "$@"; }

# total FIELD: the field of the `total` line of `unlearnd state`.
total() {
  state 2>/dev/null | awk -v f="$1" '/^total/ { for (i = 2; i <= NF; i++) { split($i, kv, "=");
    if (kv[1] == f) print kv[2] } }'
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

total_is() { [ "$(total "$1")" = "$2" ]; }

# applied_is_offset FILE: in the `unlearnd state` output in FILE every
# partition has applied exactly as many ratings as its stored offset (no
# rating lost or applied twice); prints the partitions that have not.
applied_is_offset() {
  awk '/^partition=/ { split($2, a, "="); split($9, o, "=");
         if (a[2] != o[2]) { print "partition " $1 ": " a[2] " applied, offset " o[2]; bad = 1 } }
       END { exit bad }' "$1"
}

# exact_once WHAT: every partition's applied count equals its stored ratings
# offset (nothing lost, nothing applied twice), else fail naming WHAT.
exact_once() {
  state >"$TMP/state"
  applied_is_offset "$TMP/state" || fail "$1: a rating lost or applied twice"
}

# stats_match CSV ITEMS COPIES [USER ITEMS]: every item of ITEMS (a,b,...)
# has, at its home partition, COPIES times the count and rating sum the
# CSV (user,item,rating with a header) gives it, minus user USER's ratings
# of ITEMS once (a forget request); differences in $TMP/stats.diff.
stats_match() {
  state --item-stats "$2" >"$TMP/stats" 2>&1 || { cp "$TMP/stats" "$TMP/stats.diff"; return 1; }
  awk -F, -v c="$3" -v fu="${4:-}" -v fi="${5:-}" '
    BEGIN { n = split(fi, f, ","); for (i = 1; i <= n; i++) gone[f[i]] = 1 }
    NR == FNR { if (FNR > 1) { cnt[$2] += c; sum[$2] += c * $3
                 if ($1 == fu && ($2 in gone)) { cnt[$2]--; sum[$2] -= $3 } } next }
    { split($0, kv, " "); split(kv[1], a, "="); split(kv[3], b, "="); split(kv[4], s, "=")
      if (b[2] != cnt[a[2]] + 0 || s[2] != sum[a[2]] + 0) {
        if (bad++ < 5) print "item " a[2] ": " b[2] "/" s[2] " stored, " cnt[a[2]] + 0 "/" sum[a[2]] + 0 " in the data" } }
    END { exit bad > 0 }' "$1" "$TMP/stats" >"$TMP/stats.diff"
}
# wait_stats SECONDS STATS_MATCH_ARGS...: until stats_match holds; the
# differences in the failure.
wait_stats() {
  local deadline=$((SECONDS + $1)); shift
  until stats_match "$@"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "item statistics: $(cat "$TMP/stats.diff")"
    sleep 0.3
  done
}

# check_user U: the scores of items 1..$NI for user U in the model rebuilt
# from the factors topic (`recommend --from-topic`) equal the worker's in
# Redis (`state`) within 1e-3, and both score all $NI (differences, if any,
# in $TMP/diff). The caller sets NI and ALL_ITEMS (1,2,...,NI).
check_user() {
  local u="$1"
  "$BIN" recommend --from-topic factors --user "$u" --top $NI >"$TMP/top" 2>"$TMP/diff" || return 1
  [ "$(head -1 "$TMP/top")" = "$(printf 'rank\titem\tscore')" ] || { cp "$TMP/top" "$TMP/diff"; return 1; }
  tail -n +2 "$TMP/top" | cut -f3 | sort -gr -c 2>"$TMP/diff" || return 1
  state --user "$u" --items "$ALL_ITEMS" >"$TMP/state" 2>"$TMP/diff" || return 1
  awk -v ni=$NI 'NR == FNR { if (FNR > 1) { split($0, t, "\t"); topic[t[2]] = t[3]; nt++ } next }
    /^item=/ { split($0, f, " "); it = substr(f[1], 6); sc = substr(f[2], 7); n++
      if (!(it in topic)) { print "item " it " missing from the topic"; bad = 1; next }
      d = topic[it] - sc; if (d < 0) d = -d
      if (d >= 1e-3) { print "item " it ": topic " topic[it] ", redis " sc; bad = 1 } }
    END { if (n != ni || nt != ni) { print "topic ranked " nt ", redis scored " n " items"; bad = 1 }
      exit bad }' "$TMP/top" "$TMP/state" >"$TMP/diff"
}
# expect_match U...: every user's scores match (waits out rows in flight).
expect_match() {
  for u in "$@"; do
    local deadline=$((SECONDS + 60))
    until check_user "$u"; do
      [ "$SECONDS" -lt "$deadline" ] || fail "user $u, topic vs Redis: $(cat "$TMP/diff")"
      sleep 0.2
    done
  done
}
