#!/bin/bash
# checkpoint_check.sh MPIRUN TRAIN_MLP: exact resume of train_mlp on 2 ranks.
#   1. 60 steps uninterrupted: the reference losses.
#   2. Checkpoints every 20 steps; the job is killed with SIGKILL after step
#      50 (mid-run); --resume continues from step 40 and must print the
#      reference losses of steps 41-60 bit for bit.
#   3. The job is killed after step 40's checkpoint files are written but
#      before its manifest (during the checkpoint), and one of those files is
#      cut short: --resume must start from step 20, untouched, and again give
#      the reference losses.
#   4. A checkpoint of another model shape is refused, naming the mismatch.
#   Old step-N directories are pruned: after 2., the default keeps the last
#   two (step-40, step-60); after 3., --checkpoint-keep 1 only step-60.
set -u
mpirun=$1 train=$2
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"; exit 77
fi
dir=$(mktemp -d)
trap 'pkill -9 -f "$dir" 2>/dev/null; rm -rf "$dir"' EXIT
args=(--limit-steps 60 --epochs 1 --seed 5)
job() { "$mpirun" --oversubscribe -np 2 "$train" "${args[@]}" "$@"; }
steps() { grep '^step,' "$1" | cut -d, -f3,4; }
fail() { echo "FAIL: $*"; exit 1; }

job --metrics "$dir/ref.csv" >"$dir/ref.out" 2>&1 || { cat "$dir/ref.out"; fail "reference run"; }

# Runs a job that pauses after step $1, kills every rank with SIGKILL there.
killed_at() {
  local at=$1 out=$2; shift 2
  TRAIN_MLP_PAUSE_AT=$at job "$@" >"$out" 2>&1 &
  local pid=$! i
  for ((i = 0; i < 600; i++)); do
    grep -q "paused after step $at" "$out" && break
    sleep 0.1
  done
  grep -q "paused after step $at" "$out" || { cat "$out"; fail "the job never reached step $at"; }
  pkill -9 -f "$dir/ck" || true
  wait $pid 2>/dev/null || true
}

# 2. Killed mid-run.
killed_at 50 "$dir/kill1.out" --checkpoint "$dir/ck" --checkpoint-every 20 --metrics "$dir/k1.csv"
grep -q '^step=40$' "$dir/ck/manifest" || fail "manifest after the kill: $(cat "$dir/ck/manifest")"
job --checkpoint "$dir/ck" --checkpoint-every 20 --resume --metrics "$dir/r1.csv" >"$dir/r1.out" 2>&1 ||
  { cat "$dir/r1.out"; fail "resume after a kill mid-run"; }
grep -q "resumed from $dir/ck at step 40" "$dir/r1.out" || { cat "$dir/r1.out"; fail "did not resume at 40"; }
[ "$(steps "$dir/r1.csv")" = "$(steps "$dir/ref.csv" | tail -n 20)" ] ||
  { diff <(steps "$dir/r1.csv") <(steps "$dir/ref.csv" | tail -n 20); fail "losses after resume differ"; }

steps_kept() { (cd "$dir/ck" && ls -d step-* | sort -t- -k2 -n | tr '\n' ' '); }
[ "$(steps_kept)" = "step-40 step-60 " ] || fail "kept after the resumed run: $(steps_kept)"

# 3. Killed while writing a checkpoint.
rm -rf "$dir/ck"
killed_at 40 "$dir/kill2.out" --checkpoint "$dir/ck" --checkpoint-every 20 --metrics "$dir/k2.csv"
grep -q '^step=20$' "$dir/ck/manifest" || fail "manifest during the write: $(cat "$dir/ck/manifest")"
f=$(ls "$dir/ck/step-40/"* | head -n 1)
head -c 10 "$f" >"$f.cut" && mv "$f.cut" "$f"
job --checkpoint "$dir/ck" --checkpoint-every 20 --checkpoint-keep 1 --resume \
  --metrics "$dir/r2.csv" >"$dir/r2.out" 2>&1 ||
  { cat "$dir/r2.out"; fail "resume after a kill during a checkpoint"; }
grep -q "resumed from $dir/ck at step 20" "$dir/r2.out" || { cat "$dir/r2.out"; fail "did not resume at 20"; }
[ "$(steps "$dir/r2.csv")" = "$(steps "$dir/ref.csv" | tail -n 40)" ] ||
  { diff <(steps "$dir/r2.csv") <(steps "$dir/ref.csv" | tail -n 40); fail "losses after resume differ"; }

[ "$(steps_kept)" = "step-60 " ] || fail "kept with --checkpoint-keep 1: $(steps_kept)"

# 4. Another model shape.
if job --hidden 128 --checkpoint "$dir/ck" --resume >"$dir/r3.out" 2>&1; then
  fail "a checkpoint of another shape was accepted"
fi
grep -q "was written with hidden=256; this run has hidden=128" "$dir/r3.out" ||
  { cat "$dir/r3.out"; fail "no message naming the mismatch"; }
echo "PASS: resumed bit for bit after SIGKILL mid-run and during a checkpoint write; old checkpoints pruned; mismatch refused"
