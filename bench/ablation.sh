#!/usr/bin/env bash
# ablation.sh: the design choices of foldin and cff, one at a time, against
# the defaults (docs/unlearning.md quotes its output).
#
#   bench/ablation.sh [--data PATH] [--valid] [--seed S]
#
# Runs build/bench_unlearn once per variant on x = 10% users, y = 50%
# forgotten and prints a markdown table: test RMSE (or validation RMSE with
# --valid), forget gap as % of M1's, top-10 exposure, unlearning wall and CPU
# seconds, and |P_mf - P_m1|, |Q_mf - Q_m1| (Frobenius).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${UNLEARND_DATA_DIR:-../shared/data}/ml-1m/ratings.csv"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --data) data="$2"; shift 2 ;;
    --valid) extra+=(--valid); shift ;;
    --seed) extra+=(--seed "$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ablation.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[ -f "$data" ] || { echo "ablation.sh: $data not found" >&2; exit 1; }
scripts/build.sh release >/dev/null
export OPENBLAS_NUM_THREADS=1 # small BLAS calls: threads only add contention

variants=(
  "foldin|defaults (1 sweep, items Newton step, prior 5, reg 0.15)|"
  "foldin|items fixed (users only)|--set foldin_items=0"
  "foldin|no item damping (prior 0)|--set foldin_item_prior=0"
  "foldin|2 sweeps (the second refined)|--set foldin_sweeps=2"
  "foldin|2 sweeps, both solved afresh|--set foldin_sweeps=2 --set foldin_refine=0"
  "foldin|reg 0.045 (m1's nominal SGD reg)|--set foldin_reg=0.045"
  "cff|defaults (m2 on D_fl1 + remaining ratings, m2 reg 0.04, residual on m2, item step, F weight 1, 60 steps)|"
  "cff|no item step (items of F kept)|--set cff_item_step=0"
  "cff|residual on m1 (not m2)|--set cff_base_m2=0"
  "cff|m2 on D_fl1 only (the paper's m2)|--set rescue_retain=0"
  "cff|the previous defaults (all three above)|--set cff_item_step=0 --set cff_base_m2=0 --set rescue_retain=0"
  "cff|no network training (m2 + item step only)|--set cff_steps=0"
  "cff|users and items fused (items anchored on 8 random users)|--set cff_fuse_items=1 --set cff_anchor=1"
  "cff|users anchored at m1 on 8 random items|--set cff_anchor=1"
  "cff|F weight 2 (the previous default)|--set cff_forget_weight=2"
  "cff|m2 reg 0.02 (the previous default)|--set rescue_reg=0.02"
  "cff|no rescue model (m2 = m1)|--set rescue_epochs=0"
  "cff|200 steps|--set cff_steps=200"
  "cff-paper|paper-literal: unit rows, users and items, D_fl1 only|"
)

echo "Data: $data ${extra[*]:-} (10% users, 50% forgotten)"
echo
echo "| method | variant | RMSE | forget gap (% of M1) | top-10 exposure | wall s | CPU s | dP | dQ |"
echo "|---|---|---|---|---|---|---|---|---|"
# pick "key value" columns from a bench_unlearn line
col='function v(k,  i) { for (i = 1; i < NF; i++) if ($i == k) return $(i + 1); return "-" }'
ref_done=0
for v in "${variants[@]}"; do
  IFS='|' read -r method label sets <<<"$v"
  # shellcheck disable=SC2086
  outp=$(build/bench_unlearn --data "$data" "${extra[@]}" --methods "$method" $sets)
  if [ $ref_done -eq 0 ]; then
    echo "$outp" | awk "$col"' $1 ~ /^(m1|retrain|retrain2)$/ && $2 == "rmse" {
      printf "| %s | - | %s | %s%% | %s | %s | - | %s | %s |\n", $1, v("rmse"), v("gap_pct"),
        v("exposure"), v("wall_s"), v("dP"), v("dQ") }'
    ref_done=1
  fi
  echo "$outp" | awk -v m="$method" -v l="$label" "$col"'
    $1 == m && $2 == "rmse" { r = sprintf("| %s | %s | %s | %s%% | %s | %s |", m, l, v("rmse"),
      v("gap_pct"), v("exposure"), v("wall_s")); d = sprintf(" %s | %s |", v("dP"), v("dQ")) }
    $1 == m && $2 == "cpu_s" { c = v("cpu_s") }
    END { print r " " c " |" d }'
done
