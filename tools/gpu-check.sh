#!/usr/bin/env bash
# gpu-check.sh — the GPU test + bench run for a lent GPU machine (the `device` tool):
# builds with the CUDA backend forced on, runs the gpu-labelled tests and the CPU suite,
# then the bench, all in one call. Output goes to stdout and $OUT/gpu-check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/gpu-check.log
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
  bash scripts/install-deps.sh
  cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMOESCOPE_CUDA=ON >/dev/null && cmake --build build-gpu -j "$(nproc)" 2>&1 | tail -3
  (cd build-gpu && ctest --output-on-failure -L gpu -V 2>&1 | tail -20)
  (cd build-gpu && ctest --output-on-failure -j "$(nproc)" -LE 'gpu|slow' 2>&1 | tail -8)
  build-gpu/moescope bench --model models/tiny-mixtral
} 2>&1 | tee "$log"
