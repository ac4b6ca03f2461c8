"""pytest-benchmark suite: python -m pytest benchmarks --benchmark-only (see README.md)."""
