#!/usr/bin/env bash
# test_score_cli.sh: `unlearnd score` on a model from `unlearnd train` and a
# held-out fifth of a rank-1 taste: the test RMSE is small and below the
# global-mean predictor's (computed here); unknown users and items are counted
# and scored from the biases; --reference gives the gap between two models'
# predictions (0 against itself), --exclude the top-N exposure of the pairs
# (1 when every item is ranked, 0 when the pairs themselves are excluded, the
# liked held-out items above the disliked ones); bad input gives short errors
# with exit codes 1 (bad files) and 2 (usage). Usage: test_score_cli.sh BIN
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

# --reference: the gap to a model of itself is 0, to a weaker model positive;
# mean_pred is the scored model's whatever the reference.
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" "$2"; }
"$bin" train --data "$dir/train.csv" --out "$dir/weak.bin" --k 4 --epochs 1 >/dev/null 2>&1 ||
  fail "train weak"
"$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --reference "$dir/m.bin" >"$dir/self" ||
  fail "score --reference self"
grep -Eq "^n=$n rmse=$rmse .* mean_pred=[0-9.]+ ref_mean_pred=[0-9.]+ gap=0.000000$" "$dir/self" ||
  fail "gap to itself: $(cat "$dir/self")"
"$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --reference "$dir/weak.bin" >"$dir/weak" ||
  fail "score --reference weak"
[ "$(field mean_pred "$dir/weak")" = "$(field mean_pred "$dir/self")" ] || fail "mean_pred moved"
awk -v g="$(field gap "$dir/weak")" 'BEGIN { exit !(g > 0.1) }' || fail "gap to a weak model: $(cat "$dir/weak")"

# --exclude: every item ranked (top 40 of 40, no item of theirs excluded) ->
# every pair exposed; the pairs themselves excluded -> none; held-out items
# the user likes (5) are exposed more than those they dislike (1).
"$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --exclude "$dir/cold.csv" --top 40 >"$dir/all" ||
  fail "score --exclude"
grep -q " top=40 exposure=1.000000$" "$dir/all" || fail "top 40 of 40: $(cat "$dir/all")"
"$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --exclude "$dir/test.csv" >"$dir/none" ||
  fail "score --exclude itself"
grep -q " top=10 exposure=0.000000$" "$dir/none" || fail "pairs excluded: $(cat "$dir/none")"
awk -F, 'NR == 1 || $3 == 5' "$dir/test.csv" >"$dir/liked.csv"
awk -F, 'NR == 1 || $3 == 1' "$dir/test.csv" >"$dir/disliked.csv"
"$bin" score --model "$dir/m.bin" --data "$dir/liked.csv" --exclude "$dir/train.csv" --top 5 >"$dir/liked" &&
  "$bin" score --model "$dir/m.bin" --data "$dir/disliked.csv" --exclude "$dir/train.csv" --top 5 >"$dir/disliked" ||
  fail "score liked/disliked"
liked=$(field exposure "$dir/liked") disliked=$(field exposure "$dir/disliked")
awk -v l="$liked" -v d="$disliked" 'BEGIN { exit !(l > 0.3 && d < 0.1) }' ||
  fail "exposure of liked $liked, disliked $disliked"

expect 2 "--top needs --exclude" "$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --top 5
expect 2 "--top" "$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --exclude "$dir/train.csv" --top 0
expect 1 "nope.bin" "$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --reference "$dir/nope.bin"
expect 1 "nope.csv" "$bin" score --model "$dir/m.bin" --data "$dir/test.csv" --exclude "$dir/nope.csv"
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
echo "ok: score RMSE $rmse (mean predictor $mean_rmse), cold ids counted, gap to a weak model" \
  "$(field gap "$dir/weak"), top-5 exposure liked $liked / disliked $disliked, bad input refused"
