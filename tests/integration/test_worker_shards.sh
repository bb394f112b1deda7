#!/usr/bin/env bash
# test_worker_shards.sh: the store over two Redis shards (redis.shards), the
# second one password-protected (--requirepass). Two workers in one group:
# B joins while A consumes (rebalance mid-stream), a forget request is
# handled by the owner of the user's partition, then A leaves (SIGTERM) while
# a second copy of the stream arrives. Asserts: per-partition applied counts
# exact; partition P's keys only on shard P mod 2; ul:model only on shard 0;
# the forget changed only its partition's item deltas; import spreads item
# rows by id; a wrong password is a clear error; redis.user (ACL) works;
# secrets never appear in --dump-config or the logs.
source "$(dirname "$0")/worker_lib.sh"

PW='shard-s3cret'
R2_PORT=$(free_port)
mkdir -p "$TMP/redis2"
redis-server --port "$R2_PORT" --bind 127.0.0.1 --dir "$TMP/redis2" --save '' --appendonly no \
  --requirepass "$PW" --daemonize yes --pidfile "$TMP/redis2/pid" \
  --logfile "$TMP/redis2/redis.log" >/dev/null
# Stop the extra redis-servers, then worker_lib's cleanup with the exit status.
cleanup_shards() {
  local rc=$?
  set +e
  for f in "$TMP/redis2/pid" "$TMP/redis3/pid"; do [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
  (exit "$rc")
  cleanup
}
trap cleanup_shards EXIT
r1() { redis-cli -p "$REDIS_PORT" "$@"; }
r2() { REDISCLI_AUTH="$PW" redis-cli -p "$R2_PORT" "$@"; }
for _ in $(seq 100); do r2 ping >/dev/null 2>&1 && break; sleep 0.05; done
[ "$(r2 ping)" = PONG ] || fail "second redis-server did not start"
SHARDS="127.0.0.1:$REDIS_PORT,127.0.0.1:$R2_PORT"
export UNLEARND_REDIS_PASSWORD="$PW" # through the environment: never on a command line in logs
REDIS=(--redis.shards "$SHARDS")

# Bad shard lists and a wrong password: clear errors, no secret echoed.
rc=0; state --redis.shards "127.0.0.1:$REDIS_PORT,nope" >/dev/null 2>"$TMP/bad" || rc=$?
[ "$rc" -eq 2 ] && grep -q "redis.shards: 'nope' is not host:port" "$TMP/bad" ||
  fail "bad shard list: exit $rc, $(cat "$TMP/bad")"
rc=0; UNLEARND_REDIS_PASSWORD=wrong-pw state >/dev/null 2>"$TMP/wrongpw" || rc=$?
[ "$rc" -eq 1 ] && grep -q "127.0.0.1:$R2_PORT: AUTH (redis.password) failed: WRONGPASS" \
  "$TMP/wrongpw" || fail "wrong password: exit $rc, $(cat "$TMP/wrongpw")"
grep -q wrong-pw "$TMP/wrongpw" && fail "the password was echoed"
rc=0; state --export-model "$TMP/x.model" --user 5 >/dev/null 2>"$TMP/bad" || rc=$?
[ "$rc" -eq 2 ] && grep -q "export-model exports every partition" "$TMP/bad" ||
  fail "--export-model with --user: exit $rc"
"$BIN" worker --dump-config "${REDIS[@]}" --redis.user alice >"$TMP/dump" 2>&1 || fail "--dump-config"
grep -q "$PW" "$TMP/dump" && fail "--dump-config printed the password"
grep -q '^redis.password' "$TMP/dump" || fail "--dump-config lacks redis.password"
grep -q "^redis.shards *= *$SHARDS" "$TMP/dump" || grep -q "redis.shards.*$SHARDS" "$TMP/dump" ||
  fail "--dump-config lacks redis.shards"

N=100000
awk -v n="$N" 'BEGIN { print "user,item,rating";
  for (u = 1; u <= n / 100; u++)
    for (j = 0; j < 100; j++) print u "," (u * 7 + j * 13) % 500 + 1 "," (u + j) % 5 + 1 }' \
  >"$TMP/ratings.csv"
applied_at_least() { local a; a=$(total applied); [ -n "$a" ] && [ "$a" -ge "$1" ]; }
exact() { # every partition: applied == its stored offset
  state >"$TMP/state"
  awk '/^partition=/ { split($2, a, "="); split($9, o, "=");
         if (a[2] != o[2]) { print $1 ": " a[2] " applied, offset " o[2]; bad = 1 } }
       END { exit bad }' "$TMP/state" || fail "$1: a rating lost or applied twice"
}

# Training off: it keeps changing every partition's item deltas, and this
# test checks that a forget changes only its own partition's
# (test_worker_training.sh covers training).
WOPTS=(--refresh.interval.ms 200 --publish.interval.ms 200 --training.enabled 0)
start_worker a --kafka.group.id g-shards "${WOPTS[@]}"
A=$WORKER_PID
wait_for 60 "A's assignment" grep -q 'assigned partition' "$TMP/a.err"
"$BIN" produce ratings --data "$TMP/ratings.csv" --rate 25000 >/dev/null 2>&1 &
P=$!
wait_for 60 "A's progress" applied_at_least 15000
MPORT=$(free_port)
start_worker b --kafka.group.id g-shards "${WOPTS[@]}" --metrics.port "$MPORT" \
  --metrics.bind 127.0.0.1
B=$WORKER_PID
wait_for 60 "B's assignment" grep -q 'assigned partition' "$TMP/b.err"
if command -v curl >/dev/null; then # health and metrics over two shards
  wait_for 20 "B ready" curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/readyz"
  page="$(curl -fsS --max-time 5 "http://127.0.0.1:$MPORT/metrics")" || fail "B's /metrics"
  grep -q '^unlearnd_redis_connected 1' <<<"$page" ||
    fail "B's /metrics: redis_connected is not 1 with two shards"
fi
echo "B joined at $(total applied) applied"
wait "$P" || fail "produce"
wait_for 60 "all ratings applied" total_is applied "$N"
exact "join"
grep -q 'revoked partition' "$TMP/a.err" || fail "A never revoked a partition"

# Which worker owns user 5's partition now, and that partition's deltas of
# the items to forget before the request.
PART=$(state --user 5 | sed -n 's/.*partition=\([0-9]*\).*/\1/p')
[ -n "$PART" ] || fail "no partition for user 5"
owner_shard=$((PART % 2))
delta_counts() { # the float count field of partition $PART's deltas of items 36 49 62
  local cli=r1; [ "$owner_shard" -eq 1 ] && cli=r2
  for i in 36 49 62; do $cli --no-raw hget "ul:{p$PART}:idelta" "$i" | md5sum; done
}
before=$(delta_counts)
state --export-model "$TMP/before.model" >/dev/null || fail "export before the forget"
others_before=$(for p in 0 1 2 3; do [ "$p" = "$PART" ] && continue
  c=r1; [ $((p % 2)) -eq 1 ] && c=r2; $c --no-raw hgetall "ul:{p$p}:idelta" | md5sum; done)
"$BIN" produce forget --user 5 --items 36,49,62 --reason MISTAKE --request-id t-shard \
  >/dev/null 2>&1 || fail "produce forget"
wait_for 60 "the forget request" total_is forget_completed 1
# Handled by the worker that owns partition $PART, and only by it.
owner=$(grep -l "forget request t-shard for user 5 done: 3 ratings forgotten, partition $PART " \
  "$TMP/a.err" "$TMP/b.err") || fail "no worker completed the forget request"
[ "$(echo "$owner" | wc -l)" = 1 ] || fail "both workers completed the forget request"
last_assign=$(grep -h "assigned partition $PART:" "$TMP/a.err" "$TMP/b.err" | sort | tail -1)
grep -qF "$last_assign" "$owner" || fail "the forget ran on $owner, not the owner of $PART"
after=$(delta_counts)
state --export-model "$TMP/mid.model" >/dev/null || fail "export after the forget"
[ "$before" != "$after" ] || fail "the forget changed no item delta of partition $PART"
others_after=$(for p in 0 1 2 3; do [ "$p" = "$PART" ] && continue
  c=r1; [ $((p % 2)) -eq 1 ] && c=r2; $c --no-raw hgetall "ul:{p$p}:idelta" | md5sum; done)
[ "$others_before" = "$others_after" ] || fail "the forget wrote another partition's deltas"
echo "forget of user 5 (partition $PART, shard $owner_shard) changed only that partition's deltas"

# The other worker sees the forget's item changes through the deltas: a user V
# of a partition it owns rates item 36 after its next refresh; it publishes
# its item-36 row, and V's score for item 36 read from the factors topic must
# equal the one from Redis (base + every partition's delta, --export-model),
# which differs from the score before the forget.
other=$TMP/a.err; [ "$owner" = "$TMP/a.err" ] && other=$TMP/b.err
other_parts=" $(awk '{ p = ""; for (i = 1; i < NF; i++) if ($i == "partition") { p = $(i + 1); sub(":", "", p) } }
  /assigned partition/ { own[p] = 1 } /revoked partition|partition [0-9]+ lost/ { delete own[p] }
  END { for (p in own) printf "%s ", p }' "$other")"
V=""
for u in $(seq 2 200); do
  pu=$(state --user "$u" | sed -n 's/.*partition=\([0-9]*\).*/\1/p')
  case "$other_parts" in *" $pu "*) V=$u; break ;; esac
done
[ -n "$V" ] || fail "no user in the other worker's partitions ($other_parts)"
sleep 0.5 # > refresh.interval.ms + checkpoint.interval.ms of the workers
printf 'user,item,rating\n%s,36,4\n' "$V" >"$TMP/one.csv"
"$BIN" produce ratings --data "$TMP/one.csv" >/dev/null 2>&1 || fail "produce one rating"
wait_for 30 "the extra rating" total_is applied $((N + 1))
sleep 0.5 # > publish.interval.ms
state --export-model "$TMP/after.model" >/dev/null || fail "export after V's rating"
score_of() { awk -v i=36 -F'\t' '$2 == i { print $3 }'; }
s_redis=$("$BIN" recommend --model "$TMP/after.model" --user "$V" --top 100000 | score_of)
s_before=$("$BIN" recommend --model "$TMP/before.model" --user "$V" --top 100000 | score_of)
s_mid=$("$BIN" recommend --model "$TMP/mid.model" --user "$V" --top 100000 | score_of)
s_topic=$("$BIN" recommend --from-topic factors --user "$V" --top 100000 2>/dev/null | score_of)
echo "user $V, item 36: before the forget $s_before, after it $s_mid; after V's rating:" \
  "Redis $s_redis, factors topic $s_topic"
awk -v a="$s_before" -v b="$s_mid" 'BEGIN { d = a - b; exit !(d > 1e-3 || d < -1e-3) }' ||
  fail "the forget did not move item 36 measurably ($s_before -> $s_mid)"
awk -v a="$s_redis" -v b="$s_topic" 'BEGIN { d = a - b; exit !(a != "" && b != "" && d < 1e-3 && d > -1e-3) }' ||
  fail "the other worker's item row misses the forget's change (topic $s_topic, Redis $s_redis)"

# A leaves while a second copy of the stream arrives: B takes everything.
"$BIN" produce ratings --data "$TMP/ratings.csv" --rate 25000 >/dev/null 2>&1 &
P=$!
wait_for 60 "progress on the second copy" applied_at_least $((N + 15001))
WORKER_PID=$A
rc=0; stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker A exit $rc"
echo "A left at $(total applied) applied"
WORKER_PID=$B
wait "$P" || fail "produce (second copy)"
wait_for 60 "all ratings applied (second copy)" total_is applied $((2 * N + 1))
exact "leave"

# Key placement: partition P only on shard P mod 2; ul:model only on shard 0.
for p in 0 1 2 3; do
  on=r1 off=r2; [ $((p % 2)) -eq 1 ] && on=r2 off=r1
  [ "$($on exists "ul:{p$p}:meta")" = 1 ] || fail "ul:{p$p}:meta missing on shard $((p % 2))"
  [ "$($off --scan --pattern "ul:{p$p}:*" | wc -l)" = 0 ] || fail "partition $p keys on both shards"
done
[ "$(r1 exists ul:model)" = 1 ] && [ "$(r2 exists ul:model)" = 0 ] || fail "ul:model placement"
rc=0; stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker B exit $rc"
grep -q "connected to shard 1 of 2: 127.0.0.1:$R2_PORT" "$TMP/b.err" || fail "no shard log line"
cat "$TMP"/*.err "$TMP"/*.out | grep -q "$PW" && fail "a log printed the password"
echo "ok: $((2 * N + 1)) ratings exactly once over 2 shards across join and leave"

# import spreads item base rows by id (item I on shard I mod 2).
"$BIN" train --data "$TMP/ratings.csv" --out "$TMP/m.bin" --k 8 --epochs 2 >/dev/null 2>&1 ||
  fail "train"
"$BIN" import "${REDIS[@]}" --model "$TMP/m.bin" --partitions 4 --replace >/dev/null 2>"$TMP/imp" ||
  fail "import: $(cat "$TMP/imp")"
n1=$(r1 hlen ul:items) n2=$(r2 hlen ul:items)
[ "$n1" -gt 0 ] && [ "$n2" -gt 0 ] && [ $((n1 + n2)) -eq 500 ] || fail "items split $n1+$n2"
r1 hkeys ul:items | awk '$1 % 2 != 0 { exit 1 }' || fail "odd item on shard 0"
r2 hkeys ul:items | awk '$1 % 2 != 1 { exit 1 }' || fail "even item on shard 1"
echo "ok: import put $n1 items on shard 0 and $n2 on shard 1"

# redis.user: AUTH user password against an ACL user (Redis 6+).
R3_PORT=$(free_port)
mkdir -p "$TMP/redis3"
printf 'user default off\nuser uluser on >acl-pw ~* &* +@all\n' >"$TMP/redis3/acl.conf"
redis-server "$TMP/redis3/acl.conf" --port "$R3_PORT" --bind 127.0.0.1 --dir "$TMP/redis3" \
  --save '' --appendonly no --daemonize yes \
  --pidfile "$TMP/redis3/pid" --logfile "$TMP/redis3/redis.log" >/dev/null
for _ in $(seq 100); do redis-cli -p "$R3_PORT" --user uluser --pass acl-pw ping >/dev/null 2>&1 && break; sleep 0.05; done
rc=0; UNLEARND_REDIS_PASSWORD=acl-pw state --redis.shards "127.0.0.1:$R3_PORT" --redis.user uluser \
  >/dev/null 2>"$TMP/acl" || rc=$?
grep -q 'no worker state in this Redis yet' "$TMP/acl" || fail "ACL user: $(cat "$TMP/acl")"
rc=0; UNLEARND_REDIS_PASSWORD=acl-pw state --redis.shards "127.0.0.1:$R3_PORT" >/dev/null \
  2>"$TMP/acl2" || rc=$?
grep -q 'AUTH (redis.password) failed' "$TMP/acl2" || fail "ACL without user: $(cat "$TMP/acl2")"
echo "ok: redis.user authenticates as an ACL user"
