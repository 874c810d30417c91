#!/usr/bin/env bash
# bench/train.sh [BUILD_DIR] [ROUNDS]: the data-parallel training step of
# examples/train_mlp (784-256-10, global batch 128, Adam, 2 ranks, one thread
# per rank for the math) against, in the same invocation,
#   (a) bench/train_mpi: the same step written by hand with MPI + OpenBLAS;
#   (b) PyTorch DistributedDataParallel (gloo), one thread per process, when
#       Debian's python3-torch is installed (bench/train.sh --install-torch
#       installs it; it is never a dependency of the library).
# pathflow runs twice a round: with its gradient buckets (the default) and
# with --no-bucket (one allreduce per gradient).
# Runs alternate (pathflow, pathflow --no-bucket, MPI, PyTorch, pathflow, ...)
# ROUNDS times (3); the table shows each one's median samples/s and the ratios.
# pathflow and the hand-written loop both count from their 11th step on (the
# first ones allocate and fill caches): train_mlp's last line gives that rate.
set -euo pipefail
if [[ ${1:-} == --install-torch ]]; then
  apt-get install -y -qq --no-install-recommends python3-torch python3-numpy >/dev/null
  shift
fi
build=${1:-build} rounds=${2:-3} steps=400
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
here=$(cd "$(dirname "$0")" && pwd)
mpi=(mpirun --oversubscribe -np 2 --bind-to core)
# Debian's python3-torch is in the system interpreter's packages: a python3
# first on PATH (pyenv, a virtual environment) may not see it.
torch_ok=0 py=python3
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import torch' 2>/dev/null; then torch_ok=1 py=$p; break; fi
done
rate() { grep -oE '[0-9]+ samples/s' | tail -n 1 | cut -d' ' -f1; }
pf=() pf_plain=() raw=() pt=()
for ((r = 0; r < rounds; r++)); do
  pf+=("$("${mpi[@]}" "$build/examples/train_mlp" --limit-steps $steps --epochs 1 \
          --schedule constant 2>&1 | rate)")
  pf_plain+=("$("${mpi[@]}" "$build/examples/train_mlp" --limit-steps $steps --epochs 1 \
          --schedule constant --no-bucket 2>&1 | rate)")
  raw+=("$("${mpi[@]}" "$build/bench/train_mpi" --steps $steps 2>&1 | rate)")
  if ((torch_ok)); then pt+=("$("$py" "$here/train_ddp.py" --steps $steps 2>&1 | rate)"); fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m_pf=$(median "${pf[@]}") m_plain=$(median "${pf_plain[@]}") m_raw=$(median "${raw[@]}")
echo "# bench/train: 784-256-10, global batch 128, Adam, 2 ranks, median of $rounds (samples/s)"
printf '%-28s %10s %s\n' "pathflow (train_mlp)" "$m_pf" "(${pf[*]})"
printf '%-28s %10s %s\n' "pathflow, --no-bucket" "$m_plain" "(${pf_plain[*]})"
printf '%-28s %10s %s\n' "hand-written MPI+OpenBLAS" "$m_raw" "(${raw[*]})"
awk -v a="$m_pf" -v b="$m_raw" 'BEGIN { printf "%-28s %10.3f (target >= 0.97)\n", "pathflow / hand-written", a / b }'
awk -v a="$m_plain" -v b="$m_raw" 'BEGIN { printf "%-28s %10.3f\n", "--no-bucket / hand-written", a / b }'
if ((torch_ok)); then
  m_pt=$(median "${pt[@]}")
  printf '%-28s %10s %s\n' "PyTorch DDP (gloo)" "$m_pt" "(${pt[*]})"
  awk -v a="$m_pf" -v b="$m_pt" 'BEGIN { printf "%-28s %10.3f (target >= 2)\n", "pathflow / PyTorch DDP", a / b }'
else
  echo "PyTorch DDP: skipped: python3-torch is not installed (bench/train.sh --install-torch)"
fi

# ---- pipeline and hybrid (examples/train_pipeline): the same model, batch and
# optimizer cut into 2 stages on 2 ranks (M = 4 micro-batches, GPipe and 1F1B),
# and 2 replicas of the 2 stages on 4 ranks; runs alternate, medians.
if [[ -x $build/examples/train_pipeline ]]; then
  pp_gpipe=() pp_1f1b=() pp_hybrid=()
  pipe=("$build/examples/train_pipeline" --limit-steps $steps --epochs 1 --lr-schedule constant)
  for ((r = 0; r < rounds; r++)); do
    pp_gpipe+=("$("${mpi[@]}" "${pipe[@]}" --schedule gpipe 2>&1 | rate)")
    pp_1f1b+=("$("${mpi[@]}" "${pipe[@]}" --schedule 1f1b 2>&1 | rate)")
    pp_hybrid+=("$(mpirun --oversubscribe -np 4 "${pipe[@]}" --dp 2 --pp 2 2>&1 | rate)")
  done
  printf '%-28s %10s %s\n' "pipeline 2 stages, gpipe" "$(median "${pp_gpipe[@]}")" "(${pp_gpipe[*]})"
  printf '%-28s %10s %s\n' "pipeline 2 stages, 1f1b" "$(median "${pp_1f1b[@]}")" "(${pp_1f1b[*]})"
  printf '%-28s %10s %s\n' "hybrid dp 2 x pp 2, 4 ranks" "$(median "${pp_hybrid[@]}")" "(${pp_hybrid[*]})"
fi
