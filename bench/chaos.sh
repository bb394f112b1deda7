#!/usr/bin/env bash
# chaos.sh [--kills N] [--users U] [--per-user R] [--partitions P] [--forgets F]
#          [--seed S] [--bin PATH]
# Exactly once under kill -9 (issue 10's chaos run), as a benchmark that
# prints counts and asserts nothing:
#   - a synthetic stream (U users x R distinct items each; default 2000 x 50 =
#     100,000 ratings) is produced in 25 chunks to a P-partition topic of the
#     local broker, with forget requests (F in all, 1-2 items each, always of
#     ratings produced at least one chunk earlier) interleaved between chunks;
#   - a reference worker (its own Redis, group and output topics) consumes
#     the same topics uninterrupted;
#   - the chaos worker (another Redis, group and output topics) is killed
#     with SIGKILL N times (default 20) at random moments (0-2 s after each
#     restart got its partitions, so kills hit applying, checkpoints and
#     cycles) and restarted at once, each time in a new group so it need not
#     wait for the dead member's session to expire; then it runs to the end.
# Printed: per-partition applied counts against the topic (lost = fewer,
# doubled = more) and against the reference; users whose history differs
# from the reference's (compared by SHA-1 of every history in Redis, then
# exactly with `unlearnd state --history` for those that differ: entries
# missing or extra); missed forgets (a forgotten rating still remembered, in
# each worker); receipts per request (missing, and duplicates beyond one).
# Runs in about 3 minutes on 2 cores. Needs redis-server and redis-cli.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/unlearnd KILLS=20 USERS=2000 PER_USER=50 PARTS=8 FORGETS=100 SEED=7
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) KILLS="$2"; shift 2 ;;
    --users) USERS="$2"; shift 2 ;;
    --per-user) PER_USER="$2"; shift 2 ;;
    --partitions) PARTS="$2"; shift 2 ;;
    --forgets) FORGETS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --bin) BIN="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "chaos: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -x "$BIN" ] || scripts/build.sh release >/dev/null
CHUNKS=25
TMP="$(mktemp -d)"
PIDS="" REDIS_PORTS="" CHAOS_PID="" PROD_PID=""
cleanup() {
  for pid in $CHAOS_PID $PROD_PID $PIDS; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  for port in $REDIS_PORTS; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
  [ -n "${KEEP:-}" ] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
unset UNLEARND_REDIS_HOST UNLEARND_REDIS_PORT UNLEARND_REDIS_SHARDS UNLEARND_REDIS_PASSWORD
source bench/bench_lib.sh
T0=$SECONDS
"$BIN" broker --partitions "$PARTS" >"$TMP/broker.out" 2>"$TMP/broker.err" &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
REF_PORT=$(start_redis) CHAOS_PORT=$(start_redis)
REDIS_PORTS="$REF_PORT $CHAOS_PORT"
REF=(--redis.host 127.0.0.1 --redis.port "$REF_PORT")
CHAOS=(--redis.host 127.0.0.1 --redis.port "$CHAOS_PORT")
REF_OUT=(--topic.factors ref-factors --topic.forget_receipts ref-receipts --topic.dead_letter ref-dead)
COMMON=(--method foldin --cycle.interval.ms 100 --checkpoint.interval.ms 200
  --kafka.fetch.wait.max.ms 10 --kafka.session.timeout.ms 6000 --kafka.heartbeat.interval.ms 500)

# The stream: chunk c holds item slots j = c*R/25 .. (c+1)*R/25-1 of every
# user; user u's item of slot j is (u*7 + j*13) % 997 + 1 (distinct per user
# for R < 997: 13 is invertible mod 997).
awk -v users="$USERS" -v r="$PER_USER" -v chunks="$CHUNKS" -v dir="$TMP" 'BEGIN {
  for (c = 0; c < chunks; c++) {
    f = dir "/chunk" c ".csv"; print "user,item,rating" > f
    for (j = int(c * r / chunks); j < int((c + 1) * r / chunks); j++)
      for (u = 1; u <= users; u++) print u "," (u * 7 + j * 13) % 997 + 1 "," (u + j) % 5 + 1 > f
    close(f)
  } }'
N=0
for c in $(seq 0 $((CHUNKS - 1))); do N=$((N + $(wc -l <"$TMP/chunk$c.csv") - 1)); done
# Forget requests: after chunk c >= 1, F/(CHUNKS-1) requests for random users,
# items of slots already produced (j < first slot of chunk c).
awk -v users="$USERS" -v r="$PER_USER" -v chunks="$CHUNKS" -v f="$FORGETS" -v seed="$SEED" 'BEGIN {
  srand(seed); per = f / (chunks - 1); n = 0
  for (c = 1; c < chunks && n < f; c++) {
    top = int(c * r / chunks)
    for (k = 0; k < per && n < f; k++) {
      u = 1 + int(rand() * users); j1 = int(rand() * top); j2 = int(rand() * top)
      items = (u * 7 + j1 * 13) % 997 + 1
      if (j2 != j1) items = items "," (u * 7 + j2 * 13) % 997 + 1
      printf "%d %d %s chaos-%d\n", c, u, items, n++
    } } }' >"$TMP/forgets.txt"
NF=$(grep -c . "$TMP/forgets.txt")

"$BIN" worker "${REF[@]}" "${REF_OUT[@]}" "${COMMON[@]}" --kafka.group.id chaos-ref \
  >"$TMP/ref.out" 2>"$TMP/ref.err" &
REF_PID=$!
PIDS="$PIDS $REF_PID"
round=0
start_chaos() {
  round=$((round + 1))
  "$BIN" worker "${CHAOS[@]}" "${COMMON[@]}" --kafka.group.id "chaos-$round" \
    >>"$TMP/chaos.out" 2>>"$TMP/chaos.err" &
  CHAOS_PID=$!
}
start_chaos

# Producer: the chunks at a pace that spreads them over the kills, with the
# forget requests between them.
(
  for c in $(seq 0 $((CHUNKS - 1))); do
    "$BIN" produce ratings --data "$TMP/chunk$c.csv" >/dev/null 2>&1
    awk -v c="$c" '$1 == c { print $2, $3, $4 }' "$TMP/forgets.txt" | while read -r u items id; do
      "$BIN" produce forget --user "$u" --items "$items" --reason MISTAKE --request-id "$id" \
        >/dev/null 2>&1
    done
    sleep 3
  done
) &
PROD_PID=$!

# The kills: each at a random moment 0-2 s after the restarted worker got
# its partitions (so it dies mid-stream, in a checkpoint or a cycle, not while
# still joining the group).
RANDOM=$SEED
assigned() { grep -c 'rebalance .*: assign' "$TMP/chaos.err" 2>/dev/null || true; }
for k in $(seq "$KILLS"); do
  for _ in $(seq 100); do [ "$(assigned)" -ge "$round" ] && break; sleep 0.1; done
  sleep "$((RANDOM % 2)).$((RANDOM % 10))"
  kill -9 "$CHAOS_PID" 2>/dev/null || true
  wait "$CHAOS_PID" 2>/dev/null || true
  start_chaos
done
wait "$PROD_PID"
PROD_PID=""
echo "chaos: $KILLS kills done at $((SECONDS - T0)) s; stream of $N ratings and $NF forget requests produced"

# Both must reach the end of every partition with every request done.
done_with() { # REDIS-OPTS...: applied + dead letters == N and forget_completed == NF
  "$BIN" state "$@" 2>/dev/null | awk -v n="$N" -v f="$NF" '/^total/ {
    for (i = 2; i <= NF; i++) { split($i, kv, "="); t[kv[1]] = kv[2] }
    exit !(t["applied"] + t["dead_letters"] == n && t["forget_completed"] == f) }'
}
deadline=$((SECONDS + 180))
until done_with "${REF[@]}" && done_with "${CHAOS[@]}"; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "chaos: not caught up after 180 s:"
    "$BIN" state "${REF[@]}" 2>&1 | tail -1 || true
    "$BIN" state "${CHAOS[@]}" 2>&1 | tail -1 || true
    break
  fi
  sleep 0.5
done
sleep 1 # checkpoints and receipts settle
kill -TERM "$CHAOS_PID" "$REF_PID" 2>/dev/null || true # the chaos worker may have died
wait "$CHAOS_PID" "$REF_PID" 2>/dev/null || true
CHAOS_PID=""
"$BIN" state "${REF[@]}" >"$TMP/ref.state"
"$BIN" state "${CHAOS[@]}" >"$TMP/chaos.state" 2>&1 ||
  echo "chaos: the chaos state is unreadable ($(cat "$TMP/chaos.state")): all its ratings count as lost"

# Applied per partition against the end of the partition (the uninterrupted
# reference's offset.ratings, both having caught up) and against the
# reference's applied count.
read -r lost doubled vs_ref < <(awk '
  /^partition=/ { split($1, p, "="); for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    key = p[2]; got = v["applied"] + v["dead_letters"]
    if (FILENAME ~ /ref/) { ref[key] = got; end[key] = v["offset.ratings"] } else chaos[key] = got }
  END { for (k in end) { d = chaos[k] - end[k]; if (d < 0) lost -= d; else doubled += d
          r = chaos[k] - ref[k]; vs += r < 0 ? -r : r }
        print lost + 0, doubled + 0, vs + 0 }' "$TMP/ref.state" "$TMP/chaos.state")

# Histories: SHA-1 of every user's history value in each Redis.
HASH='local r = {} for _, k in ipairs(redis.call("KEYS", "ul:{p*}:hist")) do
  local t = redis.call("HGETALL", k) for i = 1, #t, 2 do r[#r + 1] = t[i] .. " " .. redis.sha1hex(t[i + 1]) end
  end return r'
redis-cli -p "$REF_PORT" eval "$HASH" 0 | sort >"$TMP/ref.hist"
redis-cli -p "$CHAOS_PORT" eval "$HASH" 0 | sort >"$TMP/chaos.hist"
users_hist=$(grep -c . "$TMP/ref.hist" || true)
diff "$TMP/ref.hist" "$TMP/chaos.hist" | awk '/^[<>]/ { print $2 }' | sort -un >"$TMP/differ" || true
missing=0 extra=0 # entry by entry for the first 20 users that differ (two CLI calls each)
head -20 "$TMP/differ" | while read -r u; do
  "$BIN" state "${REF[@]}" --user "$u" --history 2>/dev/null | awk '/^hist/ { print $2 }' | sort >"$TMP/h.ref"
  "$BIN" state "${CHAOS[@]}" --user "$u" --history 2>/dev/null | awk '/^hist/ { print $2 }' | sort >"$TMP/h.chaos"
  missing=$((missing + $(comm -23 "$TMP/h.ref" "$TMP/h.chaos" | wc -l)))
  extra=$((extra + $(comm -13 "$TMP/h.ref" "$TMP/h.chaos" | wc -l)))
  echo "$missing $extra" >"$TMP/entries"
done
[ -s "$TMP/entries" ] && read -r missing extra <"$TMP/entries"

# Missed forgets: a forgotten (user, item) still rated in either state.
missed() { # REDIS-OPTS...
  local n=0 u items id
  while read -r _ u items id; do
    n=$((n + $("$BIN" state "$@" --user "$u" --items "$items" 2>/dev/null | grep -c ' rated=1' || true)))
  done <"$TMP/forgets.txt"
  echo "$n"
}
missed_chaos=$(missed "${CHAOS[@]}")
missed_ref=$(missed "${REF[@]}")

# Receipts per request id.
receipts() { # TOPIC [options]
  local topic="$1"; shift
  "$BIN" consume --topic "$topic" "$@" --timeout-ms 3000 2>/dev/null |
    awk '{ for (i = 1; i < NF; i++) if ($i == "receipt") { n[$(i + 1)]++; break } }
      END { for (id in n) print id, n[id] }'
}
receipts forget-receipts >"$TMP/chaos.receipts"
receipts ref-receipts --topic.forget_receipts ref-receipts >"$TMP/ref.receipts"
count() { # FILE: missing duplicates
  awk -v nf="$NF" '{ got++; if ($2 > 1) dup += $2 - 1 } END { print nf - got, dup + 0 }' "$1"
}
read -r rc_missing rc_dup < <(count "$TMP/chaos.receipts")
read -r rr_missing rr_dup < <(count "$TMP/ref.receipts")
most=$(sort -k2 -n "$TMP/chaos.receipts" | tail -1)

echo
echo "chaos run: $KILLS x kill -9, $N ratings, $NF forget requests, $PARTS partitions, $((SECONDS - T0)) s"
echo "  ratings lost (chaos, applied < end of partition)      $lost"
echo "  ratings doubled (chaos, applied > end of partition)   $doubled"
echo "  |chaos - reference| applied, over partitions          $vs_ref"
echo "  users whose history differs from the reference        $(grep -c . "$TMP/differ" || true) of $users_hist"
echo "    history entries missing / extra (first 20 such users) $missing / $extra"
echo "  missed forgets (forgotten rating still remembered)    chaos $missed_chaos, reference $missed_ref"
echo "  receipts missing                                      chaos $rc_missing, reference $rr_missing"
echo "  duplicate receipts (beyond one per request)           chaos $rc_dup, reference $rr_dup (most for one request: ${most:-none})"
