"""pytest-benchmark suite: python -m pytest benchmarks --benchmark-only (see README.md)."""

import os

# the benchmarks time compiled code: a kernel missing from the cache compiles before it runs
# (fastmlp.engine.background), in the scripts here and the processes they start
os.environ.setdefault("FASTMLP_COMPILE", "wait")
