#!/bin/sh
# The pathflow tool: sample graphs, plans for simulated clusters, Graphviz.
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$tool" example stencil "$dir/st.pb" --devices 8 --steps 3
"$tool" plan "$dir/st.pb" --cluster 2:2:2 --dot "$dir/st" >"$dir/out.txt"
cat "$dir/out.txt"
grep -q "^programs (48)" "$dir/out.txt"
grep -q "^rank 3:" "$dir/out.txt"
grep -q "bytes to rank" "$dir/out.txt"
grep -q "^peak memory per device" "$dir/out.txt"
grep -q "digraph plan" "$dir/st.plan.dot"
grep -q "digraph graph_" "$dir/st.graph.dot"
# A graph that needs more memory than the devices have is refused.
"$tool" example mlp "$dir/mlp.pb" --devices 4
if "$tool" plan "$dir/mlp.pb" --cluster 4:1:1 --memory 1000 2>"$dir/err.txt"; then
  echo "FAIL: a plan over the memory limit was accepted"; exit 1
fi
grep -q "PF_EMEMORY" "$dir/err.txt"
grep -q "its memory is 1000 bytes: pathflow plan --memory" "$dir/err.txt"
# Bad input is refused with a message, not a crash.
if "$tool" plan "$dir/nope.pb" 2>/dev/null; then echo "FAIL: missing file accepted"; exit 1; fi
head -c 100 /dev/urandom >"$dir/junk.pb"
if "$tool" plan "$dir/junk.pb" 2>"$dir/err.txt"; then echo "FAIL: junk accepted"; exit 1; fi
grep -q "pathflow plan" "$dir/err.txt"
# Every command answers --help (and -h, and `help COMMAND`): usage on stdout, exit 0.
for args in "--help" "-h" "help" "plan --help" "plan -h" "plan x.pb --help" \
            "example --help" "example -h" "help plan" "help example" "trace --help" \
            "help trace"; do
  # shellcheck disable=SC2086
  "$tool" $args >"$dir/help.txt" 2>"$dir/err.txt" || { echo "FAIL: pathflow $args"; exit 1; }
  grep -q "^usage: pathflow" "$dir/help.txt" || { echo "FAIL: pathflow $args: no usage"; exit 1; }
  [ ! -s "$dir/err.txt" ] || { echo "FAIL: pathflow $args wrote to stderr"; exit 1; }
done
"$tool" plan --help | grep -q -- "--memory" || { echo "FAIL: plan --help"; exit 1; }
if "$tool" plan >/dev/null 2>&1; then echo "FAIL: plan without a graph accepted"; exit 1; fi
# --memory takes units, all powers of 1024: a limit of k KiB just above the
# peak fits, the same number k read as bytes does not.
peak=$("$tool" plan "$dir/mlp.pb" --cluster 4:1:1 | awk '/^  device 0 /{print $NF}')
k=$(( (peak + 1023) / 1024 ))
for unit in K KB Ki KiB k kib; do
  "$tool" plan "$dir/mlp.pb" --cluster 4:1:1 --memory "$k$unit" >/dev/null ||
    { echo "FAIL: --memory $k$unit (>= peak $peak) refused"; exit 1; }
done
"$tool" plan "$dir/mlp.pb" --cluster 4:1:1 --memory 1M >/dev/null
if "$tool" plan "$dir/mlp.pb" --cluster 4:1:1 --memory "$k" 2>/dev/null; then
  echo "FAIL: --memory $k (bytes, < peak $peak) accepted"; exit 1
fi
# Bad values are refused naming the option and what it accepts (exit 2).
bad() { # bad EXPECTED_MESSAGE ARGS...: pathflow ARGS exits 2 with the message
  want=$1; shift
  rc=0; "$tool" "$@" >/dev/null 2>"$dir/err.txt" || rc=$?
  [ "$rc" -eq 2 ] || { echo "FAIL: pathflow $*: exit $rc, expected 2"; exit 1; }
  grep -q -- "$want" "$dir/err.txt" || { echo "FAIL: pathflow $*:"; cat "$dir/err.txt"; exit 1; }
}
for v in abc 1.5G "1 K" 1X 1KK -1 0 99999999999999999999; do
  bad "--memory \"$v\": expected a byte count" plan "$dir/mlp.pb" --memory "$v"
done
bad '--cluster "2:2:2x": expected' plan "$dir/mlp.pb" --cluster 2:2:2x
bad '--policy "wide": expected packed or spread' plan "$dir/mlp.pb" --policy wide
bad '--devices "4x": expected an integer' example mlp "$dir/x.pb" --devices 4x
bad '--steps "0": expected an integer' example mlp "$dir/x.pb" --steps 0
bad "usage: pathflow example" example mlp "$dir/x.pb" --devices
bad 'unknown command "nope"' nope
bad "usage: pathflow trace" trace "$dir/out.json"
if "$tool" trace "$dir/out.json" "$dir/nope.json" 2>"$dir/err.txt"; then
  echo "FAIL: trace of a missing file accepted"; exit 1
fi
grep -q "pathflow trace: cannot read $dir/nope.json" "$dir/err.txt"
# chart: a metrics CSV (as train_mlp --metrics writes it) drawn as SVG.
printf 'kind,epoch,step,loss,accuracy\n' >"$dir/m.csv"
awk 'BEGIN { for (s = 1; s <= 6; s++) printf "step,1,%d,%f,0.%d\n", s, 2.3 / s, s }' >>"$dir/m.csv"
echo "epoch,1,6,0,0.81" >>"$dir/m.csv"
"$tool" chart "$dir/m.csv" "$dir/m.svg"
grep -q "<svg" "$dir/m.svg"
[ "$(grep -c "<polyline" "$dir/m.svg")" -eq 3 ]
grep -q ">Training loss<" "$dir/m.svg"
grep -q "<circle" "$dir/m.svg"
echo "step,1,oops" >>"$dir/m.csv"
if "$tool" chart "$dir/m.csv" "$dir/m2.svg" 2>"$dir/err.txt"; then
  echo "FAIL: a bad metrics line was accepted"; exit 1
fi
grep -q "m.csv line 9: expected kind,epoch,step,loss,accuracy" "$dir/err.txt"
bad "usage: pathflow chart" chart "$dir/m.csv"
# Chakra traces: one per device of the cluster, each a GlobalMetadata then
# nodes (a varint length, then the message).
"$tool" plan "$dir/st.pb" --cluster 2:2:2 --export-chakra "$dir/ck" >"$dir/out.txt"
[ "$(ls "$dir"/ck.*.et | wc -l)" -eq 8 ] || { echo "FAIL: not 8 Chakra traces"; exit 1; }
grep -q "Chakra execution traces" "$dir/out.txt"
for f in "$dir"/ck.*.et; do [ -s "$f" ] || { echo "FAIL: empty $f"; exit 1; }; done
# pathflow sim: a graph on a preset, with a trace; the exported traces
# replayed give the same makespan; bad input is refused.
"$tool" sim --cluster local --example mlp --devices 2 --trace "$dir/sim.json" \
  --export-chakra "$dir/simck" >"$dir/sim.txt"
grep -q "^makespan: " "$dir/sim.txt"
grep -q "^bubble: [0-9.]*% of 2 computing devices x the makespan idle" "$dir/sim.txt"
grep -q "^peak memory (one execution's plan): [0-9.]* MiB at most (device [01])" "$dir/sim.txt"
grep -q '"traceEvents"' "$dir/sim.json"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$dir/sim.json" ||
  { echo "FAIL: the simulator's trace is not JSON"; exit 1; }
"$tool" sim --cluster local --import-chakra "$dir/simck" >"$dir/sim2.txt"
[ "$(grep "^makespan" "$dir/sim.txt")" = "$(grep "^makespan" "$dir/sim2.txt")" ] ||
  { echo "FAIL: replaying the exported traces gave another makespan"; exit 1; }
bad 'needs --cluster' sim --example mlp
# Workloads: runs of two tenants sent in stride order by weight (1:2).
"$tool" sim --cluster dgx-h100 --example mlp --devices 8 --runs 6 --tenant example:mlp@2 \
  >"$dir/wl.txt"
grep -q "^makespan: .* (12 runs)" "$dir/wl.txt"
[ "$(grep -c "^  run .* tenant 1:" "$dir/wl.txt")" -eq 6 ] ||
  { echo "FAIL: not 6 runs of the second tenant"; cat "$dir/wl.txt"; exit 1; }
[ "$(grep "^  run " "$dir/wl.txt" | head -6 | awk '{print $4}' | tr -d ':\n')" = "011011" ] ||
  { echo "FAIL: the runs were not sent in stride order"; cat "$dir/wl.txt"; exit 1; }
"$tool" sim --cluster palm --example pipeline --devices 16 --runs 2 --dispatch sequential \
  | grep -q "^pipeline .* 2 "
bad '--tenant "example:mlp@0": expected' sim --cluster local --example mlp --tenant example:mlp@0
bad '--dispatch "eager": expected parallel or sequential' sim --cluster local --example mlp \
  --dispatch eager
bad '--runs "0": expected' sim --cluster local --example mlp --runs 0
bad '--compare sets one execution' sim --cluster local --example mlp --runs 2 --compare x.json
# A graph that cannot be read, in a workload: an error naming it, no crash.
rc=0; "$tool" sim --cluster local "$dir/none.pb" --runs 2 2>"$dir/err.txt" >/dev/null || rc=$?
[ "$rc" -eq 1 ] && grep -q "cannot read $dir/none.pb" "$dir/err.txt" ||
  { echo "FAIL: a missing graph in a workload: exit $rc"; cat "$dir/err.txt"; exit 1; }
bad '--algo "fast": expected' sim --cluster local --example mlp --algo fast
if "$tool" sim --cluster nowhere.json --example mlp 2>"$dir/err.txt"; then
  echo "FAIL: a missing cluster file was accepted"; exit 1
fi
grep -q "nowhere.json" "$dir/err.txt"
# pathflow cluster: the presets load; a file's error names the field and line.
"$tool" cluster check palm >"$dir/cl.txt"
grep -q "^cluster palm (preset): 1536 hosts, 1536 ranks, 6144 devices, 2 islands" "$dir/cl.txt"
"$tool" cluster check dgx-h100 | grep -q "NIC         50 GB/s (400 Gb/s) each way"
"$tool" cluster show local >"$dir/local.json"
"$tool" cluster check "$dir/local.json" | grep -q "^cluster local ($dir/local.json): 1 host, 2 ranks"
sed 's/"4GiB"/-4/' "$dir/local.json" >"$dir/neg.json"
if "$tool" cluster check "$dir/neg.json" 2>"$dir/err.txt"; then echo "FAIL: a negative memory was accepted"; exit 1; fi
grep -q "neg.json:6: device_types.core.memory: -4 is negative" "$dir/err.txt"
if "$tool" cluster check nope 2>"$dir/err.txt"; then echo "FAIL: a missing file was accepted"; exit 1; fi
"$tool" cluster --help | grep -q "^usage: pathflow cluster check"
if "$tool" cluster frob x >/dev/null 2>&1; then echo "FAIL: cluster frob accepted"; exit 1; fi
echo "ok: pathflow example/plan/--dot/--help/--memory units/chart/--export-chakra/sim/cluster"
