#!/usr/bin/env bash
# test_erasure_report.sh: `unlearnd erasure-report` on the local broker and a
# throwaway redis-server (issue 11.6). User 7 rates 20 items; a forget request
# for 3 of them is applied and receipted; then the user rates one of them
# again and sends a second request the (stopped) worker has not read. The
# report must list, for the first request, the history and statistics as
# gone and exactly the 3 forgotten ratings' records of the ratings topic (the
# offsets kcat finds) and the request record as still there, with the
# retention the broker reports (the mock broker: unknown, said so); the
# rating given again is not among them. --json carries the same, --request
# picks one, and bad input (unknown user, a user with no request, an unknown
# request id, Redis down, bad options) gives clear errors.
source "$(dirname "$0")/worker_lib.sh"
command -v kcat >/dev/null || { echo "SKIP: kcat not installed"; exit 77; }
ADDR=$(cat "$TMP/broker.addr")
report() { "$BIN" erasure-report "${REDIS[@]}" "$@"; }

awk 'BEGIN { print "user,item,rating"; for (u = 1; u <= 12; u++) for (i = 1; i <= 20; i++)
  print u "," i "," (u + i) % 5 + 1 }' >"$TMP/ratings.csv"
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"
start_worker worker1
wait_for 60 "240 ratings applied" total_is applied 240
"$BIN" produce forget --user 7 --items 3,5,11 --reason ERASURE --request-id erase-1 \
  >/dev/null 2>&1 || fail "produce forget"
wait_for 60 "the request receipted" total_is forget_completed 1
wait_for 30 "the receipt published" bash -c \
  "kcat -C -b '$ADDR' -t forget-receipts -e -q -f '%k\n' 2>/dev/null | grep -qx 7"
printf 'user,item,rating\n7,5,2\n' >"$TMP/again.csv"
"$BIN" produce ratings --data "$TMP/again.csv" >/dev/null 2>&1 || fail "produce again"
wait_for 60 "the new rating applied" total_is applied 241
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc"
"$BIN" produce forget --user 7 --items 1 --reason MISTAKE --request-id later-2 >/dev/null 2>&1 ||
  fail "produce the second forget"

P=$(state --user 7 | sed -n 's/.*partition=\([0-9]*\).*/\1/p')
# The forgotten ratings' records, as kcat sees them: key 7, in partition P,
# among the first 240 ratings (the one given again comes later).
kcat -C -b "$ADDR" -t ratings -p "$P" -e -q -f '%k %o\n' 2>/dev/null | awk '$1 == 7 { print $2 }' \
  >"$TMP/user7.offsets"
[ "$(wc -l <"$TMP/user7.offsets")" -eq 21 ] || fail "user 7 has $(wc -l <"$TMP/user7.offsets") records in ratings [$P]"

report --user 7 >"$TMP/report.txt" 2>"$TMP/report.err" || fail "report: $(cat "$TMP/report.err")"
cat "$TMP/report.txt"
grep -q "^erasure report for user 7 (partition $P, a row in Redis)" "$TMP/report.txt" || fail "header"
grep -q '^request erase-1: completed, 3 rating(s) forgotten' "$TMP/report.txt" || fail "erase-1 status"
grep -q '^request later-2: not yet read by the worker' "$TMP/report.txt" || fail "later-2 status"
grep -q '^topic ratings: retention unknown' "$TMP/report.txt" ||
  grep -q '^topic ratings: .*retention.ms=' "$TMP/report.txt" || fail "no retention line for ratings"

report --user 7 --request erase-1 --json >"$TMP/r1.json" 2>"$TMP/report.err" ||
  fail "report --json: $(cat "$TMP/report.err")"
python3 - "$TMP/r1.json" "$TMP/user7.offsets" "$P" <<'PY' || fail "the JSON report is wrong"
import json, sys
doc = json.load(open(sys.argv[1]))
offs = [int(x) for x in open(sys.argv[2]).read().split()]
p = int(sys.argv[3])
def check(c, msg):
    if not c:
        sys.exit("FAIL: " + msg + "\n" + json.dumps(doc, indent=1)[:3000])
check(doc["user"] == 7 and doc["partition"] == p and doc["known"], "header fields")
reqs = doc["requests"]
check(len(reqs) == 1 and reqs[0]["request_id"] == "erase-1", "--request keeps only erase-1")
r = reqs[0]
check(r["status"] == "completed" and r["receipt"]["forgotten"] == 3 and r["items"] == [3, 5, 11], "status/receipt")
gone = {e["where"]: e for e in r["gone"]}
still = [e for e in r["still"]]
check("redis history" not in gone, "the history holds item 5 again: it must be listed as still there")
hist = [e for e in still if e["where"] == "redis history"]
check(len(hist) == 1 and "given again after the request" in hist[0]["detail"], "history entry: %r" % hist)
check("user row" in gone and "item rows and statistics" in gone and "outbox" in gone, "gone: %r" % list(gone))
stats = {i["item"]: i for i in gone["item rows and statistics"]["items"]}
check(sorted(stats) == [3, 5, 11], "statistics of the 3 items")
# Items 3 and 11: 12 users rated each, one forgotten; item 5: 11 + the new rating.
check(stats[3]["count"] == 11 and stats[11]["count"] == 11 and stats[5]["count"] == 12,
      "item counts %r" % stats)
topic = [e for e in still if e["where"] == "ratings topic"]
# Items 3, 5, 11 of user 7 are the records at line positions 2, 4, 10 of its 20 first ones.
want = [offs[2], offs[4], offs[10]]
check(sorted(e["offset"] for e in topic) == sorted(want), "ratings offsets %r, want %r" % ([e["offset"] for e in topic], want))
check(all(e["partition"] == p and e["topic"] == "ratings" and "deletion" in e for e in topic), "ratings entries")
check(offs[20] not in [e["offset"] for e in topic], "the rating given after the request is listed")
req = [e for e in still if e["where"] == "forget-requests topic"]
check(len(req) == 1 and req[0]["partition"] == p, "the request record")
cfg = doc["topics"]["ratings"]
check("retention.ms" in cfg or "unknown" in cfg, "ratings topic config")
if "unknown" in cfg:
    check(all("unknown" in e["deletion"] for e in topic), "unknown retention must be said")
print("json ok: 3 ratings at", want, "retention:", cfg)
PY
echo "ok: report of user 7 (text and JSON)"

# Bad input: every one a clear message and exit 1 (runtime) or 2 (usage).
expect() {
  local code="$1" want="$2"; shift 2
  local rc=0
  "$BIN" erasure-report "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  [ "$rc" -eq "$code" ] || fail "erasure-report $*: exit $rc, want $code ($(cat "$TMP/err"))"
  grep -q -- "$want" "$TMP/err" || fail "erasure-report $*: '$(cat "$TMP/err")' lacks '$want'"
}
expect 1 "user 424242 is unknown" "${REDIS[@]}" --user 424242
expect 1 "user 3 has no forget request" "${REDIS[@]}" --user 3
expect 1 "no forget request 'nope'" "${REDIS[@]}" --user 7 --request nope
expect 2 "--user ID is required" "${REDIS[@]}"
expect 2 "user" "${REDIS[@]}" --user abc
expect 2 "unknown option" "${REDIS[@]}" --user 7 --frobnicate
DOWN=$(free_port)
expect 1 "cannot connect" --redis.host 127.0.0.1 --redis.port "$DOWN" --redis.retry.ms 200 --user 7
"$BIN" erasure-report --help | grep -q -- '--request ID' || fail "--help lacks --request"
"$BIN" help | grep -q '^  erasure-report' || fail "not in the command list"
echo "ok: bad input refused clearly"
