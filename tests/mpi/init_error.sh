#!/bin/sh
# A worker whose pf_init fails before MPI is up (its kernels plugin does not
# load) must say so as its own rank, not as "rank 0", and the job must end
# with a non-zero status. Usage: init_error.sh MPIRUN PROGRAM PLUGIN WORKER
set -u
mpirun=$1 exe=$2 plugin=$3 worker=$4
out=$(mktemp)
trap 'rm -f "$out"' EXIT
timeout 120 "$mpirun" --oversubscribe --bind-to none -x PATHFLOW_CPU_DEVICES=1 \
  -np 1 "$exe" "$plugin" : -np 2 "$worker" --kernels /nonexistent/libnokernels.so >"$out" 2>&1
rc=$?
cat "$out"
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; exit 1; fi
if [ "$rc" -eq 124 ]; then echo "FAIL: the job hung (killed by timeout)"; exit 1; fi
grep -q "rank [12]: pf_init failed: kernels plugin /nonexistent/libnokernels.so" "$out" ||
  { echo "FAIL: no worker named itself"; exit 1; }
if grep -q "rank 0: pf_init failed" "$out"; then echo "FAIL: a worker's error reads rank 0"; exit 1; fi
echo "ok: the workers' pf_init errors name their own ranks"
