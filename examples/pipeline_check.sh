#!/bin/sh
# pipeline_check.sh WHAT MPIRUN TRAIN_MLP TRAIN_PIPELINE: checks of
# train_pipeline on Fashion-MNIST against train_mlp on one rank (the same
# model, seed, batch and data order: the data set in as many parts as
# stage 0 has devices). WHAT is
#   schedules  2 ranks, 2 stages, gpipe and 1f1b: per-step losses equal to
#              the data-parallel run's within float rounding (summation
#              order differs); the bubble is measured and in [0, 1]; stage
#              0 ran the micro-batches in the schedule's order (timeline)
#   hybrid     4 ranks, --dp 2 --pp 2: the same losses
#   memory     1f1b's peak activation memory (memory plan) below gpipe's on
#              stage 0 and over all stages, for M = 4 and M = 8
# Exits 77 (skipped) without Debian's dataset-fashion-mnist.
set -u
what=$1 mpirun=$2 mlp=$3 pipe=$4
steps=40
args="--limit-steps $steps --epochs 1 --seed 3"
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"; exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# same_losses A.csv B.csv LABEL: every step's loss within 1e-5 relative.
same_losses() {
  paste -d, "$1" "$2" | awk -F, -v label="$3" -v steps=$steps '
    NR > 1 && $1 == "step" {
      n++; d = $4 - $9; if (d < 0) d = -d; s = $4 < 0 ? -$4 : $4; if (s < 1) s = 1
      if (d > worst) worst = d
      if ($3 != $8 || d > 1e-5 * s) { printf "FAIL: %s step %s: loss %s, data-parallel %s\n", label, $8, $9, $4; bad = 1 }
    }
    END {
      if (n != steps) { printf "FAIL: %s: %d steps compared, expected %d\n", label, n, steps; exit 1 }
      if (!bad) printf "ok: %s: %d steps, largest loss difference %g\n", label, n, worst
      exit bad }'
}

run_pipe() { # NP LABEL [-x VAR] ARGS...: runs train_pipeline, metrics in $tmp/LABEL.csv
  np=$1 label=$2 fwd=""; shift 2
  if [ "${1:-}" = -x ]; then fwd="-x $2"; shift 2; fi
  out=$("$mpirun" --oversubscribe -np "$np" $fwd "$pipe" $args --metrics "$tmp/$label.csv" "$@" 2>&1) ||
    { printf '%s\n' "$out"; echo "FAIL: $label exited with an error"; exit 1; }
  printf '%s\n' "$out"
}

reference() { # [--devices N]: train_mlp on one rank, its data in N parts
  "$mlp" $args "$@" --metrics "$tmp/dp.csv" > "$tmp/dp.log" 2>&1 ||
    { cat "$tmp/dp.log"; echo "FAIL: train_mlp"; exit 1; }
}

case $what in
schedules)
  reference
  for sched in gpipe 1f1b; do
    mkdir "$tmp/trace_$sched"
    out=$(PATHFLOW_TRACE_DIR="$tmp/trace_$sched" \
          run_pipe 2 "$sched" -x PATHFLOW_TRACE_DIR --schedule "$sched" --microbatches 4 --bubble) ||
      { printf '%s\n' "$out"; exit 1; }
    printf '%s\n' "$out"
    same_losses "$tmp/dp.csv" "$tmp/$sched.csv" "$sched, 2 stages" || exit 1
    b=$(printf '%s\n' "$out" | sed -n 's/.*bubble fraction measured \([0-9.]*\).*/\1/p')
    [ -n "$b" ] || { echo "FAIL: $sched: no measured bubble"; exit 1; }
    awk -v b="$b" 'BEGIN { exit !(b >= 0 && b <= 1) }' || { echo "FAIL: bubble $b"; exit 1; }
    # The order stage 0's device really ran step 5's micro-batches in, from
    # the timeline: F<k> for a forward op of micro-batch k, B<k> backward.
    order=$(grep '"pid":0,"tid":0,' "$tmp/trace_$sched/pathflow-trace.json" | grep '"step":5,' |
      sed -n 's/^{"name":"mb\([0-9]*\)\/s0\/\([^"]*\)".*"ts":\([0-9.]*\).*/\3 \1 \2/p' | sort -n |
      awk '{ k = ($3 ~ /grad/ ? "B" : "F") $2; if (k != last) printf "%s%s", (n++ ? " " : ""), k; last = k }')
    case $sched in
      gpipe) want="F0 F1 F2 F3 B0 B1 B2 B3" ;;
      1f1b) want="F0 F1 B0 F2 B1 F3 B2 B3" ;;
    esac
    [ "$order" = "$want" ] ||
      { echo "FAIL: $sched: stage 0 ran \"$order\", expected \"$want\""; exit 1; }
    echo "ok: $sched: stage 0 ran $order"
  done ;;
hybrid)
  # dp 2: stage 0's two devices each hold half the data, as one rank's two
  # devices do.
  reference --devices 2
  out=$(run_pipe 4 hybrid --dp 2 --pp 2 --schedule 1f1b) || { printf '%s\n' "$out"; exit 1; }
  printf '%s\n' "$out"
  printf '%s\n' "$out" | grep -q "2 stages x 2 replicas" || { echo "FAIL: not 2 x 2"; exit 1; }
  same_losses "$tmp/dp.csv" "$tmp/hybrid.csv" "hybrid dp 2 x pp 2" || exit 1 ;;
memory)
  for m in 4 8; do
    out=$("$mpirun" --oversubscribe -np 2 "$pipe" --limit-steps 1 --epochs 1 --microbatches $m 2>&1) ||
      { printf '%s\n' "$out"; echo "FAIL: M=$m"; exit 1; }
    printf '%s\n' "$out" | grep 'peak activation memory'
    printf '%s\n' "$out" | awk -v m=$m '
      /peak activation memory/ {
        for (i = 1; i < NF; i++) { if ($i == "gpipe") g = $(i + 1); if ($i == "1f1b") o = $(i + 1) }
        n++; gs += g; os += o; if ($2 == "0") { g0 = g; o0 = o }
      }
      END {
        if (n != 2) { print "FAIL: no peak memory lines"; exit 1 }
        if (!(o0 < g0)) { printf "FAIL: M=%d stage 0: 1f1b %s KiB not below gpipe %s KiB\n", m, o0, g0; exit 1 }
        if (!(os < gs)) { printf "FAIL: M=%d all stages: 1f1b %s KiB not below gpipe %s KiB\n", m, os, gs; exit 1 }
        printf "ok: M=%d: 1f1b %.1f KiB < gpipe %.1f KiB on stage 0, %.1f < %.1f over both\n", m, o0, g0, os, gs }' || exit 1
  done ;;
*) echo "usage: pipeline_check.sh schedules|hybrid|memory MPIRUN TRAIN_MLP TRAIN_PIPELINE"; exit 2 ;;
esac
echo "PASS: $what"
