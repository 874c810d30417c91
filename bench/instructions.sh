#!/usr/bin/env bash
# Instructions a step costs, counted (valgrind's callgrind), where the
# wall-clock benchmarks cannot see a change: these machines move between
# speeds within seconds, and two runs of the same binary differ by more than
# a change of a few percent. An instruction count does not move with them.
#
# bench/granularity's stencil on 2 ranks; rank 1 runs under callgrind, one
# profile per thread. The job runs twice, with R1 and R2 repetitions of
# STEPS steps; the difference divided by the steps in between is what one
# step costs, without the start, the plan's load and the end. Per thread:
# pathflow's loop thread (pf-loop: every op, transfer and poll of pathflow's
# step) and the main thread (the hand-written MPI loop of the same pattern,
# the baseline, and pathflow's client, idle while a step runs), split by
# library. The kernel is a busy wait of KERNEL_US, timed, so its count
# depends on how slow callgrind makes the clock: compare the other columns.
#
# Usage: bench/instructions.sh [BUILD_DIR]
#   BUILD_DIR  pathflow build directory (default: build); configured
#              (Release) and built if needed.
# Environment: STEPS (1000), R1 (1), R2 (4), KERNEL_US (0.2), TOP (25: the
# loop thread's functions listed).
#
# Only this script installs valgrind (apt-get, needs root); without it the
# script says so and exits 0.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
STEPS=${STEPS:-1000}
R1=${R1:-1}
R2=${R2:-4}
KERNEL_US=${KERNEL_US:-0.2}
TOP=${TOP:-25}

if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq valgrind >/dev/null 2>&1 || true
  fi
fi
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  echo "instructions: valgrind is not installed (apt-get install valgrind): nothing counted"
  exit 0
fi
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPF_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" --target granularity -j "$(nproc)" >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/rank1.sh" <<'EOF'
#!/usr/bin/env bash
if [[ ${OMPI_COMM_WORLD_RANK:-0} == 1 ]]; then
  exec valgrind -q --tool=callgrind --separate-threads=yes --callgrind-out-file="$CG_OUT" "$@"
fi
exec "$@"
EOF
chmod +x "$work/rank1.sh"

mpirun_args=(-np 2 --oversubscribe --bind-to none)
[[ $(id -u) -eq 0 ]] && mpirun_args+=(--allow-run-as-root)
for r in "$R1" "$R2"; do
  mpirun "${mpirun_args[@]}" -x CG_OUT="$work/cg.$r" "$work/rank1.sh" \
    "$build/bench/granularity" -p stencil -t "$STEPS" -r "$r" -l "$KERNEL_US" -s "$KERNEL_US" \
    >"$work/out.$r" 2>&1 || { cat "$work/out.$r"; exit 1; }
done

# Each thread's profile as "function<TAB>library<TAB>instructions" lines,
# and how often the loop polled (its polls per step depend on how long the
# other rank takes to answer, which callgrind changes).
for f in "$work"/cg."$R1"-* "$work"/cg."$R2"-*; do
  callgrind_annotate --auto=no --tree=calling "$f" 2>/dev/null |
    sed -n 's/.*> .*:poll_mpi (\([0-9,]*\)x).*/\1/p' | tr -d , | awk '{n += $1} END {print n + 0}' \
    >"$f.polls"
  callgrind_annotate --auto=no --inclusive=no "$f" 2>/dev/null |
    sed -n 's/^ *\([0-9,]*\) ([^)]*)  *\([^ ]*\) *\[\(.*\)\]$/\2\t\3\t\1/p' |
    awk -F'\t' '{n = $1; sub(/.*:/, "", n); l = $2; sub(/.*\//, "", l); gsub(",", "", $3);
                 print n "\t" l "\t" $3}' >"$f.tsv"
done

python3 - "$work" "$R1" "$R2" "$STEPS" "$TOP" "$KERNEL_US" <<'EOF'
import collections, glob, sys
work, r1, r2, steps, top, kernel = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
per = (int(r2) - int(r1)) * steps

def load(path):
    d = collections.Counter()
    for line in open(path):
        f, lib, n = line.rstrip("\n").split("\t")
        d[(f, lib)] += int(n)
    return d

# A run's threads by role: thread 1 is the main thread; pathflow's loop
# thread is the one that ran its poll (threads are numbered in the order
# they started, which Open MPI's own threads may change from run to run).
def threads(r):
    out = {}
    for p in glob.glob(f"{work}/cg.{r}-*.tsv"):
        d = load(p)
        fs = {f for f, _ in d}
        if "on_spin" in fs or "loop_main" in fs: out["pathflow loop"] = d
        elif p.endswith("-01.tsv"): out["main (MPI loop)"] = d
    return out

a, b = threads(r1), threads(r2)
def polls(r):
    return sum(int(open(p).read() or 0) for p in glob.glob(f"{work}/cg.{r}-*.polls"))

def group(lib):
    if lib.startswith("libpathflow"): return "pathflow"
    if lib.startswith(("libmpi", "mca_", "libopen-", "libpmix", "libevent", "libhwloc")): return "Open MPI"
    if lib.startswith(("libc.", "ld-linux", "libm.")): return "libc"
    if lib.startswith("granularity"): return "bench (kernel)"
    return "other"

cols = ["pathflow", "Open MPI", "libc", "bench (kernel)", "other"]
print(f"# instructions per step, bench/granularity stencil, 2 ranks, {steps} steps, "
      f"{kernel} us kernels; rank 1 under callgrind, runs of {r2} and {r1} repetitions")
print("%-18s %10s" % ("thread", "total") + "".join("%16s" % c for c in cols))
rows = {}
for name in ["main (MPI loop)", "pathflow loop"]:
    if name not in b: continue
    diff = collections.Counter({k: (b[name][k] - a.get(name, {}).get(k, 0)) / per for k in b[name]})
    rows[name] = diff
    by = collections.Counter()
    for (f, lib), v in diff.items(): by[group(lib)] += v
    print("%-18s %10.0f" % (name, sum(by.values())) + "".join("%16.0f" % by[c] for c in cols))
print("# the loop polled %.2f times a step; Open MPI's column and pathflow's polling (pf_mpi_progress, "
      "poll_mpi, cpu_claim...) grow with that, the functions run per op do not" % ((polls(r2) - polls(r1)) / per))
if "pathflow loop" in rows:
    print(f"# the loop thread's {top} costliest functions, instructions per step (self)")
    for (f, lib), v in sorted(rows["pathflow loop"].items(), key=lambda kv: -kv[1])[:top]:
        print("%10.1f  %-40s %s" % (v, f[:40], lib))
EOF
