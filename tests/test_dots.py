"""The dot products of fastmlp.engine.lowlevel.dots against NumPy and their reference twins:
every edge of the tiling (rows past a multiple of DOT_ROWS by 1 to DOT_ROWS - 1, units past a
multiple of DOT_COLS, reductions past a multiple of the vector width and of a rank tile's
DOT_VECTORS vectors), rows picked by address, blocks of bigger arrays, both dtypes, and the
choice between them and the tiles."""

import os
import subprocess
import sys

import numpy as np
import pytest

import helpers  # noqa: I001 (the tests folder is on sys.path)

from fastmlp import reference
from fastmlp.engine.lowlevel.dots import (DOT_COLS, DOT_ROWS, DOT_VECTORS, RANK_ADD, RANK_STEP,
                                          RANK_WRITE, dot_rank_update, dot_rows_epilogue,
                                          dots_pay)
from fastmlp.engine.lowlevel.tiles import (EPI_BIAS, EPI_BIAS_RELU, EPI_NONE, VECTOR_BYTES,
                                           row_addresses)

TOL = {np.float64: 1e-12, np.float32: 2e-5}
ROWS = [1, DOT_ROWS - 1, DOT_ROWS, DOT_ROWS + 1, 2 * DOT_ROWS + 2, 2 * DOT_ROWS + 3, 37]
UNITS = [1, DOT_COLS - 1, DOT_COLS, DOT_COLS + 1, 10, 20, 23]


def _depths(dtype):
    """Reductions: under a vector, whole vectors, a vector and a tail, a rank tile and past it
    by 1, 2, 3 and 4 vectors (the last one partly filled)."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    chunk = DOT_VECTORS * lanes
    return [1, lanes - 1, lanes, lanes + 3, chunk, chunk + 1, 2 * chunk + lanes + 5,
            chunk + 2 * lanes + 1, chunk + 3 * lanes + 1, 784]




@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m", ROWS)
@pytest.mark.parametrize("n", UNITS)
def test_dot_rows_epilogue(dtype, m, n):
    """C = A @ Wt.T, + b, relu(. + b), into a block of columns of a bigger array (the frame
    around it untouched), Wt a block of a bigger array too."""
    rng = np.random.default_rng(m * 100 + n)
    for k in _depths(dtype):
        X, rows, addr = helpers.picked_rows(rng, dtype, m, k)
        Wt = rng.standard_normal((n, k + 9)).astype(dtype)[:, 4:4 + k]
        b = rng.standard_normal(n).astype(dtype)
        product = X[rows, :k].astype(np.float64) @ Wt.T.astype(np.float64)
        for epi, want in ((EPI_NONE, product), (EPI_BIAS, product + b),
                          (EPI_BIAS_RELU, np.maximum(product + b, 0))):
            frame = np.full((m, n + 3), np.nan, dtype)
            C = frame[:, 1:1 + n]
            helpers.call_as_views(dot_rows_epilogue, C, addr, Wt, epi, b.ctypes.data)
            helpers.assert_relative_close(C, want, TOL[dtype])
            assert np.isnan(frame[:, 0]).all() and np.isnan(frame[:, 1 + n:]).all()
            twin = np.empty_like(C)
            reference.dot_rows_epilogue(twin, addr, Wt, epi, b.ctypes.data)
            helpers.assert_relative_close(C, twin, TOL[dtype])


def test_dot_rows_relu_keeps_nan_as_np_maximum():
    X = np.ones((2, 70), np.float32)
    X[0, 3] = np.nan
    addr = np.empty(2, np.int64)
    row_addresses(addr, X, np.array([0, 1]))
    Wt = np.full((3, 70), -1.0, np.float32)
    C = np.zeros((2, 3), np.float32)
    b = np.zeros(3, np.float32)
    helpers.call_as_views(dot_rows_epilogue, C, addr, Wt, EPI_BIAS_RELU, b.ctypes.data)
    assert np.isnan(C[0]).all() and (C[1] == 0).all()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", UNITS)
@pytest.mark.parametrize("mode", [RANK_WRITE, RANK_ADD, RANK_STEP])
def test_dot_rank_update(dtype, n, mode):
    """S = D.T @ A[:, 2:2 + k] into Gt, a block of a bigger array: Gt = S (RANK_WRITE: Gt is
    only written, NaN in it or not), Gt + S (RANK_ADD) or Gt - lr * S (RANK_STEP, with the bits
    of the SGD step from a stored S); reductions over 0 rows too."""
    rng = np.random.default_rng(n * 10 + int(mode))
    lr = 0.37
    for k in _depths(dtype):
        for m in [0, 1, 3, 37]:
            X, rows, addr = helpers.picked_rows(rng, dtype, m, k + 2)
            D = rng.standard_normal((m, n + 4)).astype(dtype)[:, 1:1 + n]
            frame = rng.standard_normal((n, k + 6)).astype(dtype)
            Gt = frame[:, 3:3 + k]
            before = Gt.copy()
            outside = np.delete(frame, np.s_[3:3 + k], axis=1).copy()
            if mode == RANK_WRITE:
                Gt[:] = np.nan
            fetch = addr[::-1].copy() if m % 2 else addr[:0]     # changes no value
            helpers.call_as_views(dot_rank_update, Gt, addr, 2, D, mode, lr, fetch)
            S = D.T.astype(np.float64) @ X[rows, 2:2 + k].astype(np.float64)
            want = S if mode == RANK_WRITE else before + S if mode == RANK_ADD else before - lr * S
            helpers.assert_relative_close(Gt, want, TOL[dtype])
            assert np.array_equal(np.delete(frame, np.s_[3:3 + k], axis=1), outside)
            twin = before.copy()
            reference.dot_rank_update(twin, addr, 2, D, mode, lr, fetch)
            helpers.assert_relative_close(Gt, twin, TOL[dtype])
            if mode == RANK_STEP:               # p - lr * g, g the sums as RANK_WRITE stores them
                stored = np.empty_like(before)
                helpers.call_as_views(dot_rank_update, stored, addr, 2, D, RANK_WRITE, lr, addr[:0])
                assert np.array_equal(Gt, before - dtype(lr) * stored)


def test_dots_pay_where_the_tiles_leave_lanes_empty():
    """Long reductions with a partly empty last vector of the tiles take the dot products; full
    vectors and short reductions stay with the tiles (docs/performance.md, "Dot products for
    narrow layers")."""
    lanes = VECTOR_BYTES // 4
    assert dots_pay(784, 20, 4) and dots_pay(784, 10, 4) and dots_pay(784, 25, 4)
    assert not dots_pay(784, lanes, 4) and not dots_pay(784, 2 * lanes, 4)
    assert not dots_pay(20, 10, 4) and not dots_pay(25, 15, 4)
    assert not dots_pay(784, 128, 4)


def test_dots_for_a_cpu_without_avx512(tmp_path):
    """NUMBA_CPU_NAME=haswell (AVX2): 32-byte vectors and smaller tiles, in a fresh process and
    cache."""
    code = (
        "import numpy as np\n"
        "from fastmlp.engine.lowlevel import dots, tiles\n"
        "assert tiles.VECTOR_BYTES == 32 and (dots.DOT_ROWS, dots.DOT_COLS, dots.DOT_VECTORS) "
        "== (3, 3, 3)\n"
        "rng = np.random.default_rng(0)\n"
        "for dtype in (np.float32, np.float64):\n"
        "    X = rng.standard_normal((50, 83)).astype(dtype)\n"
        "    rows = rng.choice(50, 13)\n"
        "    addr = np.empty(13, dtype=np.int64)\n"
        "    tiles.row_addresses(addr, X, rows)\n"
        "    Wt = rng.standard_normal((11, 83)).astype(dtype)\n"
        "    b = rng.standard_normal(11).astype(dtype)\n"
        "    C = np.empty((13, 11), dtype=dtype)\n"
        "    dots.dot_rows_epilogue(C, addr, Wt, tiles.EPI_BIAS, b.ctypes.data)\n"
        "    assert np.allclose(C, X[rows] @ Wt.T + b, rtol=1e-4, atol=1e-4)\n"
        "    D = rng.standard_normal((13, 11)).astype(dtype)\n"
        "    G = np.ones((11, 83), dtype=dtype)\n"
        "    dots.dot_rank_update(G, addr, 0, D, dots.RANK_ADD, 0.0, addr)\n"
        "    assert np.allclose(G, 1 + D.T @ X[rows], rtol=1e-4, atol=1e-4)\n"
        "print('ok')\n")
    env = dict(os.environ, NUMBA_CPU_NAME="haswell", NUMBA_CPU_FEATURES="",
               NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
