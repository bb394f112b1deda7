#!/usr/bin/env bash
# test_train_recommend.sh: `unlearnd train` then `unlearnd recommend` on a
# small synthetic CSV written here (raw ids deliberately not 0..n), and the
# exit codes and messages for bad input. Usage: test_train_recommend.sh BIN
source "$(dirname "$0")/cli_lib.sh" # bin, dir, fail, expect

# 60 users (raw ids 1001..1060) x 40 items (raw 501..540), rank-1 taste:
# users with odd ids like low items, even ids like high items. About half
# the pairs are rated, deterministically.
awk 'BEGIN {
  print "userId,movieId,rating,timestamp"; t = 1000
  for (u = 1; u <= 60; u++) for (i = 1; i <= 40; i++) {
    if ((u * 7 + i * 13) % 5 >= 3) continue
    s = (u % 2 == 1) ? (i <= 20 ? 5 : 1) : (i <= 20 ? 1 : 5)
    if ((u + i) % 9 == 0) s = 3
    printf "%d,%d,%d,%d\n", 1000 + u, 500 + i, s, t++
  }
}' >"$dir/ratings.csv"

grep -q -- "--dups" <<<"$("$bin" train --help)" || fail "train --help lacks --dups"
grep -q -- "--top" <<<"$("$bin" recommend --help)" || fail "recommend --help lacks --top"

"$bin" train --data "$dir/ratings.csv" --out "$dir/m.ulmf" --k 8 --epochs 30 --lr 0.05 \
  --seed 3 --threads 2 2>"$dir/train.err" || fail "train failed: $(cat "$dir/train.err")"
grep -q "epoch 30/30" "$dir/train.err" || fail "no per-epoch progress: $(cat "$dir/train.err")"
grep -q "train RMSE" "$dir/train.err" || fail "no train RMSE reported"
[ -s "$dir/m.ulmf" ] || fail "no model written"

"$bin" recommend --model "$dir/m.ulmf" --user 1001 --top 5 >"$dir/rec" \
  || fail "recommend failed"
[ "$(head -1 "$dir/rec")" = "$(printf 'rank\titem\tscore')" ] || fail "bad header: $(head -1 "$dir/rec")"
[ "$(tail -n +2 "$dir/rec" | wc -l)" -eq 5 ] || fail "expected 5 rows: $(cat "$dir/rec")"
# Raw item ids come back, and user 1001 (odd) gets low items (501..520).
awk -F'\t' 'NR > 1 && ($1 != NR - 1 || $2 < 501 || $2 > 520) { bad = 1 }
            END { exit bad }' "$dir/rec" || fail "user 1001 got $(cat "$dir/rec")"
"$bin" recommend --model "$dir/m.ulmf" --user 1002 --top=3 >"$dir/rec2" || fail "recommend 1002"
awk -F'\t' 'NR > 1 && ($2 < 521 || $2 > 540) { bad = 1 } END { exit bad || NR != 4 }' \
  "$dir/rec2" || fail "user 1002 got $(cat "$dir/rec2")"
# Scores are sorted best first.
tail -n +2 "$dir/rec" | sort -t$'\t' -k3,3gr -c 2>/dev/null || fail "scores not sorted"

# Same seed, same data -> same model file.
"$bin" train --data "$dir/ratings.csv" --out "$dir/m2.ulmf" --k 8 --epochs 30 --lr 0.05 \
  --seed 3 --threads 1 2>/dev/null || fail "second train failed"
cmp -s "$dir/m.ulmf" "$dir/m2.ulmf" || fail "same seed gave a different model"

# Bad input: runtime failures exit 1 with a clear message.
expect 1 "cannot open" "$bin" train --data "$dir/missing.csv" --out "$dir/x.ulmf"
expect 1 "directory $dir/nodir" "$bin" train --data "$dir/ratings.csv" --out "$dir/nodir/x.ulmf"
expect 1 "is a directory" "$bin" train --data "$dir/ratings.csv" --out "$dir"
printf 'user,item,rating\n1,2,3\n1,3,7\n' >"$dir/bad.csv"
expect 1 "bad.csv:3: rating 7 outside 1..5 (--rating-min/--rating-max set the scale)" \
  "$bin" train --data "$dir/bad.csv" --out "$dir/x.ulmf" --rating-min 1 --rating-max 5
[ ! -e "$dir/x.ulmf" ] || fail "a model was written despite bad data"
printf 'user,item,rating\n1,2,3\n1,2,4\n' >"$dir/dup.csv"
expect 1 "dup.csv:3: duplicate" "$bin" train --data "$dir/dup.csv" --out "$dir/x.ulmf"
expect 1 "dup.csv: every rating is 4, so the scale cannot be detected: give it with --rating-min" \
  "$bin" train --data "$dir/dup.csv" --out "$dir/d.ulmf" --dups last --k 2 --epochs 1
expect 0 "1 duplicate lines dropped" "$bin" train --data "$dir/dup.csv" --out "$dir/d.ulmf" \
  --dups last --k 2 --epochs 1 --rating-min 1 --rating-max 5
expect 1 "user 9999 is not in the model" "$bin" recommend --model "$dir/m.ulmf" --user 9999
expect 1 "cannot open" "$bin" recommend --model "$dir/none.ulmf" --user 1001
head -c 100 "$dir/m.ulmf" >"$dir/trunc.ulmf"
expect 1 "trunc.ulmf" "$bin" recommend --model "$dir/trunc.ulmf" --user 1001
cp "$dir/m.ulmf" "$dir/flip.ulmf"
printf '\x55' | dd of="$dir/flip.ulmf" bs=1 seek=200 conv=notrunc status=none
expect 1 "corrupt" "$bin" recommend --model "$dir/flip.ulmf" --user 1001
expect 1 "not an unlearnd model" "$bin" recommend --model "$dir/ratings.csv" --user 1001

# Usage errors exit 2.
expect 2 "--k: 'abc' is not a whole number" "$bin" train --data "$dir/ratings.csv" --out "$dir/x.ulmf" --k abc
expect 2 "--lr" "$bin" train --data "$dir/ratings.csv" --out "$dir/x.ulmf" --lr -1
expect 2 "--dups: 'first' is not a policy" "$bin" train --data "$dir/ratings.csv" --out "$dir/x.ulmf" --dups first
expect 2 "--out MODEL is required" "$bin" train --data "$dir/ratings.csv"
expect 2 "unknown option '--bogus'" "$bin" train --bogus
expect 2 "--epochs needs a value" "$bin" train --data "$dir/ratings.csv" --out "$dir/x.ulmf" --epochs
expect 2 "--top: 0 is outside" "$bin" recommend --model "$dir/m.ulmf" --user 1001 --top 0
expect 2 "--user: '-5'" "$bin" recommend --model "$dir/m.ulmf" --user -5
expect 2 "--user RAW_ID is required" "$bin" recommend --model "$dir/m.ulmf"
echo "ok"
