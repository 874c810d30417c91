#!/bin/sh
# Runs every fuzzer for SECONDS each, from the seed corpus plus whatever an
# earlier run left in BUILD_DIR/fuzz/corpus. Exits non-zero if a fuzzer
# finds a crash, a leak, a timeout or an out-of-memory (artifacts are left
# in BUILD_DIR/fuzz/artifacts).
#
# usage: tests/fuzz/run.sh BUILD_DIR SECONDS [TIMEOUT]
#   the build dir comes from
#   CC=clang cmake -S . -B BUILD_DIR -DPF_BUILD_FUZZ=ON -DPF_BUILD_TESTS=OFF
#   TIMEOUT (default 120): seconds one input may take before it counts as a
#   hang. Inputs run in well under a second; the limit only has to catch an
#   endless loop. 10 s (the old limit) failed on loaded machines, where ASan
#   with a leak check per input, on two cores shared by several jobs, stalled
#   an input that replays in 0.1-0.3 s past it.
#
# Seeds: tests/fuzz/corpus/TARGET (kept in the repository: inputs the
# fuzzers found that reach new code, minimized) and what make_seeds writes
# (valid messages, plans and graphs of the current wire format).
set -u
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 BUILD_DIR SECONDS [TIMEOUT]" >&2
  exit 2
fi
build=$1
secs=$2
timeout=${3:-120}
repo_corpus=$(cd "$(dirname "$0")" && pwd)/corpus
bin=$build/tests/fuzz
work=$build/fuzz
for f in make_seeds fuzz_plan fuzz_graph fuzz_msg fuzz_frames fuzz_chakra fuzz_cluster; do
  if [ ! -x "$bin/$f" ]; then
    echo "run.sh: $bin/$f missing: build with -DPF_BUILD_FUZZ=ON first" >&2
    exit 2
  fi
done
mkdir -p "$work/artifacts" || exit 2
"$bin/make_seeds" "$work/seeds" || exit 1

# LeakSanitizer runs at the end of every input (Open MPI's own allocations,
# which it keeps until exit, suppressed); abort on UBSan findings.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
# fuzz_frames and fuzz_cluster have no generated seeds: their corpus is in
# the repository.
mkdir -p "$work/seeds/frames" "$work/seeds/cluster"
for t in plan graph msg frames chakra cluster; do
  mkdir -p "$work/corpus/$t"
  echo "== fuzz_$t for ${secs}s"
  # New inputs go to the first folder (the build's); the others are read.
  # fuzz_frames runs MPI, whose plugins have no frame pointers: only the
  # slow unwinder sees through them to the suppressions.
  asan=$ASAN_OPTIONS max_len=
  [ "$t" = frames ] && asan=$ASAN_OPTIONS:fast_unwind_on_malloc=0
  # Room for frames longer than the control receive (8193 bytes).
  [ "$t" = frames ] && max_len=-max_len=40000
  ASAN_OPTIONS=$asan "$bin/fuzz_$t" "$work/corpus/$t" "$work/seeds/$t" "$repo_corpus/$t" \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout="$timeout" $max_len \
    -artifact_prefix="$work/artifacts/$t-" -print_final_stats=1 \
    >"$work/fuzz_$t.log" 2>&1
  rc=$?
  grep -E "^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)" \
    "$work/fuzz_$t.log"
  if [ $rc -ne 0 ]; then
    echo "fuzz_$t FAILED (exit $rc): see $work/fuzz_$t.log" >&2
    tail -n 40 "$work/fuzz_$t.log" >&2
    status=1
  fi
done
exit $status
