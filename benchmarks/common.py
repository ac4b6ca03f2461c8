"""Constants and helpers of the benchmark suite (fixtures are in conftest.py)."""

import os
from pathlib import Path

import numpy as np

from fastmlp import bench
from fastmlp.engine.lowlevel.threads import available_cores

QUICK = bench.quick_mode()
TRAIN_SAMPLES = bench.QUICK_SAMPLES if QUICK else bench.EPOCH_SAMPLES
# Rounds per timed epoch (the median is the figure); FASTMLP_BENCH_ROUNDS overrides.
ROUNDS = int(os.environ.get("FASTMLP_BENCH_ROUNDS", "1" if QUICK else "3"))
ALL_THREADS = available_cores()
THREADS = sorted({1, ALL_THREADS})
MODELS = [bench.model_name(m) for m in bench.DEFAULT_MODELS]
BATCH_SIZES = list(bench.DEFAULT_BATCH_SIZES)
ENGINES = ["numpy", "numba"]
DTYPES = ["float32", "float64"]
REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = Path(os.environ.get("FASTMLP_MNIST_DIR") or REPO.parent / "shared" / "data" / "mnist")


def common_info(benchmark, dtype, threads, source=None):
    from fastmlp.engine.lowlevel.blas import blas_name

    benchmark.extra_info.update({"dtype": dtype, "threads": threads, "blas": blas_name()})
    if source:
        benchmark.extra_info["data"] = source


def add_rates(benchmark, samples=None, flops=None):
    """samples/s and GFLOP/s from the benchmark's median, into extra_info."""
    median = benchmark.stats.stats.median
    if samples:
        benchmark.extra_info["samples_per_s"] = samples / median
    if flops:
        benchmark.extra_info["gflops"] = flops / median / 1e9
    return median


def assert_close(actual, expected, dtype, what):
    """Kernel outputs vs the reference's, with tolerances by dtype."""
    rtol, atol = (2e-4, 2e-5) if np.dtype(dtype) == np.float32 else (1e-10, 1e-12)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


# "dataset impl test accuracy ..." lines of test_accuracy.py, printed at the end of the run
ACCURACY_LINES = []
