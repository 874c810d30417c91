#!/bin/sh
# train_check.sh MPIRUN TRAIN_MLP: 150 steps of train_mlp on Fashion-MNIST on
# one rank with two devices, then on 2 ranks of one device (the batch and
# the data set split over the two devices either way: each device keeps its
# part of the rows). Passes when both exit 0, the loss falls below 0.8, and
# the 2-rank run prints the same loss and accuracy lines as the 1-rank run:
# spreading the devices over ranks must not change what is computed beyond
# float rounding (the lines print 4 digits). Then the 2-rank run again with
# --no-bucket (one allreduce per gradient instead of packed buckets): its
# per-step losses (--metrics, 9 digits: every bit of an f32) must equal the
# bucketed run's exactly, since each element is the same sum of two.
set -u
mpirun=$1 train=$2
args="--limit-steps 150 --epochs 1 --seed 3"
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"; exit 77
fi
one=$("$train" $args --devices 2 2>&1) || { printf '%s\n' "$one"; echo "FAIL: 1 rank"; exit 1; }
tmp=$(mktemp -d) && trap 'rm -rf "$tmp"' EXIT
two=$("$mpirun" --oversubscribe -np 2 "$train" $args --metrics "$tmp/bucket.csv" 2>&1) ||
  { printf '%s\n' "$two"; echo "FAIL: 2 ranks"; exit 1; }
plain=$("$mpirun" --oversubscribe -np 2 "$train" $args --no-bucket --metrics "$tmp/plain.csv" 2>&1) ||
  { printf '%s\n' "$plain"; echo "FAIL: 2 ranks, --no-bucket"; exit 1; }
printf '1 rank:\n%s\n2 ranks:\n%s\n' "$one" "$two"
keep() { printf '%s\n' "$1" | tr '\r' '\n' | grep -oE 'step [0-9]+/[0-9]+ loss [0-9.]+ train acc [0-9.]+|test accuracy [0-9.]+'; }
a=$(keep "$one") b=$(keep "$two")
[ -n "$a" ] || { echo "FAIL: no loss lines"; exit 1; }
[ "$a" = "$b" ] || { echo "FAIL: 2 ranks computed something else"; exit 1; }
[ "$(grep -c '^step,' "$tmp/bucket.csv")" -eq 150 ] || { echo "FAIL: no per-step metrics"; exit 1; }
cmp "$tmp/bucket.csv" "$tmp/plain.csv" ||
  { diff "$tmp/bucket.csv" "$tmp/plain.csv" | head; echo "FAIL: bucketed and unbucketed losses differ"; exit 1; }
last=$(printf '%s\n' "$a" | grep -oE 'loss [0-9.]+' | tail -n 1 | cut -d' ' -f2)
awk -v l="$last" 'BEGIN { exit !(l < 0.8) }' || { echo "FAIL: loss $last not below 0.8"; exit 1; }
echo "PASS: loss $last, the same on 1 and 2 ranks, bucketed or not bit for bit"
