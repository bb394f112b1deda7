#!/usr/bin/env bash
# test_worker_keys.sh: producers that partition differently (issue 11.5).
#   1. kcat with the README's recipe (-X topic.partitioner=murmur2_random)
#      sends string-keyed ratings where Java would: all applied; kcat's
#      default partitioner sends most of the same records elsewhere: they
#      are dead-lettered as wrong-partition.
#   2. Confluent-Avro-serialised keys (key.format=avro): ratings and a
#      forget request keyed like KafkaAvroSerializer keys a long are
#      applied; `state --user` finds the user in the partition those key
#      bytes hash to; string-keyed records are dead-lettered as bad-key.
source "$(dirname "$0")/worker_lib.sh"
command -v kcat >/dev/null || { echo "SKIP: kcat not installed"; exit 77; }
ADDR=$(cat "$TMP/broker.addr")

# 1. Ten users, one rating each, produced by unlearnd (Java's partitioning).
awk 'BEGIN { print "user,item,rating"; for (u = 1; u <= 10; u++) print u "," u ",4" }' >"$TMP/ten.csv"
"$BIN" produce ratings --data "$TMP/ten.csv" >/dev/null 2>&1 || fail "produce"
# Their values, one file per record, re-sent by kcat with the same keys.
kcat -C -b "$ADDR" -t ratings -e -q -f '%p %o %k\n' >"$TMP/java.parts"
[ "$(grep -c . "$TMP/java.parts")" -eq 10 ] || fail "java.parts: $(cat "$TMP/java.parts")"
while read -r p o k; do
  kcat -C -b "$ADDR" -t ratings -p "$p" -o "$o" -c 1 -e -q -f '%s' >"$TMP/v.$k"
done <"$TMP/java.parts"
for k in $(seq 10); do
  kcat -P -b "$ADDR" -t ratings -k "$k" -X topic.partitioner=murmur2_random "$TMP/v.$k" ||
    fail "kcat recipe"
done
start_worker recipe
wait_for 60 "20 ratings applied" total_is applied 20
sleep 1
[ "$(total dead_letters)" = 0 ] || fail "the recipe's records were dead-lettered: $(grep dead-lettered "$TMP/recipe.err")"
echo "ok: kcat -X topic.partitioner=murmur2_random partitions like Java (20 applied, 0 dead letters)"
for k in $(seq 10); do kcat -P -b "$ADDR" -t ratings -k "$k" "$TMP/v.$k" || fail "kcat default"; done
wrong=$(kcat -C -b "$ADDR" -t ratings -e -q -f '%p %k\n' |
  awk 'NR == FNR { java[$3] = $1; next } java[$2] != $1' "$TMP/java.parts" - | wc -l)
[ "$wrong" -gt 0 ] || fail "kcat's default partitioner happened to agree with Java on all 10"
wait_for 60 "kcat's default-partitioned records dead-lettered" total_is dead_letters "$wrong"
grep -q 'wrong-partition.*key.format=string' "$TMP/recipe.err" || fail "no wrong-partition dead letter"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc"
echo "ok: kcat's default partitioner: $wrong of 10 in another partition, dead-lettered"
strings_in_topic=$((20 + 10))

# 2. Avro keys (schema id 7), a fresh state.
redis-cli -p "$REDIS_PORT" flushall >/dev/null
AVRO=(--key.format avro --key.schema.id 7)
awk 'BEGIN { print "user,item,rating"; for (u = 100; u < 130; u++) for (i = 1; i <= 3; i++)
  print u "," i "," (u + i) % 5 + 1 }' >"$TMP/avro.csv"
"$BIN" produce ratings --data "$TMP/avro.csv" "${AVRO[@]}" >/dev/null 2>&1 || fail "produce avro keys"
start_worker avro "${AVRO[@]}" --kafka.group.id avro-keys
wait_for 60 "the 90 Avro-keyed ratings applied" total_is applied 90
wait_for 30 "the string-keyed records dead-lettered" total_is dead_letters "$strings_in_topic"
grep -q 'bad-key: the key (1 bytes) is not user 1 as a Confluent-Avro long' "$TMP/avro.err" ||
  fail "no bad-key dead letter: $(grep -m2 dead-lettered "$TMP/avro.err")"
"$BIN" produce forget --user 100 --items 1,2 --reason MISTAKE --request-id avro-1 "${AVRO[@]}" \
  >/dev/null 2>&1 || fail "produce forget with an Avro key"
wait_for 60 "the Avro-keyed forget request completed" total_is forget_completed 1
state --user 100 --history "${AVRO[@]}" >"$TMP/user100" 2>&1 || fail "state --user: $(cat "$TMP/user100")"
# 3 ratings, 2 forgotten: the user is where the Avro key bytes hash to.
grep -q '^user=100 partition=[0-9]* known=1 .*remembered=1$' "$TMP/user100" ||
  fail "state --user 100: $(cat "$TMP/user100")"
p_avro=$(sed -n 's/^user=100 partition=\([0-9]*\) .*/\1/p' "$TMP/user100")
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc"
echo "ok: Avro keys: 90 ratings and a forget request applied; state --user finds user 100 in partition $p_avro"
