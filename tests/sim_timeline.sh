#!/bin/sh
# pathflow sim --svg and --compare: the Gantt chart is well-formed SVG with
# one row per device and one per link; the trace's link counters add up to
# the bytes the links carried; a simulation compared with itself has no error; a
# real run's layout (PATHFLOW_TRACE) is read, its steps timed and its ops
# matched; another cluster's simulation differs; bad traces are refused.
set -eu
tool=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$tool" example stencil "$dir/st.pb" --devices 8 --steps 3 >/dev/null
"$tool" sim --cluster dgx-h100 --devices 8 "$dir/st.pb" --trace "$dir/sim.json" \
  --svg "$dir/st.svg" >"$dir/out.txt"
grep -q "^wrote $dir/st.svg" "$dir/out.txt"
python3 - "$dir/st.svg" <<'PY'
import sys, xml.etree.ElementTree as E
ns = "{http://www.w3.org/2000/svg}"
root = E.parse(sys.argv[1]).getroot()            # well-formed, or this raises
rows = [g for g in root.iter(ns + "g") if g.get("class") == "device"]
assert [g.get("data-device") for g in rows] == [str(d) for d in range(8)], rows
for g in rows:                                   # every device computes something
    assert len(g.findall(ns + "rect")) >= 6, (g.get("data-device"), len(g.findall(ns + "rect")))
links = [g for g in root.iter(ns + "g") if g.get("class") == "link"]
assert len(links) == 16, len(links)              # each device's port out and in
assert all(g.findall(ns + "rect") for g in links)
PY
# The trace's link rows: a counter per link that carried bytes; over the
# run they add up to what the report says the intra-host links carried,
# twice (a transfer leaves by one port and enters by another).
python3 - "$dir/sim.json" "$dir/out.txt" <<'PY'
import json, re, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
want = float(re.search(r"link bytes: intra-host (\S+),", open(sys.argv[2]).read()).group(1))
rows = {}
for e in ev:
    if e["ph"] == "C":
        assert e["pid"] == 1 << 30, e
        rows.setdefault(e["name"], []).append((e["ts"], e["args"]["GB/s"]))
assert len(rows) == 16 and "device 7 in" in rows, sorted(rows)
total = 0
for samples in rows.values():
    assert samples[-1][1] == 0                    # every link ends idle
    for (t0, v), (t1, _) in zip(samples, samples[1:]):
        total += v * (t1 - t0) * 1e3              # GB/s x us = 1000 bytes
assert abs(total - 2 * want) <= 1e-3 * want, (total, want)
PY
# Against itself: every step and every op exact.
"$tool" sim --cluster dgx-h100 --devices 8 "$dir/st.pb" --compare "$dir/sim.json" \
  --compare-out "$dir/both.json" >"$dir/cmp.txt"
cat "$dir/cmp.txt"
grep -q "^median step 1: .* error +0.0%" "$dir/cmp.txt"
grep -q "^ops matched: 48; mean absolute error: duration 0.000 us, start 0.000 us" "$dir/cmp.txt"
python3 - "$dir/both.json" <<'PY'
import json, sys
ev = json.load(open(sys.argv[1]))["traceEvents"]
names = {e["args"]["name"] for e in ev if e.get("name") == "process_name"}
assert "real: device 0" in names and "simulated: device 7" in names, names
real = [e for e in ev if e.get("ph") == "X" and e["pid"] < 100000]
sim = [e for e in ev if e.get("ph") == "X" and e["pid"] >= 100000]
assert len(real) == len(sim) > 0, (len(real), len(sim))
PY
# A real run's layout: ranks of 2 devices, a loop row, two steps, the second
# taking twice as long; and another executable that must be ignored.
python3 - "$dir/sim.json" "$dir/real.json" <<'PY'
import json, sys
ev = [e for e in json.load(open(sys.argv[1]))["traceEvents"] if e.get("ph") == "X"]
out = []
for r in range(4):
    out.append({"name": "process_name", "ph": "M", "pid": r, "args": {"name": "rank %d" % r}})
    for t in (0, 1):
        out.append({"name": "thread_name", "ph": "M", "pid": r, "tid": t, "args": {"name": "device %d" % t}})
for step, k in ((1, 1.0), (2, 2.0)):
    for e in ev:
        d = e["pid"]
        out.append({"name": e["name"], "cat": e["cat"], "ph": "X", "pid": d // 2,
                    "tid": 1000 if e["tid"] == 1 else d % 2, "ts": 1e6 * step + k * e["ts"],
                    "dur": k * e["dur"], "args": {"step": step, "executable": 3, "step_id": step}})
out.append({"name": "x", "cat": "copy", "ph": "X", "pid": 0, "tid": 0, "ts": 5, "dur": 1,
            "args": {"step": 1, "executable": 9, "step_id": 9}})
json.dump(out, open(sys.argv[2], "w"))
PY
"$tool" sim --cluster dgx-h100 --devices 8 "$dir/st.pb" --compare "$dir/real.json" >"$dir/cmp2.txt"
cat "$dir/cmp2.txt"
grep -q "^per step (executable 3;" "$dir/cmp2.txt"
grep -Eq "^ +1 .* [+-]0\.0%$" "$dir/cmp2.txt"
grep -Eq "^ +2 .* -50\.0%$" "$dir/cmp2.txt"
grep -q "^ops matched: 48;" "$dir/cmp2.txt"
# Another cluster's simulation of the same graph is not exact.
"$tool" sim --cluster palm --devices 8 "$dir/st.pb" --compare "$dir/sim.json" >"$dir/cmp3.txt"
if grep -q "mean absolute error: duration 0.000 us, start 0.000 us" "$dir/cmp3.txt"; then
  echo "FAIL: two clusters' simulations compared as equal"; exit 1
fi
# Bad traces: an error naming the file, not a crash.
if "$tool" sim --cluster dgx-h100 --devices 8 "$dir/st.pb" --compare "$dir/none.json" 2>"$dir/err.txt" >/dev/null; then
  echo "FAIL: a missing trace was accepted"; exit 1
fi
grep -q "none.json" "$dir/err.txt"
printf '[{"ph":"X","name":"a","pid":0}]' >"$dir/short.json"
if "$tool" sim --cluster dgx-h100 --devices 8 "$dir/st.pb" --compare "$dir/short.json" 2>"$dir/err.txt" >/dev/null; then
  echo "FAIL: an event without times was accepted"; exit 1
fi
grep -q "short.json:1: a complete event" "$dir/err.txt"
"$tool" example mlp "$dir/mlp.pb" --devices 8 >/dev/null
if "$tool" sim --cluster dgx-h100 --devices 8 "$dir/mlp.pb" --compare "$dir/sim.json" 2>"$dir/err.txt" >/dev/null; then
  echo "FAIL: another graph's trace was matched"; exit 1
fi
grep -q "no compute op of the real run's step matches" "$dir/err.txt"
echo "ok: sim --svg, --compare"
