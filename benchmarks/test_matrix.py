"""The workload matrix (fastmlp/matrix.py) in pytest-benchmark: each workload at 1 thread and all
cores, fastmlp beside the NumPy reference and PyTorch (when installed) in one group, so the
group's ratios are the speed-ups. ``fastmlp bench --matrix`` prints the same rows as one table
of paired medians.

    python -m pytest benchmarks/test_matrix.py --benchmark-only
"""

import pytest

from fastmlp import matrix
from fastmlp.engine.lowlevel.threads import available_cores
from fastmlp.peers import torch_version

ENGINES = ["fastmlp", "numpy"] + (["torch"] if torch_version() else [])
THREADS = sorted({1, available_cores()})


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("work", matrix.WORKLOADS, ids=[f"{w.name} {'-'.join(map(str, w.layers))}"
                                                        for w in matrix.WORKLOADS])
@pytest.mark.parametrize("engine", ENGINES)
def test_workload(benchmark, engine, work, threads):
    X, y = matrix.workload_data(work.layers)
    order = matrix.workload_order(work)
    run = (matrix.TorchRun(work, X, y, order, threads) if engine == "torch" else
           matrix.EngineRun("numba" if engine == "fastmlp" else "numpy", work, X, y, order, threads))
    run()                                       # compile and warm up outside the timing
    benchmark.group = f"{work.name} {'-'.join(map(str, work.layers))} threads {threads}"
    loss = benchmark.pedantic(run, rounds=3)
    benchmark.extra_info.update({"steps": work.steps, "batch": work.batch or matrix.ROWS,
                                 "threads": threads, "loss": loss})
