#!/usr/bin/env bash
# test_grafana_dashboard.sh: deploy/grafana/unlearnd.json only asks for
# series a real worker serves (issue 11.7). A worker on the local broker and
# a throwaway redis-server gets ratings, a forget request and a dead letter,
# so every family has samples; its /metrics is scraped and every metric name
# in the dashboard's PromQL (and in prometheus/alerts.yml) must be a served
# series, every {{label}} of a legend a label of those series (or instance/
# job, which Prometheus adds). The checker is also run on a copy with one
# name misspelt, which it must refuse. The dashboard's structure is checked
# too: unique panel ids, a datasource and targets on every panel, grid
# positions inside the 24 columns, no overlapping panels.
source "$(dirname "$0")/worker_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }
DEPLOY="$(cd "$(dirname "$0")/../../deploy" && pwd)"
DASH="$DEPLOY/grafana/unlearnd.json"
[ -f "$DASH" ] || fail "$DASH missing"

PORT=$(free_port)
URL="http://127.0.0.1:$PORT"
awk 'BEGIN { print "user,item,rating"; for (u = 1; u <= 20; u++) for (i = 1; i <= 10; i++)
  print u "," i "," (u + i) % 5 + 1 }' >"$TMP/ratings.csv"
"$BIN" produce ratings --data "$TMP/ratings.csv" >/dev/null 2>&1 || fail "produce ratings"
start_worker worker1 --metrics.port "$PORT" --kafka.statistics.interval.ms 300
wait_for 60 "all 200 ratings applied" total_is applied 200
"$BIN" produce forget --user 3 --items 1,2 --reason MISTAKE >/dev/null 2>&1 || fail "produce forget"
# A dead letter: a forget request framed with a schema id the worker does
# not know (unknown-schema), written with --writer-schema/--writer-id.
cat >"$TMP/fr.avsc" <<'JSON'
{"type": "record", "name": "ForgetRequest", "fields": [
  {"name": "request_id", "type": "string"}, {"name": "user_id", "type": "long"},
  {"name": "items", "type": ["null", {"type": "array", "items": "long"}], "default": null},
  {"name": "window", "type": ["null", {"type": "record", "name": "TimeWindow", "fields": [
    {"name": "from", "type": "long"}, {"name": "to", "type": "long"}]}], "default": null},
  {"name": "reason", "type": {"type": "enum", "name": "ForgetReason", "symbols":
    ["MISTAKE", "SOMEONE_ELSE", "FAULTY_ACQUISITION", "LOST_INTEREST", "ERASURE"]}},
  {"name": "requested_at", "type": "long"}]}
JSON
"$BIN" produce forget --user 4 --items 1 --reason MISTAKE --writer-schema "$TMP/fr.avsc" \
  --writer-id 77 >/dev/null 2>&1 || fail "produce the unknown-schema request"
wait_for 60 "the forget request receipted" total_is forget_completed 1
wait_for 60 "the dead letter counted" total_is dead_letters 1
has_all() {
  curl -fsS --max-time 5 "$URL/metrics" >"$TMP/metrics" || return 1
  grep -q '^unlearnd_dead_letter_total{topic="forget-requests",reason="unknown-schema"} 1$' "$TMP/metrics" &&
    grep -q '^unlearnd_topic_lag_messages{topic="forget-requests"}' "$TMP/metrics" &&
    grep -q '^unlearnd_consumer_lag_messages{topic="ratings"' "$TMP/metrics" &&
    grep -q '^unlearnd_unlearning_cycle_seconds_count [1-9]' "$TMP/metrics"
}
wait_for 30 "every series family in /metrics" has_all

cat >"$TMP/check.py" <<'PY'
import json, re, sys
import yaml

dash_path, metrics_path, alerts_path = sys.argv[1:4]
served = {}  # series name -> label names seen
for line in open(metrics_path):
    if not line.strip() or line.startswith("#"):
        continue
    m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
    if not m:
        sys.exit("unparsable /metrics line: " + line)
    labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", m.group(3) or ""))
    served.setdefault(m.group(1), set()).update(labels)
problems = []
NAME = re.compile(r"\bunlearnd_[a-zA-Z0-9_]*")

def check_expr(where, expr, legend=None):
    names = NAME.findall(expr)
    if not names and "unlearnd" not in where:
        problems.append(f"{where}: no unlearnd_ metric in {expr!r}")
    for n in names:
        if n not in served:
            problems.append(f"{where}: {n} is not served by the worker")
    labels = set().union(*(served.get(n, set()) for n in names)) | {"instance", "job"}
    for lab in re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend or ""):
        if lab not in labels:
            problems.append(f"{where}: legend label {lab} is not a label of {sorted(set(names))}")
    for lab in re.findall(r"\bby\s*\(([^)]*)\)", expr):
        for l in (x.strip() for x in lab.split(",")):
            if l and l not in labels:
                problems.append(f"{where}: 'by ({l})' is not a label of {sorted(set(names))}")
    if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
        problems.append(f"{where}: unbalanced brackets in {expr!r}")

d = json.load(open(dash_path))
ids, boxes, exprs = set(), [], 0
for p in d["panels"]:
    where = f"panel {p.get('id')} '{p.get('title')}'"
    if p.get("id") in ids:
        problems.append(f"{where}: duplicate id")
    ids.add(p.get("id"))
    g = p.get("gridPos", {})
    if not all(k in g for k in "hwxy") or g["x"] + g["w"] > 24:
        problems.append(f"{where}: bad gridPos {g}")
    else:
        for (t, h) in boxes:
            if not (g["x"] + g["w"] <= h["x"] or h["x"] + h["w"] <= g["x"] or
                    g["y"] + g["h"] <= h["y"] or h["y"] + h["h"] <= g["y"]):
                problems.append(f"{where}: overlaps '{t}'")
        boxes.append((p.get("title"), g))
    if p["type"] == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${datasource}":
        problems.append(f"{where}: datasource is not the dashboard's ${{datasource}}")
    if not p.get("targets"):
        problems.append(f"{where}: no targets")
    for t in p.get("targets", []):
        check_expr(where, t.get("expr", ""), t.get("legendFormat"))
        exprs += 1
for v in d["templating"]["list"]:
    if v["type"] == "query":
        check_expr(f"variable {v['name']}", v["definition"])
alerts = 0
for g in yaml.safe_load(open(alerts_path))["groups"]:
    for r in g["rules"]:
        check_expr(f"alert {r.get('alert')}", r["expr"])
        alerts += 1
if problems:
    sys.exit("\n".join(problems))
print(f"{exprs} dashboard expressions in {len(ids)} panels and {alerts} alert rules use only "
      f"served series ({len(served)} served)")
PY
python3 -c 'import yaml' 2>/dev/null || { echo "SKIP: python3-yaml not installed"; exit 77; }
python3 "$TMP/check.py" "$DASH" "$TMP/metrics" "$DEPLOY/prometheus/alerts.yml" ||
  fail "the dashboard asks for series the worker does not serve"
# The checker must refuse a misspelt name and a misspelt legend label.
sed 's/unlearnd_topic_lag_messages/unlearnd_topic_lag_message/' "$DASH" >"$TMP/bad1.json"
sed 's/{{partition}}/{{partiton}}/' "$DASH" >"$TMP/bad2.json"
for bad in bad1 bad2; do
  cmp -s "$DASH" "$TMP/$bad.json" && fail "$bad: the mutation changed nothing"
  if python3 "$TMP/check.py" "$TMP/$bad.json" "$TMP/metrics" "$DEPLOY/prometheus/alerts.yml" \
    >"$TMP/$bad.out" 2>&1; then fail "$bad: a misspelt dashboard passed"; fi
done
grep -q 'unlearnd_topic_lag_message is not served' "$TMP/bad1.out" || fail "bad1: $(cat "$TMP/bad1.out")"
grep -q 'legend label partiton' "$TMP/bad2.out" || fail "bad2: $(cat "$TMP/bad2.out")"
echo "ok: misspelt metric and label names are refused"
if command -v promtool >/dev/null; then
  # PromQL syntax: every expression as a recording rule ($__rate_interval and
  # the variables replaced by what Grafana would put there).
  python3 - "$DASH" >"$TMP/rules.yml" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("groups:\n- name: dashboard\n  rules:")
n = 0
for p in d["panels"]:
    for t in p.get("targets", []):
        e = t["expr"].replace("$__rate_interval", "1m").replace("$job", ".*").replace("$instance", ".*")
        n += 1
        print(f"  - record: dashboard:expr{n}\n    expr: {json.dumps(e)}")
PY
  promtool check rules "$TMP/rules.yml" >/dev/null || fail "promtool: $(promtool check rules "$TMP/rules.yml" 2>&1)"
  echo "promtool: every dashboard expression parses"
else
  echo "SKIPPED PromQL syntax check: promtool not installed (Debian package prometheus)"
fi
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc"
