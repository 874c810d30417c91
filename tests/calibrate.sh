#!/bin/sh
# pathflow calibrate: measures this machine on 2 ranks and writes a cluster
# file that loads, whose figures are the measurements (not the built-in
# placeholders), and that the `local` preset then reads.
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$tool" calibrate "$dir/local.json" --reps 3 >"$dir/out.txt" 2>&1 || { cat "$dir/out.txt"; exit 1; }
cat "$dir/out.txt"
grep -q "^wrote $dir/local.json: cluster local, 2 devices" "$dir/out.txt"
"$tool" cluster check "$dir/local.json" | grep -q "^cluster local ($dir/local.json): 1 host, 2 ranks"
# Every figure is a measured number, not the placeholders' strings with units.
for key in f32 memory_bandwidth bandwidth latency op_dispatch transfer step; do
  grep -Eq "\"$key\": [0-9.e+-]+" "$dir/local.json" || { echo "FAIL: $key not a number"; exit 1; }
done
python3 - "$dir/local.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
t = c["device_types"]["core"]
assert t["flops"]["f32"] > 1e8, t            # a core does more than 0.1 GFLOP/s
assert t["memory_bandwidth"] > 1e8, t
assert c["links"]["intra_host"]["bandwidth"] > 1e7, c["links"]
assert 0 < c["runtime"]["step"] < 0.1, c["runtime"]  # a step costs something, under 100 ms
PY
# The local preset reads the file named by PATHFLOW_LOCAL_CLUSTER.
PATHFLOW_LOCAL_CLUSTER="$dir/local.json" "$tool" cluster check local |
  grep -q "^cluster local (preset, from $dir/local.json): 1 host, 2 ranks" || { echo "FAIL: the local preset ignored the file"; exit 1; }
# ... and so does `cluster show local`, which prints that file.
PATHFLOW_LOCAL_CLUSTER="$dir/local.json" "$tool" cluster show local >"$dir/shown.json" 2>"$dir/shown.err"
cmp -s "$dir/shown.json" "$dir/local.json" || { echo "FAIL: cluster show local did not print the calibrated file"; exit 1; }
grep -q "local is $dir/local.json" "$dir/shown.err" || { echo "FAIL: cluster show local did not say where it came from"; exit 1; }
# bench/sim_fidelity on the file: every graph measured and simulated, one row each.
if [ -n "${2:-}" ]; then
  mpirun --oversubscribe --bind-to none -np 2 -x PATHFLOW_CPU_DEVICES=1 "$2" -c "$dir/local.json" -r 3 \
    >"$dir/fid.txt" 2>&1 || { cat "$dir/fid.txt"; exit 1; }
  cat "$dir/fid.txt"
  for g in chain dp_step pipeline allreduce; do
    grep -Eq "^$g +2 +[0-9]+\.[0-9]+ +[0-9]+\.[0-9]+ +[+-][0-9]+\.[0-9]%$" "$dir/fid.txt" ||
      { echo "FAIL: sim_fidelity: no row for $g"; exit 1; }
  done
  awk '$2 == 2 && ($3 <= 0 || $4 <= 0) { bad = 1 } END { exit bad }' "$dir/fid.txt" ||
    { echo "FAIL: sim_fidelity: a makespan of 0"; exit 1; }
fi
# Under mpirun it refuses, saying why, rather than launch a job per rank.
if OMPI_COMM_WORLD_SIZE=2 "$tool" calibrate "$dir/nested.json" >"$dir/nested.txt" 2>&1; then
  echo "FAIL: calibrate ran under a launcher's environment"; exit 1
fi
grep -q "run it without mpirun" "$dir/nested.txt" || { cat "$dir/nested.txt"; exit 1; }
echo "ok: calibrate"
