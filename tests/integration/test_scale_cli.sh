#!/usr/bin/env bash
# test_scale_cli.sh: any rating scale offline. On a half-star file generated
# here (0.5..5, a planted rank-2 taste plus noise), train, score, recommend
# and eval run with no scale option: the scale is detected, stored in the
# model and used by score; an out-of-scale rating names the options that
# change the scale; the same data rescaled to 1..5 gives the same orig test
# RMSE once expressed in the same units; every offline --help documents the
# options. Usage: test_scale_cli.sh BIN
source "$(dirname "$0")/cli_lib.sh" # bin, dir, fail, expect

# 300 users x 200 items, 40% of the pairs, ML-like levels: 3 + biases +
# a rank-2 taste + noise, rounded to half stars and clipped to 0.5..5. The
# noise comes from a Park-Miller generator (exact in awk's doubles), so the
# file is the same on every awk.
awk 'function rnd() { x = (x * 16807) % 2147483647; return x / 2147483647 }
  BEGIN { x = 42; print "userId,movieId,rating,timestamp"; t = 1000000
  for (u = 1; u <= 300; u++) { bu[u] = 1.5 * rnd() - 0.75; a[u] = rnd() * 2 - 1; b[u] = rnd() * 2 - 1 }
  for (i = 1; i <= 200; i++) { bi[i] = 1.5 * rnd() - 0.75; c[i] = rnd() * 2 - 1; d[i] = rnd() * 2 - 1 }
  for (u = 1; u <= 300; u++) for (i = 1; i <= 200; i++) {
    if (rnd() >= 0.4) continue
    r = 3 + bu[u] + bi[i] + 2 * (a[u] * c[i] + b[u] * d[i]) + (rnd() + rnd() + rnd() - 1.5) * 0.6
    r = int(r * 2 + 0.5) / 2; if (r < 0.5) r = 0.5; if (r > 5) r = 5
    printf "%d,%d,%.1f,%d\n", u, 100 + i, r, t++ } }' >"$dir/half.csv"
grep -q ',0.5,' "$dir/half.csv" && grep -q ',5.0,' "$dir/half.csv" && grep -q ',2.5,' "$dir/half.csv" ||
  fail "the generated file does not span the half-star scale"
awk -v d="$dir" 'NR == 1 { print > (d "/train.csv"); print > (d "/test.csv"); next }
  NR % 5 == 0 { print > (d "/test.csv"); next } { print > (d "/train.csv") }' "$dir/half.csv"

# train detects 0.5..5 and the model keeps it.
expect 0 "scale 0.5..5 (detected)" "$bin" train --data "$dir/train.csv" --out "$dir/m.ulmf" \
  --k 8 --epochs 40
grep -q "saved .*scale 0.5..5" "$dir/err" || fail "train: saved line lacks the scale: $(cat "$dir/err")"
# score takes the model's scale: a half-star test file is accepted.
"$bin" score --model "$dir/m.ulmf" --data "$dir/test.csv" >"$dir/score" 2>"$dir/score.err" ||
  fail "score on half stars: $(cat "$dir/score.err")"
rmse=$(sed 's/.*rmse=\([0-9.]*\).*/\1/' "$dir/score")
mean_rmse=$(awk -F, 'NR == FNR && FNR > 1 { s += $3; c++; next } FNR > 1 { e += ($3 - s / c) ^ 2; k++ }
  END { printf "%.6f", sqrt(e / k) }' "$dir/train.csv" "$dir/test.csv")
awk -v r="$rmse" -v m="$mean_rmse" 'BEGIN { exit !(r < m - 0.1) }' ||
  fail "half-star test RMSE $rmse not clearly below the mean predictor's $mean_rmse"
# A rating below the model's scale: the message names the scale and the options.
printf 'user,item,rating\n1,101,0.25\n' >"$dir/low.csv"
expect 1 "low.csv:2: rating 0.25 outside 0.5..5 (the model's scale is 0.5..5; --rating-min/--rating-max" \
  "$bin" score --model "$dir/m.ulmf" --data "$dir/low.csv"
"$bin" score --model "$dir/m.ulmf" --data "$dir/low.csv" --rating-min 0 >"$dir/out" ||
  fail "score --rating-min 0 refused 0.25"
grep -q "^n=1 " "$dir/out" || fail "score --rating-min 0: $(cat "$dir/out")"
# recommend: the top scores are on the half-star scale (above 3.5, at most a bit over 5).
"$bin" recommend --model "$dir/m.ulmf" --user 7 --top 3 >"$dir/rec" || fail "recommend"
awk -F'\t' 'NR > 1 && ($3 < 3.5 || $3 > 6) { bad = 1 } END { exit bad || NR != 4 }' "$dir/rec" ||
  fail "recommend scores: $(cat "$dir/rec")"
# A fixed scale that the file leaves is an error naming the options.
expect 1 "train.csv:[0-9]*: rating 0.5 outside 1..5 (--rating-min/--rating-max set the scale)" \
  "$bin" train --data "$dir/train.csv" --out "$dir/x.ulmf" --rating-min 1 --rating-max 5
expect 2 "--rating-max: 'x' is not a number" "$bin" train --data "$dir/train.csv" --out "$dir/x.ulmf" \
  --rating-max x

# eval: orig's test RMSE on the half-star file and on the same data rescaled
# linearly to 1..5 agree once both are in half-star units (x 4.5/4).
awk -F, 'NR == 1 { print; next } { printf "%s,%s,%.9g,%s\n", $1, $2, 1 + ($3 - 0.5) * 8 / 9, $4 }' \
  "$dir/half.csv" >"$dir/rescaled.csv"
fast=(--methods orig --k 8 --epochs 40 --json)
"$bin" eval --data "$dir/half.csv" "${fast[@]}" >"$dir/e1" 2>"$dir/e1.err" ||
  fail "eval half: $(cat "$dir/e1.err")"
grep -q "scale 0.5..5" "$dir/e1.err" || fail "eval did not report the detected scale: $(cat "$dir/e1.err")"
"$bin" eval --data "$dir/rescaled.csv" "${fast[@]}" >"$dir/e2" 2>"$dir/e2.err" ||
  fail "eval rescaled: $(cat "$dir/e2.err")"
grep -q "scale 1..5" "$dir/e2.err" || fail "eval rescaled scale: $(cat "$dir/e2.err")"
r1=$(sed 's/.*"rmse_test":\([0-9.]*\).*/\1/' "$dir/e1")
r2=$(sed 's/.*"rmse_test":\([0-9.]*\).*/\1/' "$dir/e2")
awk -v a="$r1" -v b="$r2" 'BEGIN { d = a - b * 4.5 / 4; exit !(d < 0.01 && d > -0.01) }' ||
  fail "orig RMSE on half stars $r1 vs rescaled $r2 (x 1.125 = $(awk -v b="$r2" 'BEGIN{print b*1.125}'))"

# The stream's producer names the stream's options (it fails before any Kafka I/O).
head -1 "$dir/half.csv" >"$dir/low_first.csv"
echo "1,101,0.5,1" >>"$dir/low_first.csv"
expect 1 "low_first.csv:2: rating 0.5 outside 1..5 (--rating.min/--rating.max" \
  "$bin" produce ratings --data "$dir/low_first.csv" --kafka.bootstrap.servers 127.0.0.1:1

# The help goes to a file first: `grep -q` closing the pipe early would kill
# the writer with SIGPIPE, which pipefail reports as a failure.
for cmd in train score eval; do
  "$bin" "$cmd" --help >"$dir/help"
  grep -q -- "--rating-min" "$dir/help" || fail "$cmd --help lacks --rating-min"
  grep -q -- "--rating-max" "$dir/help" || fail "$cmd --help lacks --rating-max"
done
for cmd in recommend import; do
  "$bin" "$cmd" --help >"$dir/help"
  grep -q -- "--rating-min/--rating-max" "$dir/help" || fail "$cmd --help lacks the scale"
done
echo "ok: half stars detected (0.5..5), score RMSE $rmse (mean $mean_rmse), orig RMSE $r1 vs rescaled $r2"
