"""The register-tiled products of fastmlp.engine.lowlevel.tiles against NumPy: every edge of the tiling (rows
past a multiple of the tile height, columns past a multiple of the vector width, reductions
past a multiple of DEPTH), column blocks of bigger arrays, rows picked by address, both dtypes."""

import os
import subprocess
import sys

import numpy as np
import pytest

import helpers  # noqa: I001 (the tests folder is on sys.path)

from fastmlp.engine.lowlevel.tiles import (DEPTH, EPI_BIAS, EPI_BIAS_RELU, EPI_RELU_MASK, ROW_GROUP, matmul_rows,
                           matmul_rows_epilogue, rank_update, row_addresses)

TOL = {np.float64: 1e-12, np.float32: 2e-5}
# tile heights 6 and 4 and their remainders, groups of ROW_GROUP rows and one past
ROWS = [1, 3, 4, 5, 7, 8, 13, 25, 32, 70, ROW_GROUP, ROW_GROUP + 1]
# vector and block edges for 4- and 8-byte floats; 8 and 20: one vector, and a masked last one
WIDTHS = [1, 8, 15, 16, 17, 20, 64, 65, 100, 130]
DEPTHS = [1, 7, DEPTH, DEPTH + 1, 2 * DEPTH + 2]
SCALES = [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.7)]




@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("n", WIDTHS)
def test_matmul_rows(dtype, m, n):
    rng = np.random.default_rng(m * 1000 + n)
    for k in DEPTHS:
        X, rows, addr = helpers.picked_rows(rng, dtype, m, k)
        W = rng.standard_normal((k, n + 5)).astype(dtype)[:, 2:2 + n]    # a block of columns
        for alpha, beta in SCALES:
            frame = rng.standard_normal((m, n + 4)).astype(dtype)
            C = frame[:, 1:1 + n]
            before = C.copy()
            outside = np.delete(frame, np.s_[1:1 + n], axis=1)
            if beta == 0:
                C[:] = np.nan                   # beta 0: C is only written
            helpers.call_as_views(matmul_rows, C, addr, W, alpha, beta)
            want = alpha * (X[rows, :k].astype(np.float64) @ W) + (beta * before if beta else 0)
            helpers.assert_relative_close(C, want, TOL[dtype])
            assert np.array_equal(np.delete(frame, np.s_[1:1 + n], axis=1), outside)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m", [1, 5, 13, 70])
@pytest.mark.parametrize("n", WIDTHS)
def test_matmul_rows_epilogue(dtype, m, n):
    """Bias, bias + relu and the relu mask applied in the tiles match the same steps in NumPy,
    on a block of columns (the bias's and the mask's columns must line up with C's), with
    reductions past DEPTH (the epilogue goes with the last block only), NaN kept by relu as
    np.maximum keeps it and a NaN or zero relu output masking to 0."""
    rng = np.random.default_rng(m * 1000 + n + 7)
    for k in (1, DEPTH + 3):
        X, rows, addr = helpers.picked_rows(rng, dtype, m, k)
        X[rows[0], 0] = np.nan                  # row 0 of the product is NaN
        W = rng.standard_normal((k, n + 5)).astype(dtype)[:, 2:2 + n]
        product = X[rows, :k].astype(np.float64) @ W
        b_frame = rng.standard_normal(n + 3).astype(dtype)
        b = b_frame[1:1 + n]
        for epi, want in ((EPI_BIAS, product + b), (EPI_BIAS_RELU, np.maximum(product + b, 0))):
            frame = np.full((m, n + 4), np.nan, dtype)
            C = frame[:, 1:1 + n]
            helpers.call_as_views(matmul_rows_epilogue, C, addr, W, epi, b.ctypes.data)
            assert np.array_equal(np.isnan(C), np.isnan(want)), epi
            helpers.assert_relative_close(np.nan_to_num(C), np.nan_to_num(want), TOL[dtype])
            assert np.isnan(frame[:, 0]).all() and np.isnan(frame[:, 1 + n:]).all()
        # the relu output a, laid out like C (the same strides, another buffer)
        a_frame = np.maximum(rng.standard_normal((m, n + 4)), 0).astype(dtype)
        a_frame[-1, 1] = np.nan
        frame = np.zeros((m, n + 4), dtype)
        C = frame[:, 1:1 + n]
        helpers.call_as_views(matmul_rows_epilogue, C, addr, W, EPI_RELU_MASK,
                              a_frame.ctypes.data - frame.ctypes.data)
        keep = a_frame[:, 1:1 + n] > 0          # NaN > 0 is False: times 0
        want = product * keep                   # as kernels.activation_backward: NaN * 0 is NaN
        assert np.array_equal(np.isnan(C), np.isnan(want))
        helpers.assert_relative_close(np.nan_to_num(C), np.nan_to_num(want), TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", ROWS + [DEPTH + 1])
@pytest.mark.parametrize("n", WIDTHS)
def test_rank_update(dtype, k, n):
    rng = np.random.default_rng(k * 1000 + n)
    for m in [1, 5, 32, DEPTH + 3]:             # rows of A and D: the reduction
        X, rows, addr = helpers.picked_rows(rng, dtype, m, k)
        D = rng.standard_normal((m, n + 2)).astype(dtype)[:, :n]
        for alpha, beta in SCALES:
            frame = rng.standard_normal((k, n + 3)).astype(dtype)
            C = frame[:, 1:1 + n]
            before = C.copy()
            outside = np.delete(frame, np.s_[1:1 + n], axis=1).copy()
            if beta == 0:
                C[:] = np.nan
            # A = columns 2 .. 2 + k of the rows
            helpers.call_as_views(rank_update, C, addr, 2, D, alpha, beta)
            A = X[rows, 2:2 + k].astype(np.float64)
            want = alpha * (A.T @ D) + (beta * before if beta else 0)
            helpers.assert_relative_close(C, want, TOL[dtype])
            assert np.array_equal(np.delete(frame, np.s_[1:1 + n], axis=1), outside)


def test_matmul_rows_uses_the_addressed_rows_in_order():
    X = np.arange(12.0).reshape(4, 3)
    addr = np.empty(3, dtype=np.int64)
    row_addresses(addr, X, np.array([3, 0, 3]))
    C = np.empty((3, 1))
    helpers.call_as_views(matmul_rows, C, addr, np.ones((3, 1)), 1.0, 0.0)
    assert C[:, 0].tolist() == [30.0, 3.0, 30.0]


def test_empty_reduction_scales_c():
    C = np.full((3, 5), np.nan)
    helpers.call_as_views(matmul_rows, C, np.empty(3, dtype=np.int64), np.empty((0, 5)), 1.0, 0.0)
    assert (C == 0).all()
    C = np.full((4, 5), 2.0)
    helpers.call_as_views(rank_update, C, np.empty(0, dtype=np.int64), 0, np.empty((0, 5)), 1.0,
                          0.5)
    assert (C == 1.0).all()



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("stride", [256, 512, 1024, 4096])
def test_power_of_two_strides(dtype, stride):
    """Operands whose rows are a power of two apart take shorter blocks (see tiles._depth)."""
    rng = np.random.default_rng(stride)
    k, m, n = 70, 33, 40
    X, rows, addr = helpers.picked_rows(rng, dtype, m, k)
    W = rng.standard_normal((k, stride)).astype(dtype)[:, 8:8 + n]
    C = np.empty((m, n), dtype=dtype)
    helpers.call_as_views(matmul_rows, C, addr, W, 1.0, 0.0)
    helpers.assert_relative_close(C, X[rows, :k].astype(np.float64) @ W, TOL[dtype])
    D = rng.standard_normal((m, stride)).astype(dtype)[:, 8:8 + n]
    U = np.zeros((k, n), dtype=dtype)
    helpers.call_as_views(rank_update, U, addr, 0, D, 1.0, 0.0)
    helpers.assert_relative_close(U, X[rows, :k].T.astype(np.float64) @ D, TOL[dtype])


def test_tiles_for_a_cpu_without_avx512(tmp_path):
    """NUMBA_CPU_NAME=haswell (AVX2): 32-byte vectors, 2 per tile, in a fresh process and cache."""
    code = (
        "import numpy as np\n"
        "from fastmlp.engine.lowlevel import tiles\n"
        "assert (tiles.VECTOR_BYTES, tiles.VECTORS) == (32, 2)\n"
        "rng = np.random.default_rng(0)\n"
        "for dtype in (np.float32, np.float64):\n"
        "    X = rng.standard_normal((50, 40)).astype(dtype)\n"
        "    rows = rng.choice(50, 13)\n"
        "    addr = np.empty(13, dtype=np.int64)\n"
        "    tiles.row_addresses(addr, X, rows)\n"
        "    W = rng.standard_normal((40, 37)).astype(dtype)\n"
        "    C = np.empty((13, 37), dtype=dtype)\n"
        "    tiles.matmul_rows(C, addr, W, 1.0, 0.0)\n"
        "    assert np.allclose(C, X[rows] @ W, rtol=1e-4, atol=1e-4)\n"
        "    D = rng.standard_normal((13, 37)).astype(dtype)\n"
        "    U = np.ones((40, 37), dtype=dtype)\n"
        "    tiles.rank_update(U, addr, 0, D, -0.5, 1.0)\n"
        "    assert np.allclose(U, 1 - 0.5 * X[rows].T @ D, rtol=1e-4, atol=1e-4)\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="",
               NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
