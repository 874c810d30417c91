#!/bin/sh
# train_check.sh MPIRUN TRAIN_MLP: 150 steps of train_mlp on Fashion-MNIST on
# one rank with two devices, then on 2 ranks of one device (the batch and
# the data set split over the two devices either way: each device keeps its
# part of the rows). Passes when both exit 0, the loss falls below 0.8, and
# the 2-rank run prints the same loss and accuracy lines as the 1-rank run:
# spreading the devices over ranks must not change what is computed beyond
# float rounding (the lines print 4 digits).
set -u
mpirun=$1 train=$2
args="--limit-steps 150 --epochs 1 --seed 3"
if [ ! -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Debian's dataset-fashion-mnist is not installed"; exit 77
fi
one=$("$train" $args --devices 2 2>&1) || { printf '%s\n' "$one"; echo "FAIL: 1 rank"; exit 1; }
two=$("$mpirun" --oversubscribe -np 2 "$train" $args 2>&1) ||
  { printf '%s\n' "$two"; echo "FAIL: 2 ranks"; exit 1; }
printf '1 rank:\n%s\n2 ranks:\n%s\n' "$one" "$two"
keep() { printf '%s\n' "$1" | tr '\r' '\n' | grep -oE 'step [0-9]+/[0-9]+ loss [0-9.]+ train acc [0-9.]+|test accuracy [0-9.]+'; }
a=$(keep "$one") b=$(keep "$two")
[ -n "$a" ] || { echo "FAIL: no loss lines"; exit 1; }
[ "$a" = "$b" ] || { echo "FAIL: 2 ranks computed something else"; exit 1; }
last=$(printf '%s\n' "$a" | grep -oE 'loss [0-9.]+' | tail -n 1 | cut -d' ' -f2)
awk -v l="$last" 'BEGIN { exit !(l < 0.8) }' || { echo "FAIL: loss $last not below 0.8"; exit 1; }
echo "PASS: loss $last, the same on 1 and 2 ranks"
