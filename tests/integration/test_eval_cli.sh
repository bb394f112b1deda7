#!/usr/bin/env bash
# test_eval_cli.sh: `unlearnd eval` end to end on a small synthetic CSV this
# script writes: --json prints only JSON lines with exactly the documented
# keys, one per (users, forget, method, seed); --sequential adds one line per
# unlearning method with its per-batch trace; the table mode works; bad
# options exit 2 and a missing file exits 1, each with a message.
set -euo pipefail
bin="$1"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# 200 users x 80 items, ~5000 distinct ratings from a planted rank-1 model.
awk 'BEGIN {
  srand(11); print "user,item,rating";
  for (u = 1; u <= 200; u++) { a[u] = rand() * 2 - 1 }
  for (i = 1; i <= 80; i++) { b[i] = rand() * 2 - 1 }
  for (u = 1; u <= 200; u++) for (i = 1; i <= 80; i++) if (rand() < 0.31) {
    r = int(3 + 1.5 * a[u] * b[i] + a[u] + rand() - 0.5 + 0.5);
    if (r < 1) r = 1; if (r > 5) r = 5; print u "," i "," r } }' > "$tmp/r.csv"

fast=(--k 8 --epochs 4 --threads 1)

# --json: stdout holds only JSON objects, one per (users, forget, method, seed).
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --users 10,20 --forget 30 --seeds 2 \
  --methods orig,faulty,retrain,sisa --json >"$tmp/out.json" 2>"$tmp/err.txt" ||
  { cat "$tmp/err.txt" >&2; fail "eval --json exited non-zero"; }
lines=$(wc -l <"$tmp/out.json")
[ "$lines" -eq 16 ] || fail "expected 16 JSON lines (2 users x 1 forget x 4 methods x 2 seeds), got $lines"
keys='dataset,users_pct,forget_pct,method,sequential,seed,rmse_test,rmse_affected,rmse_unaffected,forget_gap,mean_pred_forget,topk_exposure,mia_auc,mia_auc_ref,item_bias_forget,item_score_forget,seconds,unlearn_seconds,l1_P,l2_P,l1_Q,l2_Q'
while IFS= read -r line; do
  case "$line" in '{'*'}') ;; *) fail "not a JSON object line: $line" ;; esac
  got=$(printf '%s\n' "$line" | grep -o '"[A-Za-z0-9_]*":' | tr -d '":' | paste -sd, -)
  [ "$got" = "$keys" ] || fail "keys '$got' differ from '$keys'"
  printf '%s\n' "$line" | grep -Eq '"rmse_test":[0-9.e+-]+,' || fail "rmse_test is not a number: $line"
done <"$tmp/out.json"
grep -q '"method":"retrain","sequential":0,"seed":43,.*"forget_gap":0,' "$tmp/out.json" ||
  fail "retrain's forget gap should be 0 for seed 43"
[ "$(grep -c '"users_pct":20,' "$tmp/out.json")" -eq 8 ] || fail "users_pct 20 rows missing"
grep -q 'data: ' "$tmp/err.txt" || fail "stderr does not say which data is used"
grep -q '"method":"retrain","sequential":0,.*"mia_auc":0\.[0-9]*,' "$tmp/out.json" ||
  fail "retrain's MIA AUC is not a number in [0, 1)"

# --sequential 3: one more line per unlearning method, with 3-point traces.
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --users 20 --methods faulty,retrain,foldin \
  --sequential 3 --json >"$tmp/seq.json" 2>/dev/null || fail "eval --sequential exited non-zero"
[ "$(wc -l <"$tmp/seq.json")" -eq 4 ] || fail "--sequential 3: expected 4 JSON lines"
seq_line=$(grep '"sequential":3,' "$tmp/seq.json") || fail "no sequential line"
case "$seq_line" in *'"method":"foldin"'*) ;; *) fail "the sequential line is not foldin's" ;; esac
printf '%s\n' "$seq_line" | grep -Eq '"trace_gap":\[[^],]+,[^],]+,[^],]+\]' ||
  fail "trace_gap does not hold 3 batches: $seq_line"
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --users 20 --methods retrain,foldin \
  --sequential 2 --sequential-by users >"$tmp/seq.txt" 2>/dev/null ||
  fail "eval --sequential-by users (table) exited non-zero"
grep -q '^seq:foldin ' "$tmp/seq.txt" || fail "no seq:foldin row in the table"
grep -q 'MIA AUC' "$tmp/seq.txt" || fail "no MIA AUC column in the table"

# --valid scores on a validation split (the table says so), --set changes a
# method's knob (the figures move).
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --users 20 --methods retrain,foldin --valid \
  >"$tmp/valid.txt" 2>/dev/null || fail "eval --valid exited non-zero"
grep -q 'validation (every metric on it)' "$tmp/valid.txt" || fail "--valid: the table does not say validation"
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --users 20 --methods foldin --json \
  >"$tmp/set0.json" 2>/dev/null || fail "eval (foldin) exited non-zero"
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --users 20 --methods foldin --json \
  --set foldin_reg=2 --set foldin_items=0 >"$tmp/set1.json" 2>/dev/null || fail "eval --set exited non-zero"
r0=$(grep -o '"rmse_test":[0-9.e+-]*' "$tmp/set0.json")
r1=$(grep -o '"rmse_test":[0-9.e+-]*' "$tmp/set1.json")
[ "$r0" != "$r1" ] || fail "--set foldin_reg=2 did not change foldin's figures ($r0)"

# Table mode: a readable table with the noise floor, and a summary over seeds.
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --seeds 2 >"$tmp/table.txt" 2>/dev/null ||
  fail "eval (table) exited non-zero"
grep -q '^method ' "$tmp/table.txt" || fail "no table header"
grep -q '^retrain2 ' "$tmp/table.txt" || fail "no retrain2 row"
grep -q 'noise floor' "$tmp/table.txt" || fail "no noise floor line"
grep -q 'mean +- std over 2 seeds' "$tmp/table.txt" || fail "no summary over seeds"

# --help: stdout, exit 0, names every option.
"$bin" eval --help >"$tmp/help.txt" || fail "--help exit status"
for o in --data --users --forget --methods --k --epochs --seed --seeds --shards --json --dups \
  --sequential --sequential-by --valid --set; do
  grep -q -- "$o" "$tmp/help.txt" || fail "--help does not document $o"
done

# Bad option values: exit 2 with a message naming the option.
expect_usage() {
  local what="$1"; shift
  set +e
  "$bin" eval --data "$tmp/r.csv" "$@" >"$tmp/bad.out" 2>"$tmp/bad.err"
  local rc=$?
  set -e
  [ "$rc" -eq 2 ] || fail "$* -> exit $rc, expected 2"
  [ ! -s "$tmp/bad.out" ] || fail "$* printed on stdout"
  grep -q -- "$what" "$tmp/bad.err" || fail "$* -> message does not mention $what: $(cat "$tmp/bad.err")"
}
expect_usage --users --users 0
expect_usage --users --users 10,abc
expect_usage --users --users 10,,20
expect_usage --forget --forget 101
expect_usage --methods --methods orig,nope
expect_usage --methods --methods orig,orig
expect_usage --k --k 0
expect_usage --epochs --epochs -3
expect_usage --seeds --seeds 0
expect_usage --shards --shards 0
expect_usage --shards --shards 65
expect_usage --dups --dups first
expect_usage --seed --seed -1
expect_usage --sequential --sequential -1
expect_usage --sequential --sequential many
expect_usage --sequential-by --sequential-by time
expect_usage --set --set nope=1
expect_usage --set --set foldin_sweeps=1.5
expect_usage foldin_sweeps --set foldin_sweeps=0
expect_usage "unknown option" --bogus
expect_usage "needs a value" --users

# More batches than F holds: a runtime error that says what N must fit.
set +e
"$bin" eval --data "$tmp/r.csv" "${fast[@]}" --methods foldin --sequential 90000 \
  >/dev/null 2>"$tmp/seqbig.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "--sequential 90000 -> exit $rc, expected 1"
grep -q 'batches do not fit' "$tmp/seqbig.err" || fail "unclear: $(cat "$tmp/seqbig.err")"

# A missing data file is a runtime error: exit 1, the path in the message.
set +e
"$bin" eval --data "$tmp/absent.csv" >/dev/null 2>"$tmp/miss.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "missing file -> exit $rc, expected 1"
grep -q 'absent.csv' "$tmp/miss.err" || fail "missing-file message does not name the file"
# Bad data: a rating outside the scale is named with file and line (exit 1);
# a duplicate (user,item) is an error by default and kept-last with --dups last.
{ head -n 20 "$tmp/r.csv"; echo "7,7,9"; } >"$tmp/bad.csv"
set +e
"$bin" eval --data "$tmp/bad.csv" --rating-min 1 --rating-max 5 "${fast[@]}" >/dev/null 2>"$tmp/bad.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "out-of-scale rating -> exit $rc, expected 1"
grep -q 'bad.csv:21: rating 9 outside 1..5 (--rating-min/--rating-max set the scale)' "$tmp/bad.err" ||
  fail "bad rating message lacks file:line or the options: $(cat "$tmp/bad.err")"
{ cat "$tmp/r.csv"; sed -n 2p "$tmp/r.csv"; } >"$tmp/dup.csv"
set +e
"$bin" eval --data "$tmp/dup.csv" "${fast[@]}" >/dev/null 2>"$tmp/dup.err"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "duplicate pair -> exit $rc, expected 1"
grep -qi 'dup' "$tmp/dup.err" || fail "duplicate message unclear: $(cat "$tmp/dup.err")"
"$bin" eval --data "$tmp/dup.csv" "${fast[@]}" --dups last --methods retrain --json \
  >"$tmp/dup.json" 2>/dev/null || fail "--dups last should accept the duplicate"
[ "$(wc -l <"$tmp/dup.json")" -eq 1 ] || fail "--dups last: expected one JSON line"
echo "test_eval_cli: ok"
