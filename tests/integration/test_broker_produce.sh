#!/usr/bin/env bash
# test_broker_produce.sh: `unlearnd broker` + `produce` + `consume` end to end
# on the local mock cluster: counts, Java-compatible partitioning by user key,
# forget requests by items and by window, clean shutdown that removes the
# address file, and bad input refused with clear messages and non-zero exits.
set -euo pipefail
BIN="$1"
TMP="$(mktemp -d)"
BROKER_PID=""
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect_fail CODE NEEDLE cmd...: the command exits with CODE and says NEEDLE.
expect_fail() {
  local code="$1" needle="$2"; shift 2
  local rc=0
  "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  [ "$rc" -eq "$code" ] || { cat "$TMP/err" >&2; fail "exit $rc (want $code): $*"; }
  grep -qF -- "$needle" "$TMP/err" || { cat "$TMP/err" >&2; fail "no '$needle' from: $*"; }
}

export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
unset UNLEARND_KAFKA_BOOTSTRAP_SERVERS UNLEARND_CONFIG

# No broker yet: commands say how to get one.
printf 'user,item,rating\n1,1,3\n' >"$TMP/one.csv"
expect_fail 1 "unlearnd broker" "$BIN" produce ratings --data "$TMP/one.csv"
expect_fail 2 "--partitions" "$BIN" broker --partitions 0
# A stale address file (a killed broker): fail fast with a hint, not hang.
echo "127.0.0.1:1" >"$TMP/stale.addr"
expect_fail 1 "is \`unlearnd broker\` running" \
  env UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/stale.addr" "$BIN" produce ratings --data "$TMP/one.csv"

"$BIN" broker --partitions 4 >"$TMP/broker.out" 2>"$TMP/broker.err" &
BROKER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
[ -s "$TMP/broker.addr" ] || { cat "$TMP/broker.err" >&2; fail "broker wrote no address"; }
grep -q '^127.0.0.1:[0-9]*$' "$TMP/broker.addr" || fail "odd address: $(cat "$TMP/broker.addr")"

# 20 users x 10 items, user 21 included (its Java partition of 4 is known).
{
  echo "user,item,rating"
  for u in $(seq 2 21); do
    for i in $(seq 1 10); do echo "$u,$((i * 3)),$(( (u + i) % 5 + 1 ))"; done
  done
} >"$TMP/ratings.csv"
"$BIN" produce ratings --data "$TMP/ratings.csv" >"$TMP/p.out" 2>"$TMP/p.err" ||
  { cat "$TMP/p.err" >&2; fail "produce ratings"; }
grep -q "produced 200 ratings to ratings" "$TMP/p.out" || fail "produce summary: $(cat "$TMP/p.out")"
grep -q "200 delivered, 0 failed" "$TMP/p.out" || fail "deliveries: $(cat "$TMP/p.out")"

"$BIN" consume --topic ratings --count 200 --timeout-ms 20000 >"$TMP/c.out" 2>"$TMP/c.err" ||
  { cat "$TMP/c.err" >&2; fail "consume ratings"; }
grep -q "consumed 200 messages from ratings" "$TMP/c.out" || fail "consume count"
[ "$(grep -c ' rating user=' "$TMP/c.out")" -eq 200 ] || fail "decoded ratings"
# every user's ratings in one partition; user 21 in partition 0 as Java's
# murmur2 puts it: (murmur2("21") & 0x7fffffff) % 4 = (-973932308 & 0x7fffffff) % 4 = 0
pairs=$(awk '/ rating user=/ { print $3, $1 }' "$TMP/c.out" | sort -u | wc -l)
users=$(awk '/ rating user=/ { print $3 }' "$TMP/c.out" | sort -u | wc -l)
[ "$users" -eq 20 ] && [ "$pairs" -eq 20 ] || fail "a user's ratings span partitions"
grep -q '^\[0\] @[0-9]* key=21 ' "$TMP/c.out" || fail "user 21 not in partition 0 (Java murmur2)"
# event time follows file order when the file has no timestamps
grep -q 'user=2 item=3 rating=4 time=0$' "$TMP/c.out" || fail "first event time"

# --limit sends a prefix of the file.
"$BIN" produce ratings --data "$TMP/ratings.csv" --limit 7 --topic.ratings forget-receipts \
  >"$TMP/l.out" 2>/dev/null || fail "produce --limit"
grep -q "produced 7 ratings to forget-receipts" "$TMP/l.out" || fail "limit: $(cat "$TMP/l.out")"

# Forget requests: by items and by window; the request id is printed.
rid=$("$BIN" produce forget --user 21 --items 3,6 --reason MISTAKE --request-id t-1 2>"$TMP/f.err") ||
  { cat "$TMP/f.err" >&2; fail "produce forget items"; }
[ "$rid" = "t-1" ] || fail "request id echo: $rid"
rid2=$("$BIN" produce forget --user 5 --from 0 --to 1970-01-01T00:00:01Z --reason erasure 2>"$TMP/f.err") ||
  { cat "$TMP/f.err" >&2; fail "produce forget window"; }
[ -n "$rid2" ] || fail "no generated request id"
"$BIN" consume --topic forget-requests --count 2 >"$TMP/fc.out" 2>/dev/null || fail "consume forget"
grep -q "key=21 forget t-1 user=21 reason=MISTAKE items=3,6" "$TMP/fc.out" || fail "items request"
grep -q "key=5 forget $rid2 user=5 reason=ERASURE window=0..1000 " "$TMP/fc.out" || fail "window request"
"$BIN" consume --topic forget-requests --count 3 --timeout-ms 500 --quiet >/dev/null 2>&1 &&
  fail "consume --count beyond the topic must fail"

# Bad input: clear messages, non-zero exits, nothing sent.
expect_fail 2 "--reason R is required" "$BIN" produce forget --user 1 --items 1
expect_fail 2 "not both" "$BIN" produce forget --user 1 --items 1 --from 1 --to 2 --reason MISTAKE
expect_fail 2 "both --from and --to" "$BIN" produce forget --user 1 --from 1 --reason MISTAKE
expect_fail 2 "is after" "$BIN" produce forget --user 1 --from 20 --to 10 --reason MISTAKE
expect_fail 2 "not one of MISTAKE" "$BIN" produce forget --user 1 --items 1 --reason BORED
expect_fail 2 "forget.max.items=2" "$BIN" produce forget --user 1 --items 1,2,3 --reason MISTAKE --forget.max.items 2
expect_fail 2 "--items" "$BIN" produce forget --user 1 --items 1,,2 --reason MISTAKE
expect_fail 2 "--user" "$BIN" produce forget --user -4 --items 1 --reason MISTAKE
expect_fail 2 "unknown option 'model.kk'" "$BIN" produce ratings --data "$TMP/one.csv" --model.kk 3
expect_fail 2 "--kafka.acks" "$BIN" produce ratings --data "$TMP/one.csv" --kafka.acks banana
printf 'user,item,rating\n1,1,3\n2,2,7\n' >"$TMP/bad.csv"
expect_fail 1 "bad.csv:3" "$BIN" produce ratings --data "$TMP/bad.csv"
expect_fail 1 "nosuch.csv" "$BIN" produce ratings --data "$TMP/nosuch.csv"
"$BIN" consume --topic forget-requests --quiet >"$TMP/fc2.out" 2>/dev/null || fail "recount"
grep -q "consumed 2 messages" "$TMP/fc2.out" || fail "a refused request reached the topic"

# --help works everywhere and exits 0.
for c in broker produce consume; do
  "$BIN" "$c" --help >"$TMP/help.out" || fail "$c --help exit code"
  grep -q "Usage: unlearnd $c" "$TMP/help.out" || fail "$c --help"
  grep -q -- "--forget.max.items" "$TMP/help.out" || fail "$c --help lacks the options table"
done

# SIGTERM: clean exit, address file removed.
kill -TERM "$BROKER_PID"
wait "$BROKER_PID" || fail "broker exit code $?"
BROKER_PID=""
[ ! -e "$TMP/broker.addr" ] || fail "address file left behind"
echo "ok"
