#!/usr/bin/env bash
# Local dispatch overhead: pathflow's bench/overhead beside StarPU's own
# empty-task microbenchmarks (Debian package starpu-examples), same number of
# tasks and of CPU workers. See docs/performance.md.
#
# Usage: bench/overhead.sh [BUILD_DIR]
#   BUILD_DIR  pathflow build directory (default: build, under the repository
#              root); configured (Release) and built if needed.
# Environment:
#   N        ops / tasks per run          (default 10000)
#   K        timed pathflow executions    (default 50)
#   DEVICES  pathflow devices = STARPU_NCPU (default: nproc)
#   REPEAT   runs of each StarPU program; the median is shown (default 5)
#   STARPU_SCHED  passed through to StarPU (unset: StarPU's default policy)
#
# Only this script installs starpu-examples (apt-get, needs root); the library
# build never depends on it. If it cannot be installed, the StarPU half is
# skipped with the reason and the script still exits 0.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
N=${N:-10000}
K=${K:-50}
DEVICES=${DEVICES:-$(nproc)}
REPEAT=${REPEAT:-5}

# ---- pathflow -------------------------------------------------------------
if [[ ! -f $build/CMakeCache.txt ]]; then
  cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPF_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$build" --target overhead -j "$(nproc)" >/dev/null

build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
echo "== pathflow (${build_type:-no build type} build): $build/bench/overhead -n $N -k $K -d $DEVICES"
pf_out=$("$build/bench/overhead" -n "$N" -k "$K" -d "$DEVICES")
echo "$pf_out"

rows=()
while read -r c _ _ us; do
  rows+=("pathflow $c $us")
done < <(echo "$pf_out" | awk 'NR > 1 && $1 !~ /^#/')

print_table() {
  echo
  echo "== per-op overhead, $N ops, $DEVICES devices ($(nproc) cores)"
  printf '%-9s %-36s %10s\n' system case us_per_op
  for r in "${rows[@]}"; do
    # shellcheck disable=SC2086
    printf '%-9s %-36s %10s\n' $r
  done
}

# ---- StarPU ---------------------------------------------------------------
skip() {
  echo
  echo "StarPU skipped: $*"
  print_table
  exit 0
}

if ! dpkg -s starpu-examples >/dev/null 2>&1; then
  command -v apt-get >/dev/null || skip "apt-get not found (not a Debian system?)"
  [[ $(id -u) -eq 0 ]] || skip "starpu-examples is not installed and installing needs root" \
    "(run: sudo apt-get install -y starpu-examples)"
  echo "== installing starpu-examples"
  log=$(mktemp)
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q starpu-examples >"$log" 2>&1; then
    # The package lists may be missing or stale: refresh once and retry.
    if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -q starpu-examples; } >"$log" 2>&1; then
      why=$(grep -E '^(E|W):' "$log" | head -n 2 | tr '\n' ' ')
      rm -f "$log"
      skip "apt-get install starpu-examples failed: ${why:-see apt-get output}"
    fi
  fi
  rm -f "$log"
fi

find_example() {
  dpkg -L starpu-examples | grep -E "/$1\$" | head -n 1
}
sync_bin=$(find_example tasks_overhead)
async_bin=$(find_example async_tasks_overhead)
[[ -x $sync_bin && -x $async_bin ]] ||
  skip "tasks_overhead or async_tasks_overhead not found in starpu-examples"

export STARPU_NCPU=$DEVICES STARPU_NCUDA=0 STARPU_NOPENCL=0 STARPU_SILENT=1

# The first StarPU run on a machine calibrates the bus model ($HOME/.starpu):
# do it outside the measurement.
"$async_bin" -i 100 >/dev/null 2>&1 || true

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.3f\n", v[int((NR + 1) / 2)] }'; }

# Runs "$@" REPEAT times; prints the median of the number after each label.
starpu_runs() {
  local label_total=$1 label_exec=$2
  shift 2
  local totals=() execs=() out
  for ((i = 0; i < REPEAT; i++)); do
    out=$("$@" 2>&1) || { echo "StarPU: $* failed: $(echo "$out" | tail -n 1)" >&2; return 1; }
    totals+=("$(echo "$out" | awk -v l="$label_total" 'index($0, l) == 1 { print $(NF - 1) }')")
    [[ -n $label_exec ]] &&
      execs+=("$(echo "$out" | awk -v l="$label_exec" 'index($0, l) == 1 { print $(NF - 1) }')")
  done
  echo "$(printf '%s\n' "${totals[@]}" | median) $( ((${#execs[@]})) && printf '%s\n' "${execs[@]}" | median)"
}

echo
echo "== StarPU $(dpkg-query -W -f '${Version}' starpu-examples): STARPU_NCPU=$DEVICES" \
     "STARPU_SCHED=${STARPU_SCHED:-<default>}, -i $N, median of $REPEAT runs"
echo "   $sync_bin: chain of $N empty tasks (tag dependencies), submit + execute"
echo "   $async_bin: $N independent empty tasks, submit + wait_for_all"
if res=$(starpu_runs "Per task:" "Per task execution:" "$sync_bin" -i "$N"); then
  read -r total exec <<<"$res"
  rows+=("starpu chain/tasks_overhead $total" "starpu chain/tasks_overhead[execution] $exec")
fi
if res=$(starpu_runs "Per task:" "" "$async_bin" -i "$N"); then
  read -r total _ <<<"$res"
  rows+=("starpu independent/async_tasks_overhead $total")
fi
print_table
