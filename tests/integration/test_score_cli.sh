#!/usr/bin/env bash
# test_score_cli.sh: `unlearnd score` on a model from `unlearnd train` and a
# held-out fifth of a rank-1 taste: the test RMSE is small and below the
# global-mean predictor's (computed here); unknown users and items are counted
# and scored from the biases; bad input gives short errors with exit codes 1
# (bad files) and 2 (usage). Usage: test_score_cli.sh BIN
source "$(dirname "$0")/cli_lib.sh" # bin, dir, fail, expect

awk 'BEGIN { print "user,item,rating"
  for (u = 1; u <= 60; u++) for (i = 1; i <= 40; i++) {
    if ((u * 7 + i * 13) % 5 >= 3) continue
    print 1000 + u "," 500 + i "," ((u % 2 == 1) == (i <= 20) ? 5 : 1) } }' >"$dir/all.csv"
awk -v d="$dir" 'NR == 1 { print > (d "/train.csv"); print > (d "/test.csv"); next }
  NR % 5 == 0 { print > (d "/test.csv"); next } { print > (d "/train.csv") }' "$dir/all.csv"
"$bin" train --data "$dir/train.csv" --out "$dir/m.bin" --k 4 --epochs 60 >/dev/null 2>&1 ||
  fail "train"

"$bin" score --model "$dir/m.bin" --data "$dir/test.csv" >"$dir/score" || fail "score"
n=$(($(wc -l <"$dir/test.csv") - 1))
grep -Eq "^n=$n rmse=[0-9.]+ mae=[0-9.]+ unknown_users=0 unknown_items=0$" "$dir/score" ||
  fail "score output: $(cat "$dir/score")"
rmse=$(sed 's/.*rmse=\([0-9.]*\).*/\1/' "$dir/score")
awk -v r="$rmse" 'BEGIN { exit !(r < 1.0) }' || fail "test RMSE $rmse on a rank-1 taste"
# A constant model (the mean) scores worse: the number reacts to the model.
mean_rmse=$(awk -F, 'NR == FNR && FNR > 1 { s += $3; c++; next } FNR > 1 { d = $3 - s / c; e += d * d; k++ }
  END { printf "%.6f", sqrt(e / k) }' "$dir/train.csv" "$dir/test.csv")
awk -v r="$rmse" -v m="$mean_rmse" 'BEGIN { exit !(r < m) }' ||
  fail "model RMSE $rmse not below the mean's $mean_rmse"

# Unknown ids: counted, predicted from the mean and the known bias.
printf 'user,item,rating\n9999,501,5\n1001,9999,5\n9998,9997,5\n' >"$dir/cold.csv"
"$bin" score --model "$dir/m.bin" --data "$dir/cold.csv" >"$dir/cold" || fail "score cold"
grep -q "^n=3 .* unknown_users=2 unknown_items=2$" "$dir/cold" || fail "cold: $(cat "$dir/cold")"

expect 2 "--model MODEL is required" "$bin" score --data "$dir/test.csv"
expect 2 "--data PATH is required" "$bin" score --model "$dir/m.bin"
expect 2 "unknown option '--bogus'" "$bin" score --bogus 1
expect 2 "--dups: 'x' is not a policy" "$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --dups x
expect 1 "nope.bin" "$bin" score --model "$dir/nope.bin" --data "$dir/test.csv"
printf 'garbage' >"$dir/bad.bin"
expect 1 "bad.bin" "$bin" score --model "$dir/bad.bin" --data "$dir/test.csv"
printf 'user,item,rating\n1,2,9\n' >"$dir/bad.csv"
expect 1 "bad.csv:2" "$bin" score --model "$dir/m.bin" --data "$dir/bad.csv"
grep -q "Usage: unlearnd score" <<<"$("$bin" score --help)" || fail "--help"
echo "ok: score RMSE $rmse (mean predictor $mean_rmse), cold ids counted, bad input refused"
