#!/usr/bin/env bash
# test_worker_training.sh: continuous training in a real worker.
#  1. Quality: a synthetic stream with a planted rank-3 structure (300 users
#     x 200 items, 45% rated, 20% held out) streamed once into a worker with
#     training off and into one with training on (separate Redis databases
#     and groups). The model exported from Redis with training on, once
#     training paused, has a clearly lower test RMSE (by more than 0.1) than
#     the stream alone, which cannot learn the factors in one pass.
#  2. Exactly once: the training worker gets a second batch of ratings
#     (training resumes) and a forget request while it trains, and is killed
#     with SIGKILL in the middle of an epoch; after a restart every count is
#     exact (applied = ratings produced, per partition applied = offset,
#     forgotten = what the request named) and training resumes.
#  3. /metrics exposes the training series.
source "$(dirname "$0")/worker_lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl not installed"; exit 77; }

# Planted model: rating = 3 + 1.3 * (p_u . q_i) + noise, rounded, clipped.
awk 'BEGIN { srand(5); k = 3
  for (u = 1; u <= 300; u++) for (f = 1; f <= k; f++) p[u, f] = 2 * rand() - 1
  for (i = 1; i <= 200; i++) for (f = 1; f <= k; f++) q[i, f] = 2 * rand() - 1
  print "user,item,rating" > "'"$TMP"'/train.csv"; print "user,item,rating" > "'"$TMP"'/test.csv"
  for (u = 1; u <= 300; u++) for (i = 1; i <= 200; i++) {
    if (rand() >= 0.45) continue
    d = 0; for (f = 1; f <= k; f++) d += p[u, f] * q[i, f]
    r = int(3 + 1.3 * d + 0.3 * (rand() - 0.5) + 0.5); r = r < 1 ? 1 : r > 5 ? 5 : r
    print u "," i "," r > (rand() < 0.2 ? "'"$TMP"'/test.csv" : "'"$TMP"'/train.csv") } }'
N1=$(($(wc -l <"$TMP/train.csv") - 1))
"$BIN" produce ratings --data "$TMP/train.csv" >/dev/null 2>&1 || fail "produce ratings"

PORT=$(free_port)
metric() { # NAME: its value in /metrics
  local page
  page="$(curl -fsS --max-time 5 "http://127.0.0.1:$PORT/metrics")" || return 1
  awk -v n="$1" '$1 == n { print $2 }' <<<"$page"
}
metric_ge() { local v; v=$(metric "$1") && [ -n "$v" ] && awk -v v="$v" -v m="$2" 'BEGIN { exit !(v >= m) }'; }
tot() { # DB FIELD: the field of the total line of that Redis database's state
  state --redis.db "$1" 2>/dev/null | awk -v f="$2" '/^total/ { for (i = 2; i <= NF; i++) {
    split($i, kv, "="); if (kv[1] == f) print kv[2] } }'
}
tot_is() { [ "$(tot "$1" "$2")" = "$3" ]; }
paused_after_epochs() { grep -q 'train: paused after [0-9]* epochs (epoch RMSE' "$TMP/$1.err"; }
rmse_of() { # DB NAME: test RMSE of the model in that Redis database
  state --redis.db "$1" --export-model "$TMP/$2.model" >/dev/null
  "$BIN" score --model "$TMP/$2.model" --data "$TMP/test.csv" | sed 's/.*rmse=\([0-9.]*\).*/\1/'
}

# 1. Training off, then on.
start_worker off --redis.db 1 --kafka.group.id g-off --training.enabled 0
wait_for 60 "the stream applied (training off)" tot_is 1 applied "$N1"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc after SIGTERM"
off=$(rmse_of 1 off)

start_worker on --redis.db 2 --kafka.group.id g-on --metrics.port "$PORT"
wait_for 60 "the stream applied (training on)" tot_is 2 applied "$N1"
wait_for 120 "training to pause after its epochs" paused_after_epochs on
sleep 0.5 # a checkpoint after the pause
on=$(rmse_of 2 on)
echo "test RMSE: stream only $off, with continuous training $on"
awk -v a="$off" -v b="$on" 'BEGIN { exit !(b < a - 0.1) }' ||
  fail "training did not improve the model clearly: $off -> $on"

# 3. The training series.
epochs=$(metric unlearnd_training_epochs_total)
[ "${epochs:-0}" -ge 3 ] || fail "training_epochs_total $epochs"
metric_ge unlearnd_training_ratings_total "$((3 * N1))" || fail "training_ratings_total $(metric unlearnd_training_ratings_total)"
[ "$(metric unlearnd_training_paused)" = 1 ] || fail "training_paused not 1 once paused"
loss=$(metric unlearnd_training_loss_rmse)
awk -v l="$loss" 'BEGIN { exit !(l > 0 && l < 1) }' || fail "training_loss_rmse $loss"
grep -q 'train: epoch [0-9]* [0-9]*% done' "$TMP/on.err" || echo "note: no progress line yet"

# 2. More ratings (users 301..500 on the same items) resume training; a
# forget request arrives while it trains; SIGKILL mid-epoch.
awk 'BEGIN { srand(9); print "user,item,rating"
  for (u = 301; u <= 500; u++) for (i = 1; i <= 200; i++) if (rand() < 0.45)
    print u "," i "," int(rand() * 5) + 1 }' >"$TMP/more.csv"
N2=$(($(wc -l <"$TMP/more.csv") - 1))
epochs=$(metric unlearnd_training_epochs_total)
"$BIN" produce ratings --data "$TMP/more.csv" >/dev/null 2>&1 || fail "produce more ratings"
wait_for 60 "the second batch applied" tot_is 2 applied "$((N1 + N2))"
wait_for 60 "training to resume" metric_ge unlearnd_training_epochs_total "$((epochs + 1))"
U=7
items=$(awk -F, -v u=$U 'NR > 1 && $1 == u { print $2 }' "$TMP/train.csv" | head -5 | paste -sd,)
K=$(echo "$items" | tr ',' '\n' | wc -l)
"$BIN" produce forget --user $U --items "$items" --reason MISTAKE --request-id t-train \
  >/dev/null 2>&1 || fail "produce forget"
wait_for 60 "the forget request done" tot_is 2 forget_completed 1
[ "$(metric unlearnd_training_paused)" = 0 ] || echo "note: training paused before the kill"
rc=0
stop_worker KILL || rc=$?
[ "$rc" -eq 137 ] || fail "worker exit $rc after SIGKILL"

start_worker on2 --redis.db 2 --kafka.group.id g-on-2
wait_for 60 "the restarted worker caught up" tot_is 2 applied "$((N1 + N2))"
wait_for 120 "training to run after the restart" grep -q 'train: resumed' "$TMP/on2.err"
sleep 0.5
state --redis.db 2 >"$TMP/state"
[ "$(tot 2 applied)" = "$((N1 + N2))" ] || fail "applied $(tot 2 applied)"
[ "$(tot 2 forgotten)" = "$K" ] || fail "forgotten $(tot 2 forgotten), want $K"
[ "$(tot 2 forget_completed)" = 1 ] || fail "forget_completed $(tot 2 forget_completed)"
applied_is_offset "$TMP/state" || fail "a partition applied a rating twice or lost one"
rc=0
stop_worker TERM || rc=$?
[ "$rc" -eq 0 ] || fail "worker exit $rc after SIGTERM"
echo "ok: training improved test RMSE $off -> $on; counts exact after SIGKILL during training"
