#!/usr/bin/env bash
# test_secrets.sh: no secret in any output. One value per sensitive kind
# (redis.password, kafka.sasl.username/password, kafka.ssl.key.pem,
# kafka.ssl.key.password, kafka.ssl.keystore.password,
# kafka.sasl.oauthbearer.config, credentials inside kafka.bootstrap.servers
# and a Redis URL), given the ways an operator would (config file,
# environment), and every channel searched for all of them:
#   - --dump-config (the values masked, the keys still there);
#   - config errors: a line without '=', a key with spaces, credentials in an
#     endpoint (worker, and produce through the shared CLI path);
#   - a worker run on the local broker with every secret set, debug logs of
#     librdkafka's configuration and broker traffic on: stdout, stderr,
#     /metrics, /livez, /readyz; it must apply ratings and a forget request;
#   - a runtime error (librdkafka refusing the PEM under security.protocol=ssl).
source "$(dirname "$0")/worker_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }

tag="$$-$RANDOM"
S_REDIS="redispw-$tag"
S_SASL="saslpw-$tag"
S_SASLUSER="sasluser-$tag"
S_PEMBODY="pembody-$tag"
S_PEM="-----BEGIN PRIVATE KEY-----$S_PEMBODY-----END PRIVATE KEY-----"
S_KEYPW="keypw-$tag"
S_KEYSTORE="keystorepw-$tag"
S_OAUTH="oauthcfg-$tag"
S_BOOT="bootpw-$tag"
S_URL="urlpw-$tag"
SECRETS=("$S_REDIS" "$S_SASL" "$S_SASLUSER" "$S_PEMBODY" "$S_KEYPW" "$S_KEYSTORE" "$S_OAUTH"
  "$S_BOOT" "$S_URL")

# Every channel is checked even after one leaked: the report lists them all.
LEAKS=()
# clean WHAT FILE...: no secret in the files.
clean() {
  local what="$1" s f; shift
  for f in "$@"; do
    for s in "${SECRETS[@]}"; do
      if grep -qF -- "$s" "$f"; then
        LEAKS+=("$what shows $s: $(grep -F -- "$s" "$f" | head -1 | cut -c1-160)")
      fi
    done
  done
}
CHECKED=()
checked() { CHECKED+=("$1"); }
leak() { LEAKS+=("$*"); }

cat >"$TMP/secret.conf" <<EOF
# the way deploy/ does it: secrets in a file or the environment, not flags
redis.password=$S_REDIS
kafka.ssl.key.pem=$S_PEM
kafka.ssl.key.password=$S_KEYPW
EOF
export UNLEARND_KAFKA_SASL_USERNAME="$S_SASLUSER"
export UNLEARND_KAFKA_SASL_PASSWORD="$S_SASL"
export UNLEARND_KAFKA_SSL_KEYSTORE_PASSWORD="$S_KEYSTORE"
export UNLEARND_KAFKA_SASL_OAUTHBEARER_CONFIG="principal=$S_OAUTH"

# ---- --dump-config -----------------------------------------------------------
UNLEARND_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1,app:$S_BOOT@127.0.0.1:2" \
  "$BIN" worker --config "$TMP/secret.conf" --redis.host "redis://:$S_URL@127.0.0.1" \
  --dump-config >"$TMP/dump.out" 2>"$TMP/dump.err" || fail "--dump-config: $(cat "$TMP/dump.err")"
clean "--dump-config" "$TMP/dump.out" "$TMP/dump.err"
for key in redis.password kafka.ssl.key.pem kafka.ssl.key.password kafka.sasl.username \
  kafka.sasl.password kafka.ssl.keystore.password kafka.sasl.oauthbearer.config; do
  grep -qx "$key=\*\*\*\*\*\*\*\*" "$TMP/dump.out" || leak "--dump-config: $key not masked"
done
grep -qx 'kafka.bootstrap.servers=127.0.0.1:1,app:\*\*\*\*\*\*\*\*@127.0.0.1:2' "$TMP/dump.out" ||
  leak "--dump-config: $(grep '^kafka.bootstrap.servers=' "$TMP/dump.out")"
grep -qx 'redis.host=redis://:\*\*\*\*\*\*\*\*@127.0.0.1' "$TMP/dump.out" ||
  leak "--dump-config: $(grep '^redis.host=' "$TMP/dump.out")"
checked "--dump-config"

# ---- configuration errors ------------------------------------------------------
# expect_refused NAME EXIT COMMAND...: COMMAND exits EXIT (within 30 s) with
# an error message and no secret shown.
expect_refused() {
  local name="$1" want="$2" rc=0; shift 2
  timeout -s KILL 30 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" || rc=$?
  [ "$rc" -eq "$want" ] || leak "$name: exit $rc, want $want: $(head -c 300 "$TMP/$name.err")"
  [ -s "$TMP/$name.err" ] || leak "$name: no error message"
  clean "$name" "$TMP/$name.out" "$TMP/$name.err"
  checked "$name"
}
printf 'model.k=8\nredis.password: %s\n' "$S_REDIS" >"$TMP/colon.conf"
expect_refused line-without-equals 2 "$BIN" worker --config "$TMP/colon.conf"
grep -q 'colon.conf:2: expected key=value' "$TMP/line-without-equals.err" ||
  leak "line-without-equals: $(cat "$TMP/line-without-equals.err")"
printf 'kafka.sasl.password %s = x\n' "$S_SASL" >"$TMP/space.conf"
expect_refused key-with-spaces 2 "$BIN" worker --config "$TMP/space.conf"
expect_refused bootstrap-credentials 2 env UNLEARND_KAFKA_BOOTSTRAP_SERVERS="app:$S_BOOT@127.0.0.1:1" \
  "$BIN" worker --config "$TMP/secret.conf" "${REDIS[@]}"
grep -q 'kafka.bootstrap.servers holds credentials' "$TMP/bootstrap-credentials.err" ||
  leak "bootstrap-credentials: $(head -c 300 "$TMP/bootstrap-credentials.err")"
expect_refused redis-url-credentials 2 "$BIN" worker --config "$TMP/secret.conf" \
  --redis.host "redis://:$S_URL@127.0.0.1"
expect_refused produce-bootstrap-credentials 2 "$BIN" produce forget --user 1 --items 1 \
  --reason MISTAKE --kafka.bootstrap.servers "u:$S_BOOT@127.0.0.1:1"

# ---- a worker run with every secret set --------------------------------------------
awk 'BEGIN { print "user,item,rating";
  for (u = 1; u <= 10; u++) for (i = 1; i <= 5; i++) print u "," i "," (u + i) % 5 + 1 }' \
  >"$TMP/ratings.csv"
N=$(( $(wc -l <"$TMP/ratings.csv") - 1 ))
(unset UNLEARND_KAFKA_SASL_USERNAME UNLEARND_KAFKA_SASL_PASSWORD UNLEARND_KAFKA_SSL_KEYSTORE_PASSWORD \
  UNLEARND_KAFKA_SASL_OAUTHBEARER_CONFIG
  "$BIN" produce ratings --data "$TMP/ratings.csv") >/dev/null 2>&1 || fail "produce ratings"
PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
metric_is() { local page; page="$(curl -fsS --max-time 5 "$URL/metrics")" || return 1;
  grep -qxF "$1 $2" <<<"$page"; }
start_worker secrets --config "$TMP/secret.conf" --metrics.port "$PORT" --log.level debug \
  --kafka.debug conf,broker,security,generic --kafka.statistics.interval.ms 500
wait_for 60 "/readyz 200" curl -fsS --max-time 5 "$URL/readyz"
wait_for 60 "all $N ratings applied" metric_is unlearnd_ratings_applied_total "$N"
(unset UNLEARND_KAFKA_SASL_USERNAME UNLEARND_KAFKA_SASL_PASSWORD UNLEARND_KAFKA_SSL_KEYSTORE_PASSWORD \
  UNLEARND_KAFKA_SASL_OAUTHBEARER_CONFIG
  "$BIN" produce forget --user 3 --items 1,2 --reason MISTAKE --request-id s-1) >/dev/null 2>&1 ||
  fail "produce forget"
wait_for 60 "the forget request completed" metric_is unlearnd_forget_requests_completed_total 1
sleep 1 # a statistics round with the lag
for path in metrics livez readyz; do
  curl -fsS --max-time 5 "$URL/$path" >"$TMP/http-$path.txt" || fail "GET /$path"
done
clean "/metrics, /livez, /readyz" "$TMP"/http-*.txt
checked "/metrics /livez /readyz"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc: $(tail -5 "$TMP/secrets.err")"
grep -q 'ssl.key.password = \[redacted\]' "$TMP/secrets.err" ||
  fail "no librdkafka configuration dump in the debug log (was kafka.debug=conf applied?)"
clean "the worker's logs" "$TMP/secrets.out" "$TMP/secrets.err"
checked "worker stdout+stderr ($(wc -l <"$TMP/secrets.err") log lines)"

# ---- a runtime error: librdkafka parses the PEM only under SSL -------------------
expect_refused ssl-runtime-error 1 "$BIN" worker --config "$TMP/secret.conf" "${REDIS[@]}" \
  --kafka.security.protocol ssl
if [ ${#LEAKS[@]} -gt 0 ]; then
  printf 'LEAK: %s\n' "${LEAKS[@]}" >&2
  fail "${#LEAKS[@]} leaks in: ${CHECKED[*]}"
fi
echo "ok: no secret in: ${CHECKED[*]}"
