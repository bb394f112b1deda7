#!/usr/bin/env bash
# tune_unlearn.sh: compare settings of the unlearning methods' knobs on
# validation splits only (`unlearnd eval --valid`: every metric on 10% of
# the training split; the test split is never read), as docs/unlearning.md
# records them.
#
#   bench/tune_unlearn.sh [--datasets "ml-100k ml-1m"] [--cells "10:50 20:50"]
#                         [--seeds N] [--first-seed S] [--methods foldin,cff]
#                         [--sequential N] VARIANT...
#
# A VARIANT is LABEL or LABEL:KNOB=V,KNOB=V (knobs: `unlearnd eval --help`,
# --set); a bare LABEL ("default") runs the defaults. For every dataset,
# cell (x:y = x% users, y% of their ratings forgotten), variant and method
# it prints the seed means (default 3 seeds from 1) of: validation RMSE and
# its difference to Retrain's, the forget gap as % of M1's (and the noise
# floor, Retrain2's), the two membership attacks' AUC minus Retrain's
# (loss-threshold / calibrated), the F-weighted item score minus Retrain's,
# the method's unlearning seconds, and with --sequential N the model after
# F in N batches: its RMSE and gap minus one-shot. Progress on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

datasets="ml-100k ml-1m"
cells="10:50 20:50"
seeds=3
first=1
methods=foldin,cff
seq=0
variants=()
while [ $# -gt 0 ]; do
  case "$1" in
    --datasets) datasets="$2"; shift 2 ;;
    --cells) cells="$2"; shift 2 ;;
    --seeds) seeds="$2"; shift 2 ;;
    --first-seed) first="$2"; shift 2 ;;
    --methods) methods="$2"; shift 2 ;;
    --sequential) seq="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "tune_unlearn.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) variants+=("$1"); shift ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || variants=(default)

source bench/bench_lib.sh # data_path
bin=build/unlearnd
[ -x "$bin" ] || scripts/build.sh release >/dev/null

printf '%-8s %-6s %-34s %-7s %8s %8s %7s %7s %7s %7s %8s %7s' dataset x/y variant method \
  rmse d_rmse gap% floor% d_mia d_miar d_score secs
[ "$seq" -gt 0 ] && printf ' %8s %7s' seq_d_rm seq_d_gp
echo
for ds in $datasets; do
  path=$(data_path "$ds")
  [ -f "$path" ] || { echo "tune_unlearn.sh: $ds not found at $path: skipped" >&2; continue; }
  for cell in $cells; do
    for var in "${variants[@]}"; do
      label=${var%%:*}
      sets=()
      if [ "$var" != "$label" ]; then
        IFS=, read -r -a kvs <<<"${var#*:}"
        for kv in "${kvs[@]}"; do sets+=(--set "$kv"); done
      fi
      seqargs=()
      [ "$seq" -gt 0 ] && seqargs=(--sequential "$seq")
      echo "tune_unlearn.sh: $ds ${cell/:/\/} $label" >&2
      "$bin" eval --data "$path" --valid --users "${cell%%:*}" --forget "${cell##*:}" \
        --seed "$first" --seeds "$seeds" --methods "faulty,retrain,retrain2,$methods" \
        "${seqargs[@]}" "${sets[@]}" --json 2>/dev/null |
        sed -e 's/"trace_[a-z_]*":\[[^]]*\],*//g' -e 's/[{}"]//g' -e 's/,/ /g' -e 's/:/=/g' |
        awk -v ds="$ds" -v cell="${cell/:/\/}" -v label="$label" -v meths="$methods" -v seq="$seq" '
          { delete f; for (i = 1; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
            m = f["method"] (f["sequential"] > 0 ? ":seq" : ""); s = f["seed"]
            rm[m, s] = f["rmse_test"]; gp[m, s] = f["forget_gap"]; a[m, s] = f["mia_auc"]
            ar[m, s] = f["mia_auc_ref"]; sc[m, s] = f["item_score_forget"]; t[m, s] = f["unlearn_seconds"]
            if (!(s in seen)) { seen[s] = 1; sd[++ns] = s } }
          END { nm = split(meths, ml, ",")
            for (j = 1; j <= nm; j++) { m = ml[j]
              R = D = G = FL = A = AR = SC = T = SR = SG = 0
              for (k = 1; k <= ns; k++) { s = sd[k]; g1 = gp["faulty", s]
                R += rm[m, s]; D += rm[m, s] - rm["retrain", s]; G += 100 * gp[m, s] / g1; FL += 100 * gp["retrain2", s] / g1
                A += a[m, s] - a["retrain", s]; AR += ar[m, s] - ar["retrain", s]
                SC += sc[m, s] - sc["retrain", s]; T += t[m, s]
                if (seq > 0) { SR += rm[m ":seq", s] - rm[m, s]; SG += 100 * (gp[m ":seq", s] - gp[m, s]) / g1 } }
              printf "%-8s %-6s %-34s %-7s %8.4f %+8.4f %7.1f %7.1f %+7.3f %+7.3f %+8.4f %7.3f",
                ds, cell, label, m, R / ns, D / ns, G / ns, FL / ns, A / ns, AR / ns, SC / ns, T / ns
              if (seq > 0) printf " %+8.4f %+7.1f", SR / ns, SG / ns
              printf "\n" } }'
    done
  done
done
