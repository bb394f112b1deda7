#!/usr/bin/env bash
# test_worker_readiness.sh: /readyz follows Redis and Kafka both ways, and an
# idle worker notices a dead Redis within seconds (issue 10.4, 10.5).
#   1. Redis frozen (SIGSTOP) for less than redis.timeout.ms: 503 naming
#      Redis while it is frozen, 200 again after SIGCONT, nothing lost.
#   2. The broker frozen (SIGSTOP): 503 naming Kafka, 200 after SIGCONT,
#      ratings produced afterwards applied.
#   3. Redis killed under an idle worker: the worker exits 1 within seconds
#      saying that Redis stopped answering and what happens next (crash-only
#      Redis faults, docs/operations.md).
#   4. A start with Redis down: one clear error naming the node, exit 1.
#   5. Redis back (empty): a restarted worker is ready and rebuilds the state
#      from the topic, every rating exactly once.
source "$(dirname "$0")/worker_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
status() { curl -s -o "$TMP/readyz.body" -w '%{http_code}' --max-time 5 "$URL/readyz"; }
ready_is() { [ "$(status)" = "$1" ]; }
body_has() { ready_is "$1" && grep -q "$2" "$TMP/readyz.body"; }
redis_pid() { redis-cli -p "$REDIS_PORT" info server | awk -F: '/^process_id/ { print $2 }' | tr -d '\r'; }

awk 'BEGIN { print "user,item,rating";
  for (u = 1; u <= 40; u++) for (i = 1; i <= 25; i++) print u "," i "," (u + i) % 5 + 1 }' \
  >"$TMP/ratings.csv"
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"

# redis.retry.ms bounds how long a call rides out a node that is down (a
# failover) before the worker gives up and exits.
start_worker worker1 --metrics.port "$PORT" --redis.timeout.ms 5000 --redis.retry.ms 3000
wait_for 60 "/readyz 200" ready_is 200
wait_for 60 "all 1000 ratings applied" total_is applied 1000
RPID=$(redis_pid)
[ -n "$RPID" ] || fail "no redis pid"

# freeze PID WHAT TRIES: SIGSTOP PID, poll /readyz (0.1 s apart, at most
# TRIES times) until it is 503 naming WHAT, SIGCONT; then 200 again.
freeze() {
  local pid="$1" what="$2" tries="$3" ok="" body
  kill -STOP "$pid"
  for _ in $(seq "$tries"); do body_has 503 "$what" && { ok=1; break; }; sleep 0.1; done
  body="$(cat "$TMP/readyz.body" 2>/dev/null || true)"
  kill -CONT "$pid"
  [ -n "$ok" ] || fail "/readyz stayed 200 with $what frozen (last body: $body)"
  echo "ok: /readyz 503 with $what frozen: $body"
  wait_for 30 "/readyz 200 after $what resumed" ready_is 200
  kill -0 "$WORKER_PID" || fail "worker exited after a short $what freeze"
}

# 1. Redis frozen for about 4 s (< redis.timeout.ms 5000): a PING starts
# within 2 s (the check interval) and is 503 after waiting 1 s more.
freeze "$RPID" Redis 38
# 2. The broker frozen: 503 naming Kafka (a metadata request every 2 s, 2 s
# deadline), then 200 again.
freeze "$BROKER_PID" Kafka 150
awk 'BEGIN { print "user,item,rating"; for (u = 41; u <= 50; u++) for (i = 1; i <= 10; i++)
  print u "," i ",3" }' >"$TMP/more.csv"
"$BIN" produce ratings --data "$TMP/more.csv" >/dev/null 2>&1 || fail "produce more ratings"
wait_for 60 "the ratings produced after the freeze applied" total_is applied 1100

# 3. Redis killed under the idle worker: it must notice and exit by itself.
sleep 1
kill -KILL "$RPID"
t0=$SECONDS
wait_exit 10 "Redis died under it (idle)"
[ "$EXIT_RC" -eq 1 ] || fail "worker exit $EXIT_RC after Redis died, want 1"
grep -q 'redis 127.0.0.1:'"$REDIS_PORT"'.*Exiting: a Redis fault stops the worker.*Redis faults' \
  "$TMP/worker1.err" || fail "exit does not say why: $(tail -3 "$TMP/worker1.err")"
echo "ok: idle worker exited $((SECONDS - t0)) s after Redis died, saying why"

# 4. Start with Redis down: one error line naming the node.
rc=0
"$BIN" worker "${REDIS[@]}" >"$TMP/down.out" 2>"$TMP/down.err" || rc=$?
[ "$rc" -eq 1 ] || fail "start with Redis down: exit $rc"
[ "$(grep -c . "$TMP/down.err")" -eq 1 ] || fail "start with Redis down: $(cat "$TMP/down.err")"
grep -q "redis 127.0.0.1:$REDIS_PORT: cannot connect: Connection refused" "$TMP/down.err" ||
  fail "start with Redis down: $(cat "$TMP/down.err")"
echo "ok: $(cat "$TMP/down.err")"

# 5. Redis back, empty: ready again, everything rebuilt exactly once.
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" --save '' \
  --appendonly no --daemonize yes --logfile "$TMP/redis/redis.log" >/dev/null
wait_for 10 "redis restarted" redis-cli -p "$REDIS_PORT" ping
start_worker worker2 --metrics.port "$PORT" --kafka.group.id after-redis-loss
wait_for 60 "/readyz 200 after the restart" ready_is 200
wait_for 60 "all 1100 ratings applied again" total_is applied 1100
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc after SIGTERM"
echo "ok: ready again after Redis came back; 1100 ratings applied once"
