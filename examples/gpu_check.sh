#!/bin/sh
# gpu_check.sh TRAIN_MLP [PLUGIN.so]: 60 steps of train_mlp with the model on
# GPUs (--device gpu; the data set read on CPUs and moved to the GPUs once)
# against the same run on as many CPU devices. With PLUGIN.so (2 guarded
# stand-in GPUs, tests/plugin), whose kernels are the CPU kernels on memory
# the host cannot touch, every per-step loss and accuracy (--metrics, every
# bit of an f32) must be the same. Without it, on the first real GPU
# (PATHFLOW_CUDA=1; exit 77 without an NVIDIA driver), cuBLAS sums in
# another order than OpenBLAS: each loss within 1e-3 of the CPU's.
set -u
train=$1 plugin=${2:-}
args="--limit-steps 60 --epochs 1 --seed 3"
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"; exit 77
fi
if [ -n "$plugin" ]; then
  export PATHFLOW_DEVICE_PLUGINS="$plugin" PATHFLOW_CUDA=0 PATHFLOW_GUARDED_GPUS=2
  args="$args --devices 2"
else
  [ -e /proc/driver/nvidia/version ] || { echo "SKIP: no GPU (no NVIDIA driver)"; exit 77; }
  export PATHFLOW_CUDA=1 PATHFLOW_CUDA_DEVICES=0
fi
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
cpu=$("$train" $args --metrics "$tmp/cpu.csv" 2>&1) || { printf '%s\n' "$cpu"; echo "FAIL: CPU run"; exit 1; }
gpu=$("$train" $args --device gpu --metrics "$tmp/gpu.csv" 2>&1) ||
  { printf '%s\n' "$gpu"; echo "FAIL: GPU run"; exit 1; }
printf 'CPU:\n%s\nGPU:\n%s\n' "$cpu" "$gpu"
[ "$(grep -c '^step,' "$tmp/gpu.csv")" -eq 60 ] || { echo "FAIL: no per-step metrics"; exit 1; }
if [ -n "$plugin" ]; then
  cmp "$tmp/cpu.csv" "$tmp/gpu.csv" ||
    { diff "$tmp/cpu.csv" "$tmp/gpu.csv" | head; echo "FAIL: the GPU run computed something else"; exit 1; }
  echo "PASS: 60 steps on 2 stand-in GPUs, bit for bit the CPU run"
else
  paste -d, "$tmp/cpu.csv" "$tmp/gpu.csv" | awk -F, '
    $1 == "step" { d = $4 - $9; if (d < 0) d = -d; if (d > 1e-3 * ($4 > 1 ? $4 : 1)) bad++; n++ }
    END { if (n != 60 || bad) { printf "FAIL: %d of %d losses differ by more than 1e-3\n", bad, n; exit 1 } }' ||
    exit 1
  echo "PASS: 60 steps on a GPU, every loss within 1e-3 of the CPU run"
fi
