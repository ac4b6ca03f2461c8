#!/usr/bin/env bash
# The thread-scaling table of the threads issue (1/2/4/8/16 threads, fastmlp's default plan and
# each count forced, PyTorch beside it), as OUT.md and OUT.json (default: scaling.md/.json in
# the current folder). Needs numpy, numba, scipy and threadpoolctl (torch if installed), run
# from a checkout: the repository goes on PYTHONPATH, nothing is installed.
# Usage: bash benchmarks/scaling.sh [OUT] [--rounds N] [--matrix [--only TEXT...]] [--no-torch]
# (--matrix: every row of the workload matrix, ms per step, instead of the six benchmark rows)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-scaling}"
shift || true
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" python -m benchmarks.scaling --out "$out" "$@"
