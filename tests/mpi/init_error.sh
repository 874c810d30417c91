#!/bin/sh
# A worker whose pf_init fails before MPI is up (its kernels plugin does not
# load) must say so as its own rank, not as "rank 0", and end the job through
# MPI_Abort with a non-zero status. A worker that simply exited while the
# others sat in MPI_Init hung Open MPI 4.1's mpirun now and then (about 1 run
# in 70 under load, SIGTERM ignored), so the job runs several times.
# Usage: init_error.sh MPIRUN PROGRAM PLUGIN WORKER [RUNS]
set -u
mpirun=$1 exe=$2 plugin=$3 worker=$4 runs=${5:-10}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
i=0
while [ "$i" -lt "$runs" ]; do
  i=$((i + 1))
  start=$(date +%s)
  timeout -k 10 60 "$mpirun" --oversubscribe --bind-to none -x PATHFLOW_CPU_DEVICES=1 \
    -np 1 "$exe" "$plugin" : -np 2 "$worker" --kernels /nonexistent/libnokernels.so >"$out" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then cat "$out"; echo "FAIL: run $i: the job exited 0"; exit 1; fi
  # 124: SIGTERM ended it; a hung mpirun ignores SIGTERM and is killed at
  # 70 s (137, also mpirun's own status for a rank's SIGKILL: the time tells).
  if [ "$rc" -eq 124 ] || [ $(( $(date +%s) - start )) -ge 60 ]; then
    cat "$out"; echo "FAIL: run $i: the job hung (killed by timeout)"; exit 1
  fi
  grep -q "rank [12]: pf_init failed: kernels plugin /nonexistent/libnokernels.so" "$out" ||
    { cat "$out"; echo "FAIL: run $i: no worker named itself"; exit 1; }
  if grep -q "rank 0: pf_init failed" "$out"; then
    cat "$out"; echo "FAIL: run $i: a worker's error reads rank 0"; exit 1
  fi
  # pathflow's line before MPI_Abort (Open MPI's own help text about the
  # abort is sometimes lost when two ranks abort at once).
  grep -q "rank [12]: pf_init failed; ending the job" "$out" ||
    { cat "$out"; echo "FAIL: run $i: the job did not end through pf_mpi_abort"; exit 1; }
done
cat "$out"
echo "ok: $runs runs: the workers' pf_init errors name their own ranks and abort the job"
