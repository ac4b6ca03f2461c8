"""The GEMM floor beside what the BLAS does on the epoch's own products.

The floor (fastmlp.bench) prices an epoch's matrix-product FLOPs at the BLAS's 2048^3 sgemm rate.
This tool also times the epoch's products as the BLAS would run them with no minibatches at all:
each layer's forward ``A @ W``, weight gradient ``A.T @ dZ`` and (but the first layer's) input
gradient ``dZ @ W.T`` over all 60000 rows in one call each, NumPy's matmul, all cores. It then
times the compiled engine's epoch at batch 32, 128 and 512 and prints each against both.

    python -m benchmarks.tools.blas_epoch [--repeats 5]
"""

import argparse
import statistics
import time

import numpy as np

from fastmlp.bench import (DEFAULT_BATCH_SIZES, DEFAULT_MODELS, EpochCase, bench_data,
                           floor_seconds, gemm_gflops, matmul_flops, model_name)
from fastmlp.engine.lowlevel.threads import available_cores, thread_limits


def full_batch_products(layers, X, threads, repeats):
    """Median seconds of the epoch's products as one BLAS call each over all rows of X."""
    rng = np.random.default_rng(0)
    n = len(X)
    calls = []
    for l, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
        A = X if l == 0 else rng.random((n, n_in), dtype=np.float32)
        W = rng.standard_normal((n_in, n_out), dtype=np.float32)
        dZ = rng.standard_normal((n, n_out), dtype=np.float32)
        calls.append((A, W, np.empty((n, n_out), np.float32)))            # forward
        calls.append((A.T, dZ, np.empty((n_in, n_out), np.float32)))      # weight gradient
        if l > 0:
            calls.append((dZ, W.T, np.empty((n, n_in), np.float32)))      # input gradient
    times = []
    with thread_limits(1, threads):
        for run in range(repeats + 1):                # the first run is not timed
            start = time.perf_counter()
            for a, b, out in calls:
                np.matmul(a, b, out=out)
            if run:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per entry (median)")
    args = parser.parse_args(argv)
    threads = available_cores()
    X, y, *_, source = bench_data()
    gflops = gemm_gflops(threads)
    print(f"{source}; {threads} threads; 2048^3 sgemm {gflops:.0f} GFLOP/s; median of "
          f"{args.repeats}")
    print(f"{'model':16s}{'':32s}{'seconds':>9s}{'x floor':>9s}{'x BLAS full batch':>19s}")
    for layers in DEFAULT_MODELS:
        floor = floor_seconds(layers, len(X), gflops)
        blas = full_batch_products(layers, X, threads, args.repeats)
        rate = matmul_flops(layers, len(X)) / blas / 1e9
        rows = [("GEMM floor", floor), (f"BLAS full batch ({rate:.0f} GFLOP/s)", blas)]
        for batch in DEFAULT_BATCH_SIZES:
            case = EpochCase("numba", layers, batch, threads, X, y)
            case.warm_up()
            rows.append((f"engine, batch {batch}", case.time_epoch(repeats=args.repeats)))
        for what, seconds in rows:
            print(f"{model_name(layers):16s}{what:32s}{seconds:9.3f}{seconds / floor:9.2f}"
                  f"{seconds / blas:19.2f}", flush=True)


if __name__ == "__main__":
    main()
