#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, install the package (nothing else), check that CUDA agrees with
# the CPU (rollouts and gradients), then benchmark the whole suite on CUDA and on the CPU and print one table.
# Fits in 8 minutes on one GPU and 16 cores. Results go to runs/gpu_check/.
#
#   bash benchmarks/gpu_check.sh              # or: make gpu-check
#   bash benchmarks/gpu_check.sh --cpu-only --quick   # the path CI exercises without a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
arch=cuda
repeat=5
cases=()
for arg in "$@"; do
  case "$arg" in
    --cpu-only) arch=cpu ;;
    --quick) repeat=1; cases=(walker2d) ;;
    *) echo "gpu_check.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done
out=runs/gpu_check
mkdir -p "$out"
make -s install
py=.venv/bin/python
if [ "$arch" = cuda ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  DIFFSIM_BACKENDS=cuda "$py" -m pytest -q -m backends tests
fi
"$py" -m diffsim.bench "${cases[@]}" --arch "$arch" --repeat "$repeat" --json "$out/bench_$arch.json"
if [ "$arch" != cpu ]; then
  "$py" -m diffsim.bench "${cases[@]}" --arch cpu --repeat "$repeat" --json "$out/bench_cpu.json"
fi
"$py" -m diffsim.bench --compare "$out/bench_cpu.json" "$out/bench_$arch.json"
