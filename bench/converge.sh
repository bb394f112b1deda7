#!/usr/bin/env bash
# converge.sh [LIBMF_DIR]: test RMSE against wall time for unlearnd's trainer
# and, given a LibMF checkout (cjlin1/libmf, outside this repository; built
# with its own Makefile if mf-train is missing), for LibMF on the same split
# in the same run; then plots both into docs/mf_converge.png (gnuplot).
# Extra arguments after the directory go to build/bench_converge.
set -euo pipefail
cd "$(dirname "$0")/.."
libmf="${1:-}"
[ $# -gt 0 ] && shift
tmp="$(mktemp -d /tmp/unlearnd-converge-plot-XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
args=(--tsv "$tmp/curve" "$@")
[ -n "$libmf" ] && args+=(--libmf "$libmf")
build/bench_converge "${args[@]}"
if ! command -v gnuplot >/dev/null; then
  echo "converge.sh: gnuplot not found: figure skipped (scripts/deps.sh installs it)" >&2
  exit 0
fi
plot="\"$tmp/curve-unlearnd.tsv\" u 1:2 w lp lw 2 pt 7 ps 0.6 lc rgb \"#d7191c\" t \"unlearnd (defaults)\""
if [ -f "$tmp/curve-libmf.tsv" ]; then
  plot="$plot, \"$tmp/curve-libmf.tsv\" u 1:2 w lp lw 2 pt 5 ps 0.6 lc rgb \"#2c7bb6\" t \"LibMF (-k 64 -l2 0.05)\""
fi
gnuplot <<GP
set terminal pngcairo size 900,560 noenhanced
set output "docs/mf_converge.png"
set title "ML-1M 80/20 split, K=64, 2 threads: test RMSE against training wall time (median of runs)"
set xlabel "seconds since training started (data loaded; per-epoch test scoring included)"
set ylabel "test RMSE"
set yrange [0.84:0.93]
set key top right
set grid
plot 0.848 w l dt 2 lc rgb "#808080" t "0.848", $plot
GP
echo "converge.sh: wrote docs/mf_converge.png" >&2
