#!/usr/bin/env bash
# test_recommend_topic.sh: `unlearnd recommend --from-topic` refuses what it
# cannot serve with a clear message and the documented exit code: no broker,
# a broker that does not answer, an empty factors topic, bad usage. (Ranking
# from a topic the worker filled is checked by test_demo.sh.)
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
  [ ! -s "$TMP/out" ] || fail "printed a ranking on failure: $*"
}

export UNLEARND_BROKER_BOOTSTRAP_FILE="$TMP/broker.addr"
unset UNLEARND_KAFKA_BOOTSTRAP_SERVERS UNLEARND_CONFIG

"$BIN" recommend --help >"$TMP/help" || fail "--help exit"
grep -q -- "--from-topic TOPIC" "$TMP/help" || fail "--help does not explain --from-topic"
grep -q "item bias" "$TMP/help" || fail "--help does not say how scores are formed"

# Usage errors.
expect_fail 2 "--user RAW_ID is required" "$BIN" recommend --from-topic factors
expect_fail 2 "not both" "$BIN" recommend --from-topic factors --model x.ulmf --user 1
expect_fail 2 "--top" "$BIN" recommend --from-topic factors --user 1 --top 0
expect_fail 2 "unknown option" "$BIN" recommend --from-topic factors --user 1 --bogus 3
expect_fail 2 "model.kk" "$BIN" recommend --from-topic factors --user 1 --model.kk 3
expect_fail 2 "--user" "$BIN" recommend --from-topic factors --user -4

# No broker: the address file is missing.
expect_fail 2 "unlearnd broker" "$BIN" recommend --from-topic factors --user 1
# A broker address nobody answers on: bounded by --timeout-ms, exit 1.
expect_fail 1 "no answer from Kafka at 127.0.0.1:1" \
  "$BIN" recommend --from-topic factors --user 1 --kafka.bootstrap.servers 127.0.0.1:1 \
  --timeout-ms 1500

# A running broker with an empty factors topic.
"$BIN" broker --partitions 2 >"$TMP/broker.out" 2>"$TMP/broker.err" &
BROKER_PID=$!
for _ in $(seq 100); do [ -s "$TMP/broker.addr" ] && break; sleep 0.1; done
[ -s "$TMP/broker.addr" ] || fail "broker wrote no address"
expect_fail 1 "topic factors is empty" "$BIN" recommend --from-topic factors --user 1
echo "ok"
