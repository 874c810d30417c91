#!/usr/bin/env bash
# bench/gpu_train.sh [BUILD_DIR] [ROUNDS] [BATCH...]: the training step of
# examples/train_mlp (784-256-10, Adam) with its model on one GPU
# (--device gpu, PATHFLOW_CUDA=1, the first GPU) against the same step on one
# CPU device (--device cpu, OpenBLAS on one core) and on every core of the
# host (--devices N, data-parallel across its cores), in the same
# invocation, for each batch size (default 128 and 1024). Runs alternate
# ROUNDS times (3); the table shows each one's median samples/s from the
# 11th step on (train_mlp's last line) and the GPU's ratio to both.
# Needs a GPU (exit 77 without an NVIDIA driver). The data: Debian's
# dataset-fashion-mnist, or DATA=DIR, or, where neither is there (a GPU
# machine lent for minutes), random data of the same shape made by
# bench/fake_idx (the rate does not depend on the pixels). TRAIN_MLP and
# FAKE_IDX name the programs when they are not in BUILD_DIR (a bundle of
# scripts/gpu-check, which runs this).
set -euo pipefail
build=${1:-build} rounds=${2:-3}
shift $(( $# > 2 ? 2 : $# ))
batches=("$@")
[[ ${#batches[@]} -gt 0 ]] || batches=(128 1024)
train=${TRAIN_MLP:-$build/examples/train_mlp}
[[ -x $train ]] || { echo "gpu_train: no $train (build first)"; exit 2; }
[[ -e /proc/driver/nvidia/version ]] || { echo "gpu_train: no GPU (no NVIDIA driver): skipped"; exit 77; }
data=${DATA:-/usr/share/datasets/fashion-mnist}
if [[ ! -r $data/train-images-idx3-ubyte.gz ]]; then
  fake=${FAKE_IDX:-$build/bench/fake_idx}
  data=$(mktemp -d)
  trap 'rm -rf "$data"' EXIT
  "$fake" "$data" || { echo "gpu_train: no data set and no $fake"; exit 2; }
  echo "gpu_train: random data of Fashion-MNIST's shape (the data set is not installed)"
fi
cores=$(nproc)
rate() { grep -oE '[0-9]+ samples/s from step' | tail -n 1 | cut -d' ' -f1; }
median() { sort -n | awk '{ v[NR] = $1 } END { print NR ? v[int((NR + 1) / 2)] : 0 }'; }
printf '%-7s %14s %14s %14s %9s %9s\n' batch "GPU" "1 CPU core" "$cores CPU cores" "GPU/1" "GPU/$cores"
for b in "${batches[@]}"; do
  # Every core of the host: as many devices as divide the batch and the sets.
  n=$cores
  while (( n > 1 && (b % n != 0 || 10000 % n != 0) )); do n=$((n - 1)); done
  common=(--epochs 1 --limit-steps 300 --batch "$b" --seed 1 --data "$data")
  g=() c1=() cn=()
  for ((r = 0; r < rounds; r++)); do
    g+=("$(PATHFLOW_CUDA=1 PATHFLOW_CUDA_DEVICES=0 "$train" "${common[@]}" --device gpu 2>&1 | rate)")
    c1+=("$(PATHFLOW_CUDA=0 OPENBLAS_NUM_THREADS=1 "$train" "${common[@]}" --devices 1 2>&1 | rate)")
    cn+=("$(PATHFLOW_CUDA=0 OPENBLAS_NUM_THREADS=1 "$train" "${common[@]}" --devices "$n" 2>&1 | rate)")
  done
  mg=$(printf '%s\n' "${g[@]}" | median) m1=$(printf '%s\n' "${c1[@]}" | median)
  mn=$(printf '%s\n' "${cn[@]}" | median)
  awk -v b="$b" -v g="$mg" -v c="$m1" -v n="$mn" 'BEGIN {
    printf "%-7d %14d %14d %14d %9.2f %9.2f\n", b, g, c, n, c ? g / c : 0, n ? g / n : 0 }'
done
