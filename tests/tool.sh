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
# Bad input is refused with a message, not a crash.
if "$tool" plan "$dir/nope.pb" 2>/dev/null; then echo "FAIL: missing file accepted"; exit 1; fi
head -c 100 /dev/urandom >"$dir/junk.pb"
if "$tool" plan "$dir/junk.pb" 2>"$dir/err.txt"; then echo "FAIL: junk accepted"; exit 1; fi
grep -q "pathflow plan" "$dir/err.txt"
echo "ok: pathflow example/plan/--dot"
