"""Matrix-product FLOPs of an MLP epoch, and the GEMM floor: those FLOPs at the rate of the
BLAS the engine calls, measured on a large product. No MLP epoch beats its floor on that BLAS."""

import time

import numpy as np

from .engine.lowlevel.threads import available_cores, thread_limits

GEMM_SIZE = 2048               # the floor's reference product: GEMM_SIZE^3, float32


def parse_model(text):
    """"784-128-10" (or "784,128,10", or a sequence of ints) -> (784, 128, 10)."""
    if not isinstance(text, str):
        layers = tuple(int(w) for w in text)
    else:
        parts = text.replace(",", "-").split("-")
        try:
            layers = tuple(int(p) for p in parts) if text.strip() else ()
        except ValueError:
            raise ValueError(f"model {text!r} must be layer widths joined by '-', e.g. 784-128-10") from None
    if len(layers) < 2 or min(layers) < 1:
        raise ValueError(f"model {text!r} needs at least an input and an output width, all >= 1, "
                         f"e.g. 784-128-10")
    return layers


def model_name(layers):
    return "-".join(str(w) for w in layers)


def matmul_flops(layers, n):
    """Matrix-product FLOPs of one training pass over ``n`` samples.

    Forward 2 n sum(n_in n_out), the weight gradients as many again, and the input gradients of
    every layer but the first (the first layer's is never needed). Elementwise work is left out:
    this is what the BLAS has to do at the least.
    """
    macs = [a * b for a, b in zip(layers[:-1], layers[1:])]
    return 2 * n * (2 * sum(macs) + sum(macs[1:]))


def forward_flops(layers, n):
    """Matrix-product FLOPs of a forward pass (prediction) over ``n`` samples."""
    return 2 * n * sum(a * b for a, b in zip(layers[:-1], layers[1:]))


# ---------------------------------------------------------------- the GEMM floor

def gemm_gflops(threads=None, dtype="float32", size=GEMM_SIZE, repeats=3):
    """Best GEMM throughput (GFLOP/s) of the BLAS the compiled engine calls, on one
    ``size`` x ``size`` x ``size`` product with ``threads`` BLAS threads (default: all cores).

    NumPy's matmul when the engine calls NumPy's OpenBLAS (:func:`fastmlp.engine.lowlevel.blas.blas_name`), else
    ``scipy.linalg.blas.sgemm`` / ``dgemm``. The best of ``repeats`` timed products, after one
    untimed: a floor should be the fastest the library goes.
    """
    from .engine.lowlevel.blas import blas_name

    threads = threads or available_cores()
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(0)
    A = rng.random((size, size), dtype=dtype)
    B = rng.random((size, size), dtype=dtype)
    if blas_name().startswith("numpy"):
        C = np.empty((size, size), dtype=dtype)

        def product():
            np.matmul(A, B, out=C)
    else:
        from scipy.linalg import blas as sblas

        gemm = sblas.sgemm if dtype == np.float32 else sblas.dgemm
        A, B = np.asfortranarray(A), np.asfortranarray(B)

        def product():
            gemm(1.0, A, B)
    best = float("inf")
    with thread_limits(1, threads):
        product()
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            product()
            best = min(best, time.perf_counter() - start)
    return 2.0 * size ** 3 / best / 1e9


def floor_seconds(layers, n, gflops):
    """The GEMM floor of one epoch: its matmul FLOPs at ``gflops`` GFLOP/s."""
    return matmul_flops(layers, n) / (gflops * 1e9)
