#!/usr/bin/env bash
# The benchmarks that run under mpirun, each beside its raw-MPI baseline in
# the same job (see docs/performance.md):
#
#   transfer     2 ranks        point-to-point bandwidth and latency
#   dispatch     2 and 4 ranks  Pathways' OpByOp / Chained / Fused
#   granularity  2 ranks        Task Bench 1-D stencil, efficiency and METG
#   collectives  2 and 4 ranks  allreduce, broadcast, all-to-all, allgather +
#                               reduce-scatter against MPI's collectives
#
# Usage: bench/run_mpi.sh [BUILD_DIR] [BENCH...]
#   BUILD_DIR  pathflow build directory (default: build-mpibench under the
#              repository root); configured (Release, no tests) and built if
#              needed.
#   BENCH      any of transfer, dispatch, granularity, collectives (default:
#              all four).
# Environment:
#   REPS        repetitions per figure, passed as -r (default: each
#               program's own: 5, 5, 3, 3)
#   IDLE_WAIT_S before each job, wait up to this long for the machine to be
#               >= 90% idle over 2 s (default 120; 0: do not wait). Other
#               jobs on a small machine distort MPI figures badly.
#   PATHFLOW_*  passed to every rank (mpirun -x), e.g. PATHFLOW_SPIN_US.
#   MPIRUN_ARGS extra mpirun arguments.
#
# mpirun runs with --oversubscribe (4 ranks on a 2-core machine) and
# --bind-to none: a pathflow rank has a loop thread and a device worker that
# must be free to run on any core; binding a rank to one core would put
# both on it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$root/build-mpibench
if [[ $# -gt 0 && $1 != transfer && $1 != dispatch && $1 != granularity &&
      $1 != collectives ]]; then
  build=$1
  shift
fi
benches=("$@")
((${#benches[@]})) || benches=(transfer dispatch granularity collectives)
IDLE_WAIT_S=${IDLE_WAIT_S:-120}

if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPF_BUILD_TESTS=OFF >/dev/null
fi
jobs=$(nproc)
((jobs > 2)) && jobs=2
cmake --build "$build" --target "${benches[@]}" -j "$jobs" >/dev/null

if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mpi_env=()
while IFS='=' read -r name _; do
  mpi_env+=(-x "$name")
done < <(env | grep -E '^PATHFLOW_[A-Z0-9_]*=' || true)
# shellcheck disable=SC2206
extra=(${MPIRUN_ARGS:-})
reps=()
[[ -n ${REPS:-} ]] && reps=(-r "$REPS")

# Percentage of CPU time idle over the next 2 seconds, all CPUs.
idle_pct() {
  local a b
  read -r -a a < <(grep '^cpu ' /proc/stat)
  sleep 2
  read -r -a b < <(grep '^cpu ' /proc/stat)
  local total=0 idle
  for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
  idle=$((b[4] - a[4] + b[5] - a[5]))
  echo $((total > 0 ? 100 * idle / total : 100))
}

wait_idle() {
  ((IDLE_WAIT_S > 0)) || return 0
  local waited=0 pct
  while :; do
    pct=$(idle_pct)
    ((pct >= 90)) && { echo "# machine ${pct}% idle before the run"; return 0; }
    if ((waited >= IDLE_WAIT_S)); then
      echo "# WARNING: machine only ${pct}% idle after waiting ${waited} s: figures are disturbed"
      return 0
    fi
    waited=$((waited + 2))
  done
}

launch() { # NP PROGRAM ARGS...
  local np=$1 prog=$2
  shift 2
  mpirun --oversubscribe --bind-to none -np "$np" "${mpi_env[@]}" "${extra[@]}" \
    "$build/bench/$prog" "${reps[@]}" "$@"
}

# Each benchmark twice: its MPI baseline alone in a job at MPI_THREAD_SINGLE
# (-R: as a hand-written MPI program runs; Open MPI locks in every call
# above SINGLE), then the pathflow job, whose own baseline runs at
# SERIALIZED as pathflow's MPI does. dispatch takes the first job's rate
# (-B) for a second ratio column.
run() { # NP PROGRAM ARGS...
  local np=$1 prog=$2 raw
  local more=()
  shift 2
  wait_idle
  echo "== mpirun -np $np $prog -R $*"
  raw=$(launch "$np" "$prog" -R "$@")
  echo "$raw"
  if [[ $prog == dispatch ]]; then
    more=(-B "$(sed -n 's/.*: \([0-9.]*\) computations\/s$/\1/p' <<<"$raw")")
  fi
  echo "== mpirun -np $np $prog $* ${more[*]}"
  launch "$np" "$prog" "$@" "${more[@]}"
  echo
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "# $(nproc) CPUs ($cpu), Linux $(uname -r), $(mpirun --version | head -n 1)"
env | grep -E '^PATHFLOW_' | sed 's/^/# /' || true
echo
for b in "${benches[@]}"; do
  case $b in
    transfer) run 2 transfer ;;
    dispatch) run 2 dispatch; run 4 dispatch ;;
    granularity) run 2 granularity ;;
    collectives) run 2 collectives; run 4 collectives ;;
    *) echo "run_mpi.sh: unknown benchmark $b" >&2; exit 2 ;;
  esac
done
