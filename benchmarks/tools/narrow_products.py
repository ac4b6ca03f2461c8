"""The two kinds of products the rows scheme can take for a layer, side by side, one thread:
the register tiles (units in the lanes, fastmlp/engine/lowlevel/tiles.py) and the dot products
(the reduction in the lanes, .dots), on a layer of K inputs and each N units, float32.

    python -m benchmarks.tools.narrow_products [--k 784] [--rows 8000] [--units 10 20 25 64]

Per N, milliseconds over ``rows`` rows of X in blocks of 128 (the rows scheme's block): the
forward product with bias and relu, then the weight gradient of the same block while its rows
are in cache, as the rows scheme runs them; then each alone with all rows in cache (128 rows,
repeated). Medians of 7 paired rounds, with the share of the BLAS's 1-thread sgemm rate.
Measures ``dots_pay`` (docs/performance.md, "Dot products for narrow layers").
"""

import argparse
import time

import numpy as np
from numba import njit

from fastmlp.engine.lowlevel.dots import RANK_ADD, dot_rank_update, dot_rows_epilogue, dots_pay
from fastmlp.engine.lowlevel.tiles import (EPI_BIAS_RELU, VECTOR_BYTES, matmul_rows_epilogue,
                                           rank_update, row_addresses)
from fastmlp.flops import gemm_gflops

BLOCK = 128


@njit(cache=True)
def _blocks(X, B, b, C, D, G, addr, reps, dots, forward, gradient):
    """``reps`` passes over X in blocks of BLOCK rows: the forward product with bias and relu
    into C, then the weight gradient into G, by the dot products (``dots``: B and G are W and
    dW transposed) or the tiles."""
    for _ in range(reps):
        for r0 in range(0, X.shape[0], BLOCK):
            m = min(BLOCK, X.shape[0] - r0)
            row_addresses(addr[:m], X[r0:r0 + m], addr[:0])
            if forward and dots:
                dot_rows_epilogue(C[:m], addr[:m], B, EPI_BIAS_RELU, b.ctypes.data)
            elif forward:
                matmul_rows_epilogue(C[:m], addr[:m], B, EPI_BIAS_RELU, b.ctypes.data)
            if gradient and dots:
                dot_rank_update(G, addr[:m], 0, D[:m], RANK_ADD, 0.0, addr[:0])
            elif gradient:
                rank_update(G, addr[:m], 0, D[:m], 1.0, 1.0)


def _median_ms(run, reps, rounds=7):
    run(1)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run(reps)
        times.append((time.perf_counter() - start) / reps)
    return 1e3 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=784)
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--units", type=int, nargs="+", default=[10, 16, 20, 25, 32, 64])
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.random((args.rows, args.k), dtype=np.float32)
    hot = X[:BLOCK]
    addr = np.empty(BLOCK, np.int64)
    rate = gemm_gflops(threads=1)
    print(f"K={args.k}, {args.rows} rows in blocks of {BLOCK}, float32, {VECTOR_BYTES * 8}-bit "
          f"vectors; sgemm 1 thread {rate:.0f} GFLOP/s; ms (share of that rate)")
    print(f"{'N':>4} {'dots_pay':>8} | {'forward + gradient, X from memory':^35} | "
          f"{'forward, in cache':^27} | {'gradient, in cache':^27}")
    for n in args.units:
        W = rng.standard_normal((args.k, n)).astype(np.float32)
        Wt = np.ascontiguousarray(W.T)
        b = np.zeros(n, np.float32)
        C = np.empty((BLOCK, n), np.float32)
        D = rng.standard_normal((BLOCK, n)).astype(np.float32)
        G, Gt = np.zeros((args.k, n), np.float32), np.zeros((n, args.k), np.float32)
        cells = []
        for data, forward, gradient, reps in ((X, True, True, 3), (hot, True, False, 200),
                                              (hot, False, True, 200)):
            macs = data.shape[0] * args.k * n * (forward + gradient)
            pair = []
            for dots, B, Gb in ((False, W, G), (True, Wt, Gt)):
                ms = _median_ms(lambda r, dots=dots, B=B, Gb=Gb, data=data, f=forward,
                                g=gradient: _blocks(data, B, b, C, D, Gb, addr, r, dots, f, g),
                                reps)
                pair.append(f"{ms:7.3f} ({2 * macs / ms / 1e6 / rate:4.0%})")
            cells.append(" ".join(pair))
        print(f"{n:4d} {dots_pay(args.k, n, 4)!s:>8} | tiles/dots {cells[0]} | {cells[1]} | "
              f"{cells[2]}")


if __name__ == "__main__":
    main()
