"""Shared fixtures of the pytest-benchmark suite (see benchmarks/README.md).

Run with ``python -m pytest benchmarks --benchmark-only``: pyproject's ``--benchmark-skip`` keeps
the suite out of the normal test run, and ``--benchmark-only`` overrides it (pytest-benchmark 5).
"""

import pytest

from fastmlp import bench

from .common import ACCURACY_LINES, ALL_THREADS, QUICK, ROUNDS, THREADS, TRAIN_SAMPLES


def pytest_report_header(config):
    _, _, _, _, source = bench.bench_data(TRAIN_SAMPLES)
    from fastmlp.engine.lowlevel.blas import blas_name

    return [f"fastmlp benchmarks: data {source}, {TRAIN_SAMPLES} training samples"
            f"{' (FASTMLP_BENCH_QUICK=1)' if QUICK else ''}, {ROUNDS} round(s), "
            f"threads {THREADS}, BLAS {blas_name()}"]


@pytest.fixture(scope="session")
def data():
    """(X_train, y_train, X_test, y_test, source); see fastmlp.bench.bench_data."""
    return bench.bench_data(TRAIN_SAMPLES)


@pytest.fixture(scope="session")
def gemm_gflops():
    """sgemm / dgemm throughput (GFLOP/s) of the engine's BLAS at all cores, measured once."""
    cache = {}

    def get(dtype="float32"):
        if dtype not in cache:
            cache[dtype] = bench.gemm_gflops(ALL_THREADS, dtype, repeats=5)
        return cache[dtype]

    return get


class ReferenceEpochs:
    """Epochs of the NumPy reference from the benchmarks' starting weights, computed once per
    (layers, batch size, dtype, samples) and shared: the numpy benchmark stores its own, the
    numba benchmark compares against it (and computes it, untimed, when it comes first)."""

    def __init__(self):
        self.cases = {}

    def key(self, case):
        return case.layers, case.batch_size, case.flat.dtype.name, case.n_samples

    def put(self, case):
        self.cases[self.key(case)] = case

    def get(self, case):
        key = self.key(case)
        if key not in self.cases:
            ref = bench.EpochCase("numpy", case.layers, case.batch_size, case.threads, case.X,
                                  case.y, case.flat.dtype.name, case.lr)
            ref.run()
            self.cases[key] = ref
        return self.cases[key]


@pytest.fixture(scope="session")
def reference_epochs():
    return ReferenceEpochs()



def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.getoption("benchmark_only", False):
        _, _, _, _, source = bench.bench_data(TRAIN_SAMPLES)
        terminalreporter.write_line(f"fastmlp benchmarks ran on: {source}, {TRAIN_SAMPLES} "
                                    f"training samples{' (quick)' if QUICK else ''}")
        for line in ACCURACY_LINES:
            terminalreporter.write_line(line)
