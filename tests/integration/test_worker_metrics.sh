#!/usr/bin/env bash
# test_worker_metrics.sh: a real worker serving /metrics, /livez and /readyz
# (metrics.port) on the local broker and a throwaway redis-server: readiness
# once partitions are assigned, counters that match `unlearnd state`,
# consumer lag from librdkafka statistics falling to 0, a forget request
# counted and its cycle in the histogram, a dead-lettered forget request
# labelled by topic and reason, a port conflict refused at start, and the
# port released after SIGTERM; a second worker splits the partitions with
# the first (both ready) and hands them back when it stops.
source "$(dirname "$0")/worker_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
get() { curl -fsS --max-time 5 "$URL$1"; }
status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$URL$1"; }
# metric_is NAME VALUE: the sample line `NAME VALUE` is in /metrics.
# (the page is read whole first: grep -q closing the pipe early would fail
# curl under pipefail)
metric_is() { local page; page="$(get /metrics)" || return 1; grep -qxF "$1 $2" <<<"$page"; }

awk 'BEGIN { print "user,item,rating";
  for (u = 1; u <= 30; u++) for (i = 1; i <= 20; i++) print u "," i "," (u + i) % 5 + 1 }' \
  >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"

start_worker worker1 --metrics.port "$PORT" --metrics.bind 127.0.0.1 \
  --kafka.statistics.interval.ms 300
wait_for 60 "/livez to answer" get /livez
wait_for 60 "/readyz 200 (partitions assigned)" get /readyz
[ "$(get /readyz)" = "ready" ] || fail "/readyz body: $(get /readyz)"
wait_for 60 "all $N ratings applied" total_is applied "$N"
wait_for 10 "ratings counter at $N" metric_is unlearnd_ratings_applied_total "$N"
metric_is unlearnd_assigned_partitions 4 || fail "assigned partitions: $(get /metrics | grep assigned)"
metric_is unlearnd_kafka_connected 1 || fail "kafka not connected"
metric_is unlearnd_redis_connected 1 || fail "redis not connected"
# Statistics every 300 ms; lag reaches 0 once the checkpoint's commit lands.
wait_for 30 "a lag series for every ratings partition" \
  bash -c "[ \"\$(curl -fsS '$URL/metrics' | grep -c '^unlearnd_consumer_lag_messages{topic=\"ratings\"')\" -eq 4 ]"
wait_for 30 "consumer lag 0 after catching up" metric_is unlearnd_worker_consumer_lag_messages 0
checkpoints=$(get /metrics | awk '$1 == "unlearnd_checkpoints_total" { print $2 }')
[ "${checkpoints:-0}" -ge 1 ] || fail "no checkpoint counted"
age=$(get /metrics | awk '$1 == "unlearnd_checkpoint_age_seconds" { print $2 }')
awk -v a="$age" 'BEGIN { exit !(a >= 0 && a < 5) }' || fail "checkpoint age $age s"

"$BIN" produce forget --user 7 --items 1,2,3 --reason MISTAKE --request-id m-1 >/dev/null 2>&1 ||
  fail "produce forget"
wait_for 60 "forget request completed" metric_is unlearnd_forget_requests_completed_total 1
wait_for 30 "ratings lag 0 per topic" metric_is 'unlearnd_topic_lag_messages{topic="ratings"}' 0
# forget-requests offsets are committed to the group for lag tools (KEDA,
# kafka-consumer-groups): a simple consumer starting at the group's stored
# offsets finds nothing left to read (issue 11.3).
if command -v kcat >/dev/null; then
  forget_committed() {
    [ -z "$(kcat -C -b "$(cat "$TMP/broker.addr")" -t forget-requests -o stored -X group.id=unlearnd \
      -X auto.offset.reset=earliest -e -q -f '%p@%o ' 2>/dev/null)" ]
  }
  wait_for 30 "forget-requests offsets committed for the group" forget_committed
  echo "ok: forget-requests offsets committed for the group"
else
  echo "note: kcat missing, committed forget-requests offsets not checked"
fi
metric_is unlearnd_forget_requests_received_total 1 || fail "forget received counter"
metric_is unlearnd_unlearning_cycle_seconds_count 1 || fail "cycle histogram count"
metric_is 'unlearnd_unlearning_cycle_seconds_bucket{le="+Inf"}' 1 || fail "cycle +Inf bucket"

# A forget request with too many items (forget.max.items=10000 by default).
"$BIN" produce forget --user 3 --items "$(seq -s, 1 10001)" --reason MISTAKE --forget.max.items 20000 \
  >/dev/null 2>&1 || fail "produce oversized forget request"
wait_for 60 "dead letter counted" \
  metric_is 'unlearnd_dead_letter_total{topic="forget-requests",reason="invalid"}' 1
wait_for 10 "the dead letter checkpointed to Redis" total_is dead_letters 1

# Scale out: a second worker (its own metrics port) joins the group; both
# are ready and the 4 partitions are split between them; when it leaves
# (SIGTERM), the first worker owns all 4 again.
PORT2=$(free_port)
assigned() { curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" |
  awk '$1 == "unlearnd_assigned_partitions" { print $2 }'; }
split_ok() { local a b; a=$(assigned "$PORT") && b=$(assigned "$PORT2") &&
  [ "$a" -ge 1 ] && [ "$b" -ge 1 ] && [ $((a + b)) -eq 4 ]; }
all_mine() { [ "$(assigned "$PORT")" = 4 ]; }
W1_PID=$WORKER_PID
start_worker worker2 --metrics.port "$PORT2" --metrics.bind 127.0.0.1
W2_PID=$WORKER_PID
WORKER_PID=$W1_PID
trap 'rc=$?; kill -9 "$W2_PID" 2>/dev/null || true; (exit $rc); cleanup' EXIT
wait_for 60 "the partitions split between two workers" split_ok
[ "$(curl -fsS "http://127.0.0.1:$PORT2/readyz")" = ready ] || fail "worker2 not ready"
get /readyz >/dev/null || fail "worker1 not ready after the rebalance"
kill -TERM "$W2_PID"
rc=0
wait "$W2_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "worker2 exit code $rc after SIGTERM"
wait_for 60 "worker1 owning all 4 partitions again" all_mine

[ "$(status /nope)" = 404 ] || fail "/nope: $(status /nope)"
page="$(get /metrics)"
grep -q '^# TYPE unlearnd_unlearning_cycle_seconds histogram$' <<<"$page" || fail "TYPE line"

# A second worker on the same metrics port is refused at start, with the reason.
rc=0
"$BIN" worker "${REDIS[@]}" --metrics.port "$PORT" --metrics.bind 127.0.0.1 \
  >"$TMP/worker2.out" 2>"$TMP/worker2.err" || rc=$?
[ "$rc" -ne 0 ] || fail "second worker started on a taken port"
grep -q "metrics.port $PORT: cannot listen" "$TMP/worker2.err" || fail "$(cat "$TMP/worker2.err")"

rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit code $rc after SIGTERM"
[ "$(status /livez)" = 000 ] || fail "port still served after exit"
echo "ok: /metrics, /livez, /readyz from a live worker; $N ratings, 1 forget request, 1 dead letter"
