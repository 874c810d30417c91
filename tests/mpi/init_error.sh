#!/bin/sh
# A worker that gives up before MPI is up must say why as its own rank, not
# as "rank 0", and end the job through MPI_Abort with a non-zero status:
# its kernels plugin does not load (pf_init fails), or it was given an
# argument it does not know (pf_abort). A worker that simply exited while
# the others sat in MPI_Init hung Open MPI 4.1's mpirun now and then (about
# 1 run in 70 under load, SIGTERM ignored), so each case runs several times.
# Usage: init_error.sh MPIRUN PROGRAM PLUGIN WORKER [RUNS]
set -u
mpirun=$1 exe=$2 plugin=$3 worker=$4 runs=${5:-6}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run_case WHAT WANT WORKER_ARGS...: WANT is the line each failing worker
# prints (a grep pattern, after "rank N: ").
run_case() {
  what=$1 want=$2
  shift 2
  i=0
  while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    start=$(date +%s)
    timeout -k 10 60 "$mpirun" --oversubscribe --bind-to none -x PATHFLOW_CPU_DEVICES=1 \
      -np 1 "$exe" "$plugin" : -np 2 "$worker" "$@" >"$out" 2>&1
    rc=$?
    fail() { cat "$out"; echo "FAIL: $what, run $i: $1"; exit 1; }
    [ "$rc" -ne 0 ] || fail "the job exited 0"
    # 124: SIGTERM ended it; a hung mpirun ignores SIGTERM and is killed at
    # 70 s (137, also mpirun's own status for a rank's SIGKILL: the time tells).
    if [ "$rc" -eq 124 ] || [ $(( $(date +%s) - start )) -ge 60 ]; then
      fail "the job hung (killed by timeout)"
    fi
    grep -q "rank [12]: $want" "$out" || fail "no worker named itself"
    ! grep -q "rank 0: $want" "$out" || fail "a worker's error reads rank 0"
    # pathflow's line before MPI_Abort (Open MPI's own help text about the
    # abort is sometimes lost when two ranks abort at once).
    grep -q "rank [12]: .*; ending the job" "$out" || fail "the job did not end through MPI_Abort"
  done
  cat "$out"
  echo "ok: $what: $runs runs, each worker named itself and the job ended through MPI_Abort"
}

run_case "a plugin that does not load" \
  "pf_init failed: kernels plugin /nonexistent/libnokernels.so" \
  --kernels /nonexistent/libnokernels.so
run_case "an unknown argument" \
  "pathflow-worker: unknown argument \"--kernel\"" \
  --kernel /nonexistent/libnokernels.so
