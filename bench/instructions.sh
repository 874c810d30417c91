#!/usr/bin/env bash
# Instructions a unit of work costs, counted (valgrind's callgrind), where
# the wall-clock benchmarks cannot see a change: these machines move between
# speeds within seconds, and two runs of the same binary differ by more than
# a change of a few percent. An instruction count does not move with them.
#
# Jobs of 2 ranks; rank 1 runs under callgrind, one profile per thread.
# Each job runs twice, with R1 and R2 repetitions; the difference divided by
# the work done in between is what one unit costs, without the start, the
# plan's load and the end:
#   stencil  bench/granularity -p stencil, per step (STEPS steps a
#            repetition, kernels of KERNEL_US);
#   chained  bench/dispatch -k chained, per computation (a scalar allreduce
#            and an add; its repetitions last a time, so computations are
#            counted: the transport's collectives started on pathflow's
#            side (calls of its collective entry, t_collective, which
#            link-time optimization cannot inline: it is called through
#            the transport's table), the MPI_Allreduce calls on the
#            baseline's).
# Per thread: pathflow's loop thread (every op, transfer and poll of
# pathflow's) and the main thread (the hand-written MPI loop, the baseline;
# pathflow's client there is idle while the work runs), split by library
# (bench/instructions.py). The stencil's kernel is a timed busy wait, whose
# count depends on how slow callgrind makes the clock: compare the other
# columns.
#
# Usage: bench/instructions.sh [BUILD_DIR [stencil|chained ...]]
#   BUILD_DIR  pathflow build directory (default: build); configured
#              (Release) and built if needed.
# Environment: STEPS (1000), R1 (1), R2 (4), KERNEL_US (0.2), TOP (25: the
# loop thread's functions listed), IN_FLIGHT (32: the chained case's
# executions in flight, dispatch -w).
#
# Only this script installs valgrind (apt-get, needs root); without it the
# script says so and exits 0.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
shift || true
cases=("$@")
[[ ${#cases[@]} -gt 0 ]] || cases=(stencil chained)
STEPS=${STEPS:-1000}
R1=${R1:-1}
R2=${R2:-4}
KERNEL_US=${KERNEL_US:-0.2}
IN_FLIGHT=${IN_FLIGHT:-32}
TOP=${TOP:-25}

for c in "${cases[@]}"; do
  [[ $c == stencil || $c == chained ]] ||
    { echo "instructions: unknown case '$c' (stencil, chained)" >&2; exit 2; }
done
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq valgrind >/dev/null 2>&1 || true
  fi
fi
if ! command -v valgrind >/dev/null || ! command -v callgrind_annotate >/dev/null; then
  echo "instructions: valgrind is not installed (apt-get install valgrind): nothing counted"
  exit 0
fi
if ! command -v python3 >/dev/null; then
  echo "instructions: python3 is not installed (it makes the table): nothing counted"
  exit 0
fi
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPF_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" --target granularity dispatch -j "$(nproc)" >/dev/null

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

for c in "${cases[@]}"; do
  for r in "$R1" "$R2"; do
    if [[ $c == stencil ]]; then
      job=("$build/bench/granularity" -p stencil -t "$STEPS" -r "$r" -l "$KERNEL_US" -s "$KERNEL_US")
    else
      job=("$build/bench/dispatch" -k chained -r "$r" -w "$IN_FLIGHT")
    fi
    mpirun "${mpirun_args[@]}" -x CG_OUT="$work/$c.$r" "$work/rank1.sh" "${job[@]}" \
      >"$work/out.$c.$r" 2>&1 || { cat "$work/out.$c.$r"; exit 1; }
    # Per thread: "function<TAB>library<TAB>instructions" lines, and the
    # calls that count the work (and the loop's polls: how many a unit
    # depends on how long the other rank takes to answer).
    for f in "$work/$c.$r"-*; do
      callgrind_annotate --auto=no --tree=calling "$f" 2>/dev/null |
        sed -n 's/.*> *[^ ]*:\(poll_mpi\|t_collective\|PMPI_Allreduce\)[.a-z_0-9]* (\([0-9,]*\)x).*/\1 \2/p' |
        tr -d , >"$f.calls"
      # A function's lines inlined from other files come without their
      # library (callgrind_annotate names it once): instructions.py finds it.
      callgrind_annotate --auto=no --inclusive=no "$f" 2>/dev/null |
        sed -n -e 's/^ *\([0-9,]*\) ([^)]*)  *\([^ ]*\) *\[\(.*\)\]$/\2\t\3\t\1/p' \
          -e 't' -e 's/^ *\([0-9,]*\) ([^)]*)  *\([^ ]*:[^ ]*\)$/\2\t\t\1/p' >"$f.tsv"
    done
  done
  python3 "$root/bench/instructions.py" "$work" "$c" "$R1" "$R2" "$STEPS" "$KERNEL_US" "$TOP"
done
