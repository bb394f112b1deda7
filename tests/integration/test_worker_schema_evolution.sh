#!/usr/bin/env bash
# test_worker_schema_evolution.sh: one ratings topic carrying records of
# three writer schemas besides ours, interleaved, is applied in full by a
# worker that knows them from schema.writers files (issue 11.2, worker level):
#   v21  our Rating plus a field `source` with a default (field added)
#   v22  the fields reordered (event_time, rating, item_id, user_id), `source`
#        kept
#   v23  `source` removed again, `device` (a nullable union) added first
#   v24  a ForgetRequest without `window` (a field of ours removed: our
#        default null is filled in), which must be receipted
# and a writer schema that lacks item_id (v25) is dead-lettered as
# unresolved-schema with the reason. `unlearnd produce --writer-schema FILE
# --writer-id N` writes the records; its bad input is refused clearly.
source "$(dirname "$0")/worker_lib.sh"
command -v kcat >/dev/null || { echo "SKIP: kcat not installed"; exit 77; }
ADDR=$(cat "$TMP/broker.addr")

rating_fields='{"name": "user_id", "type": "long"}, {"name": "item_id", "type": "long"},
  {"name": "rating", "type": "float"},
  {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}}'
cat >"$TMP/v21.avsc" <<JSON
{"type": "record", "name": "Rating", "namespace": "io.unlearnd", "fields": [$rating_fields,
  {"name": "source", "type": "string", "default": "web"}]}
JSON
cat >"$TMP/v22.avsc" <<JSON
{"type": "record", "name": "Rating", "namespace": "io.unlearnd", "fields": [
  {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
  {"name": "rating", "type": "float"}, {"name": "source", "type": "string", "default": "app"},
  {"name": "item_id", "type": "long"}, {"name": "user_id", "type": "long"}]}
JSON
cat >"$TMP/v23.avsc" <<JSON
{"type": "record", "name": "Rating", "namespace": "io.unlearnd", "fields": [
  {"name": "device", "type": ["null", "string"], "default": null}, $rating_fields]}
JSON
cat >"$TMP/v24.avsc" <<JSON
{"type": "record", "name": "ForgetRequest", "namespace": "io.unlearnd", "fields": [
  {"name": "request_id", "type": "string"}, {"name": "user_id", "type": "long"},
  {"name": "items", "type": ["null", {"type": "array", "items": "long"}], "default": null},
  {"name": "reason", "type": {"type": "enum", "name": "ForgetReason",
    "symbols": ["MISTAKE", "SOMEONE_ELSE", "FAULTY_ACQUISITION", "LOST_INTEREST", "ERASURE"]}},
  {"name": "requested_at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
JSON
cat >"$TMP/v25.avsc" <<JSON
{"type": "record", "name": "Rating", "namespace": "io.unlearnd", "fields": [
  {"name": "user_id", "type": "long"}, {"name": "rating", "type": "float"},
  {"name": "event_time", "type": "long"}]}
JSON

# 2400 ratings (user u, item u*7+j mod 50, ratings 1..5), in 8 chunks of
# 300 written by ours, v21, v22, v23, ours, v21, ... so the versions interleave
# in every partition.
awk 'BEGIN { print "user,item,rating,timestamp"
  for (u = 1; u <= 120; u++) for (j = 0; j < 20; j++)
    print u "," (u * 7 + j) % 50 + 1 "," (u + j) % 5 + 1 "," 1700000000 + u * 100 + j }' \
  >"$TMP/all.csv"
tail -n +2 "$TMP/all.csv" | split -l 300 -d - "$TMP/chunk."
versions=("" 21 22 23 "" 21 22 23)
i=0
for f in "$TMP"/chunk.0*; do
  { echo "user,item,rating,timestamp"; cat "$f"; } >"$f.csv"
  v=${versions[$i]}
  if [ -n "$v" ]; then
    "$BIN" produce ratings --data "$f.csv" --writer-schema "$TMP/v$v.avsc" --writer-id "$v" \
      >/dev/null 2>"$TMP/produce.err" || fail "produce v$v: $(cat "$TMP/produce.err")"
  else
    "$BIN" produce ratings --data "$f.csv" >/dev/null 2>"$TMP/produce.err" ||
      fail "produce ours: $(cat "$TMP/produce.err")"
  fi
  i=$((i + 1))
done
[ "$i" -eq 8 ] || fail "$i chunks"
# The topic really holds the four ids, interleaved.
kcat -C -b "$ADDR" -t ratings -e -q -f '%R%s' 2>/dev/null |
  python3 -c '
import sys
data, ids, at = sys.stdin.buffer.read(), {}, 0
while at < len(data):
    n = int.from_bytes(data[at:at + 4], "big")
    sid = int.from_bytes(data[at + 5:at + 9], "big")
    ids[sid] = ids.get(sid, 0) + 1
    at += 4 + n
print(" ".join("%d:%d" % kv for kv in sorted(ids.items())))' >"$TMP/ids"
[ "$(cat "$TMP/ids")" = "1:600 21:600 22:600 23:600" ] || fail "schema ids in the topic: $(cat "$TMP/ids")"

# One incompatible record: a Rating without item_id.
printf 'user,item,rating\n5,9,4\n' >"$TMP/bad.csv"
"$BIN" produce ratings --data "$TMP/bad.csv" --writer-schema "$TMP/v25.avsc" --writer-id 25 \
  >/dev/null 2>"$TMP/produce.err" || fail "produce v25: $(cat "$TMP/produce.err")"

WRITERS="21=$TMP/v21.avsc,22=$TMP/v22.avsc,23=$TMP/v23.avsc,24=$TMP/v24.avsc,25=$TMP/v25.avsc"
start_worker worker1 --schema.writers "$WRITERS"
wait_for 90 "2400 ratings applied" total_is applied 2400
wait_for 30 "the incompatible record dead-lettered" total_is dead_letters 1
ALL_ITEMS=$(seq -s, 1 50)
wait_stats 30 "$TMP/all.csv" "$ALL_ITEMS" 1
dl=$(kcat -C -b "$ADDR" -t dead-letter -e -q -f '%h\n' 2>/dev/null)
echo "$dl" | grep -q 'error.code=unresolved-schema' || fail "dead letter: $dl"
echo "$dl" | grep -q "field 'item_id' is missing from the writer schema and has no default" ||
  fail "dead letter lacks the reason: $dl"
echo "ok: 2400 ratings of 4 writer schemas applied, statistics of all 50 items exact; v25 dead-lettered with its reason"

# A forget request in v24 (no `window` field): applied and receipted.
items=$(awk -F, '$1 == 7 { printf "%s%s", s, $2; s = "," }' "$TMP/all.csv" | cut -d, -f1-3)
rid=$("$BIN" produce forget --user 7 --items "$items" --reason ERASURE --request-id v24-req \
  --writer-schema "$TMP/v24.avsc" --writer-id 24 2>"$TMP/produce.err") ||
  fail "produce forget v24: $(cat "$TMP/produce.err")"
[ "$rid" = v24-req ] || fail "request id $rid"
wait_for 60 "the v24 request receipted" total_is forget_completed 1
total_is forgotten 3 || fail "forgotten $(total forgotten), want 3"
total_is dead_letters 1 || fail "dead letters $(total dead_letters)"
echo "ok: a ForgetRequest without 'window' forgot 3 ratings"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc"

# Bad input to produce --writer-schema.
expect_usage() {
  local want="$1"; shift
  local rc=0
  "$BIN" produce "$@" >/dev/null 2>"$TMP/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "produce $*: exit $rc, want 2 ($(cat "$TMP/err"))"
  grep -q -- "$want" "$TMP/err" || fail "produce $*: '$(cat "$TMP/err")' lacks '$want'"
}
expect_usage "go together" ratings --data "$TMP/bad.csv" --writer-schema "$TMP/v21.avsc"
expect_usage "go together" ratings --data "$TMP/bad.csv" --writer-id 21
expect_usage "cannot read it" ratings --data "$TMP/bad.csv" --writer-schema "$TMP/none.avsc" --writer-id 9
echo '{"type": "record", "name": "Rating", "fields": [' >"$TMP/broken.avsc"
expect_usage "not an Avro schema" ratings --data "$TMP/bad.csv" --writer-schema "$TMP/broken.avsc" --writer-id 9
echo '{"type": "record", "name": "Rating", "fields": [{"name": "user_id", "type": "long"}, {"name": "n", "type": "int"}]}' >"$TMP/nodef.avsc"
expect_usage "field 'n' is missing from the writer schema and has no default" \
  ratings --data "$TMP/bad.csv" --writer-schema "$TMP/nodef.avsc" --writer-id 9
expect_usage "not a Rating record (it is ForgetRequest)" ratings --data "$TMP/bad.csv" --writer-schema "$TMP/v24.avsc" --writer-id 9
expect_usage "writer-id" ratings --data "$TMP/bad.csv" --writer-schema "$TMP/v21.avsc" --writer-id x
echo "ok: produce --writer-schema refuses bad input"
