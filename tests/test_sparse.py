"""The first layer on X's non-zeros (fastmlp.engine.lowlevel.sparse; the rows scheme's full
batch, the units scheme's minibatches): the compressed forms against NumPy, the products against
NumPy and their reference twins at every edge of their vectors, the choice of the path, and
whole training runs against the reference: trajectories, finite differences, thread counts and
row orders."""

import numpy as np
import pytest

import helpers  # noqa: I001 (the tests folder is on sys.path)

from fastmlp import MLP, engine, reference
from fastmlp.codes import ACTIVATIONS, HEADS
from fastmlp.engine import units
from fastmlp.engine.lowlevel.sparse import (MAX_VECTORS, CompressedX, compress,
                                            sparse_column_sums, sparse_rank_update,
                                            sparse_rows_epilogue)
from fastmlp.engine.optimizer import Slots, update_block_nonzeros
from fastmlp.engine.lowlevel.threads import thread_limits
from fastmlp.engine.lowlevel.tiles import EPI_BIAS, EPI_BIAS_RELU, EPI_NONE, VECTOR_BYTES
from fastmlp.engine.rows import takes_nonzeros
from fastmlp.params import init_params, layer_views

TOL = {np.float64: 1e-12, np.float32: 2e-5}


def mostly_zero(rng, n, k, dtype=np.float64, density=0.15):
    """(n, k) with about ``density`` of its elements non-zero; with several rows, one of them
    all zeros."""
    X = rng.standard_normal((n, k)).astype(dtype)
    X[rng.random((n, k)) >= density] = 0
    if n > 1:
        X[n // 2] = 0
    return X


def _units(dtype):
    """Widths at every edge of the vectors: under one, one, one and a lane, a pass of
    MAX_VECTORS vectors and past it."""
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    return [1, lanes - 1, lanes, lanes + 1, MAX_VECTORS * lanes, MAX_VECTORS * lanes + 3, 70]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compress_matches_numpy(dtype):
    rng = np.random.default_rng(0)
    for X in (mostly_zero(rng, 37, 11, dtype), np.zeros((4, 3), dtype), np.ones((2, 5), dtype),
              mostly_zero(rng, 1, 1, dtype, 1.0), np.array([[0.0, -0.0, 2.0]], dtype)):
        (ptr, idx, val), (cptr, cidx, cval) = compress(X)
        rows, cols = np.nonzero(X)
        assert ptr[0] == 0 and np.array_equal(np.diff(ptr), np.bincount(rows, minlength=len(X)))
        assert np.array_equal(idx, cols) and np.array_equal(val, X[rows, cols])
        assert idx.dtype == np.int32 and val.dtype == X.dtype
        crows, ccols = np.nonzero(X.T)
        assert np.array_equal(np.diff(cptr), np.bincount(crows, minlength=X.shape[1]))
        assert np.array_equal(cidx, ccols) and np.array_equal(cval, X.T[crows, ccols])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_rows_epilogue(dtype):
    """C = X[rows] @ W, + b, relu(. + b) into a block of a bigger array (its frame untouched),
    rows repeated and an all-zero one among them, against NumPy and the twin."""
    rng = np.random.default_rng(1)
    X = mostly_zero(rng, 40, 53, dtype)
    csr, _ = compress(X)
    rows = np.array([3, 20, 3, 0, 39, 17, 5], dtype=np.int64)
    assert not X[20].any()
    for n in _units(dtype):
        W = rng.standard_normal((53, n + 5)).astype(dtype)[:, 2:2 + n]
        b = rng.standard_normal(n).astype(dtype)
        product = X[rows].astype(np.float64) @ W.astype(np.float64)
        for epi, want in ((EPI_NONE, product), (EPI_BIAS, product + b),
                          (EPI_BIAS_RELU, np.maximum(product + b, 0))):
            frame = np.full((len(rows), n + 3), np.nan, dtype)
            C = frame[:, 1:1 + n]
            sparse_rows_epilogue(C, rows, csr, W, epi, b.ctypes.data)
            helpers.assert_relative_close(C, want, TOL[dtype])
            assert np.isnan(frame[:, 0]).all() and np.isnan(frame[:, 1 + n:]).all()
            twin = np.empty_like(C)
            reference.sparse_rows_epilogue(twin, rows, csr, W, epi, b.ctypes.data)
            helpers.assert_relative_close(C, twin, TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_column_sums(dtype):
    """Rows k0 .. k0 + k of X.T @ D from X's columns (an all-zero column among them), into a
    block of a bigger array, against NumPy and the twin."""
    rng = np.random.default_rng(2)
    X = mostly_zero(rng, 45, 30, dtype)
    X[:, 7] = 0
    _, csc = compress(X)
    for n in _units(dtype):
        D = rng.standard_normal((45, n)).astype(dtype)
        for k0, k in ((0, 30), (5, 9), (29, 1), (3, 0)):
            frame = np.full((k, n + 2), np.nan, dtype)
            G = frame[:, 1:1 + n]
            sparse_column_sums(G, csc, D, k0)
            want = (X.T.astype(np.float64) @ D.astype(np.float64))[k0:k0 + k]
            if k:
                helpers.assert_relative_close(G, want, TOL[dtype])
            assert np.isnan(frame[:, 0]).all() and np.isnan(frame[:, -1]).all()
            twin = np.empty_like(G)
            reference.sparse_column_sums(twin, csc, D, k0)
            np.testing.assert_allclose(G, twin, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_rank_update(dtype):
    """C = alpha * X[rows].T @ D + beta * C for whole vectors of units (one, several, a pass of
    MAX_VECTORS and past it), into a block of a bigger array, rows repeated and an all-zero
    one; beta 0 writes C without reading it (NaN there stays out)."""
    rng = np.random.default_rng(9)
    X = mostly_zero(rng, 40, 37, dtype)
    csr, _ = compress(X)
    rows = np.array([3, 20, 3, 0, 39, 17, 5, 8, 8], dtype=np.int64)
    lanes = VECTOR_BYTES // np.dtype(dtype).itemsize
    for n in (lanes, 2 * lanes, MAX_VECTORS * lanes, (MAX_VECTORS + 1) * lanes):
        D = rng.standard_normal((len(rows), n)).astype(dtype)
        S = np.empty((37, n + lanes), dtype)            # a wider scratch, as a thread's
        for alpha, beta in ((1.0, 0.0), (1.0, 1.0), (-0.1, 0.999)):
            frame = np.full((37, n + 2), np.nan, dtype)
            C = frame[:, 1:1 + n]
            if beta:
                C[...] = rng.standard_normal(C.shape)
            start = C.astype(np.float64)
            sparse_rank_update(C, rows, csr, D, alpha, beta, S)
            want = alpha * (X[rows].T.astype(np.float64) @ D) + (beta * start if beta else 0)
            helpers.assert_relative_close(C, want, TOL[dtype])
            assert np.isnan(frame[:, 0]).all() and np.isnan(frame[:, -1]).all()
            twin = start.astype(dtype)
            reference.sparse_rank_update(twin, rows, csr, D, alpha, beta, S)
            helpers.assert_relative_close(C, twin, TOL[dtype])


@pytest.mark.parametrize("opt,kw,grad", [("sgd", {}, False), ("sgd", {"momentum": 0.9}, False),
                                         ("sgd", {"weight_decay": 0.01}, False),
                                         ("adam", {}, True), ("sgd", {"momentum": 0.9}, True)])
def test_update_block_nonzeros_matches_the_step_on_the_dense_rows(opt, kw, grad):
    """A first layer's block step from the rows' non-zeros against its twin, the reference's
    update_block on the dense rows, float64: every optimizer path, fused or through the
    gradient (a second piece accumulated)."""
    rng = np.random.default_rng(10)
    n_in, n_out = 23, 24
    X = mostly_zero(rng, 30, n_in)
    csr, _ = compress(X)
    rows = rng.integers(0, 30, 12).astype(np.int64)
    hyper = engine.Hyper.of(opt, 0.05, **kw)
    size = n_in * n_out + n_out
    start = rng.standard_normal(size)
    blk = tuple(np.int64(v) for v in (0, n_in * n_out, n_in, n_out, 0, n_in, 8, 24, 8, 24))
    dz = rng.standard_normal((12, n_out))
    runs = []
    for step in (update_block_nonzeros, reference.update_block_nonzeros):
        flat = start.copy()
        state1 = np.zeros(size) if kw.get("momentum") or opt == "adam" else np.zeros(0)
        slots = Slots(state1, np.zeros(size if opt == "adam" else 0),
                      np.zeros(size if grad else 0), np.zeros(0))
        for piece, accumulate in ((0, False), (1, True)) if grad else ((0, False),):
            step(flat, slots, blk, rows, csr, dz, accumulate, hyper,
                 hyper.opt if piece or not grad else -1, 1, np.empty((n_in, 16)))
        runs.append(flat)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-12, atol=1e-12)
    assert not np.array_equal(runs[0], start)


def test_compressed_x_is_made_once_per_array():
    rng = np.random.default_rng(3)
    X, other = mostly_zero(rng, 20, 8), mostly_zero(rng, 20, 8)
    inputs = CompressedX()
    first = inputs.rows(X), inputs.columns(X)
    assert inputs.rows(X) is first[0] and inputs.columns(X) is first[1]
    assert inputs.density(X) == np.count_nonzero(X) / X.size
    again = inputs.columns(other)
    assert again is not first[1] and np.array_equal(again[2], compress(other)[1][2])
    assert np.array_equal(inputs.rows(other)[2], compress(other)[0][2])


def test_takes_nonzeros_only_for_full_batches_of_mostly_zero_x(monkeypatch):
    rng = np.random.default_rng(4)
    n = 30
    X = mostly_zero(rng, n, 10)
    epochs = np.concatenate([rng.permutation(n), rng.permutation(n)]).astype(np.int64)
    assert takes_nonzeros(CompressedX(), X, epochs, n)
    assert takes_nonzeros(CompressedX(), X, epochs[:n], 10 * n)     # one minibatch, all rows
    assert not takes_nonzeros(None, X, epochs, n)                   # no CompressedX passed
    assert not takes_nonzeros(CompressedX(), X, epochs, n - 1)      # minibatches
    drawn = rng.integers(0, n, 2 * n).astype(np.int64)              # with replacement
    assert not takes_nonzeros(CompressedX(), X, drawn, n)
    assert not takes_nonzeros(CompressedX(), np.ones((n, 10)), epochs, n)     # dense X
    monkeypatch.setattr(engine.plan, "SPARSE_MAX_DENSITY", 0.01)
    assert not takes_nonzeros(CompressedX(), X, epochs, n)


def test_units_take_nonzeros_for_pieces_of_enough_rows_and_whole_vectors():
    rng = np.random.default_rng(11)
    X = mostly_zero(rng, 50, 10, np.float32)
    lanes = VECTOR_BYTES // 4
    assert units.takes_nonzeros(CompressedX(), X, 4 * lanes, 2, 32)
    assert not units.takes_nonzeros(None, X, 4 * lanes, 2, 32)
    assert not units.takes_nonzeros(CompressedX(), X, 4 * lanes, 2, 31)    # few rows a piece
    assert not units.takes_nonzeros(CompressedX(), X, 3 * lanes, 2, 32)    # 1.5 vectors a block
    assert not units.takes_nonzeros(CompressedX(), np.ones((50, 10), np.float32), 4 * lanes,
                                    2, 32)


@pytest.mark.parametrize("layers,batch,n", [((784, 10, 10), 8000, 8000), ((784, 10, 10), 10, 8000),
                                            ((784, 128, 10), 128, 8000),
                                            ((784, 128, 10), 16, 8000),
                                            ((784, 72, 10), 128, 8000),
                                            ((784, 512, 256, 10), 512, 60000)])
def test_info_says_whether_the_first_layer_may_take_the_nonzeros(layers, batch, n):
    """fastmlp info --model's "inputs" line names the non-zeros exactly when the planned call
    takes them for a mostly-zero X (float32, MLP.fit's CompressedX)."""
    from fastmlp.info import plan_rows

    chosen = engine.plan_training(2, batch, layers, n)
    X = mostly_zero(np.random.default_rng(2), n, layers[0], np.float32)
    if chosen.scheme == "rows":
        takes = takes_nonzeros(CompressedX(), X, np.arange(n, dtype=np.int64), batch)
    elif chosen.scheme == "units":
        takes = units.takes_nonzeros(CompressedX(), X, layers[1], chosen.parts, chosen.chunk)
    else:
        takes = False
    line = dict(plan_rows(layers, batch, n, threads=2))["  inputs"]
    assert line.startswith("X's non-zeros") == takes, line


def _train(eng, X, y, layers, order, hyper, act="relu", head="softmax", w=None, threads=1,
           compressed=True, batch=None):
    """Weights and statistics after training on minibatches of ``batch`` rows (None: full
    batch, X.shape[0]) on ``eng`` ("numba" or the reference "numpy"), from the same start."""
    flat = init_params(layers, "he", np.random.default_rng(5), X.dtype)
    net = engine.Network(flat, layers, ACTIVATIONS.index(act), HEADS.index(head))
    state = engine.OptimizerState(hyper.opt_name, flat.size, X.dtype)
    Y = np.zeros((0, layers[-1]), X.dtype)
    batches = engine.Batches(X, y, Y, order, batch or X.shape[0], w,
                             compressed=CompressedX() if compressed else None)
    with thread_limits(threads, 1):
        stats = engine.train(net, state, batches, hyper.hyper, threads, eng, guard=False)
    return flat, stats


class _Opt:
    def __init__(self, name, **kw):
        self.opt_name, self.hyper = name, engine.Hyper.of(name, **kw)


@pytest.mark.parametrize("n,layers,act,opt", [
    (301, (40, 20, 10), "relu", _Opt("sgd", lr=0.1)),
    (130, (40, 9, 7, 3), "tanh", _Opt("sgd", lr=0.05, momentum=0.9)),
    (257, (40, 32, 10), "sigmoid", _Opt("adam", lr=0.01)),
    (1, (40, 6, 3), "relu", _Opt("sgd", lr=0.1)),
])
def test_full_batch_on_nonzeros_matches_the_reference(n, layers, act, opt, monkeypatch):
    """Three epochs of full-batch training on a mostly-zero X (shuffled rows, sample weights),
    in the rows scheme on the non-zeros, against the reference: weights and losses to 1e-10."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    rng = np.random.default_rng(n)
    X = mostly_zero(rng, n, layers[0])
    y = rng.integers(0, layers[-1], n)
    w = rng.random(n) + 0.5
    order = np.concatenate([rng.permutation(n) for _ in range(3)]).astype(np.int64)
    assert takes_nonzeros(CompressedX(), X, order, n)
    got, got_stats = _train("numba", X, y, layers, order, opt, act, w=w)
    want, want_stats = _train("numpy", X, y, layers, order, opt, act, w=w)
    assert got_stats.engine == "numba" and got_stats.steps == 3
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert abs(got_stats.loss_sum - want_stats.loss_sum) <= 1e-10 * abs(want_stats.loss_sum)


def test_full_batch_on_nonzeros_same_bits_on_any_thread_count_and_row_order(monkeypatch):
    """The weights do not depend on the thread count, nor on the order each epoch's rows were
    drawn in (the path takes them in X's order), in float32 as the model's default."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 3)
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 16)
    rng = np.random.default_rng(6)
    n, layers = 200, (64, 20, 10)
    X = mostly_zero(rng, n, 64, np.float32)
    y = rng.integers(0, 10, n)
    shuffled = np.concatenate([rng.permutation(n) for _ in range(2)]).astype(np.int64)
    in_order = np.tile(np.arange(n, dtype=np.int64), 2)
    runs = [_train("numba", X, y, layers, order, _Opt("sgd", lr=0.1), threads=t)[0]
            for t, order in ((1, shuffled), (2, shuffled), (3, shuffled), (2, in_order))]
    assert all(np.array_equal(runs[0], r) for r in runs[1:])
    dense = _train("numba", X, y, layers, shuffled, _Opt("sgd", lr=0.1), compressed=False)[0]
    assert not np.array_equal(runs[0], dense)       # the dense products: other roundings
    np.testing.assert_allclose(runs[0], dense, rtol=1e-4, atol=1e-5)


def test_full_batch_step_on_nonzeros_matches_finite_differences(monkeypatch):
    """One full-batch SGD step of lr 1 on the non-zeros (2 threads, blocks of 4 rows) moves the
    weights by minus the gradient: flat0 - flat1 against central differences of the reference
    loss."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 4)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)
    monkeypatch.setattr(engine.plan, "SPARSE_MAX_DENSITY", 0.5)
    rng = np.random.default_rng(7)
    layers = (30, 9, 3)
    X = mostly_zero(rng, 13, 30, density=0.3)
    y = rng.integers(0, 3, 13)
    Y = np.zeros((0, 3))
    flat = helpers.off_the_kinks(layers, X)
    stepped = flat.copy()
    net = engine.Network(stepped, layers, ACTIVATIONS.index("relu"), HEADS.index("softmax"))
    batches = engine.Batches(X, y, Y, np.arange(13, dtype=np.int64), 13,
                             compressed=CompressedX())
    assert takes_nonzeros(CompressedX(), X, batches.order, 13)
    with thread_limits(2, 1):
        engine.train(net, engine.OptimizerState("sgd", 0, np.float64), batches,
                     engine.Hyper.of("sgd", 1.0), 2, guard=False)
    numeric = helpers.central_differences(
        lambda f: reference.loss_and_grad(layer_views(f, layers), X, y, Y, "relu", "softmax")[0],
        flat)
    err = np.abs((flat - stepped) - numeric)
    assert err.max() < 1e-7 and err.mean() < 1e-8, f"max abs error {err.max():.3g}"


def test_fit_full_batch_on_mostly_zero_x_matches_the_reference():
    """MLP.fit, full batch on mostly-zero X, float64: the compiled engine (on the non-zeros)
    and the reference give the same losses and weights over 3 epochs."""
    rng = np.random.default_rng(8)
    X = mostly_zero(rng, 300, 50)
    y = rng.integers(0, 4, 300)
    runs = []
    for eng in ("numba", "numpy"):
        model = MLP((50, 16, 4), seed=1, dtype="float64", engine=eng)
        hist = model.fit(X, y, epochs=3, batch_size=None, lr=0.1)
        runs.append((hist["loss"], model._flat.copy()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-10)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch,act,opt", [(40, "relu", _Opt("sgd", lr=0.1)),
                                           (300, "sigmoid", _Opt("sgd", lr=0.05, momentum=0.9)),
                                           (64, "tanh", _Opt("adam", lr=0.01))])
def test_units_minibatches_on_nonzeros_match_the_reference(batch, act, opt, monkeypatch):
    """Three epochs of minibatches in the units scheme on a mostly-zero X (one minibatch in
    pieces of 128 rows, one smaller last minibatch, rows drawn with replacement in the first
    case), the first layer from the non-zeros, against the reference, float64: to 1e-10."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "units")
    rng = np.random.default_rng(batch)
    n, layers = 330, (40, 16, 10)
    X = mostly_zero(rng, n, 40)
    y = rng.integers(0, 10, n)
    w = rng.random(n) + 0.5
    order = (rng.integers(0, n, 3 * n) if batch == 40 else
             np.concatenate([rng.permutation(n) for _ in range(3)])).astype(np.int64)
    how = engine.plan_training(1, batch, layers, len(order))
    assert how.scheme == "units" and units.takes_nonzeros(
        CompressedX(), X, layers[1], how.parts, min(batch, how.chunk))
    got, got_stats = _train("numba", X, y, layers, order, opt, act, w=w, batch=batch)
    want, want_stats = _train("numpy", X, y, layers, order, opt, act, w=w, batch=batch)
    assert got_stats.engine == "numba"
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    assert abs(got_stats.loss_sum - want_stats.loss_sum) <= 1e-10 * abs(want_stats.loss_sum)


def test_units_on_nonzeros_same_bits_on_any_thread_count(monkeypatch):
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "units")
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)
    monkeypatch.setattr(engine.plan, "MIN_UNITS_PER_THREAD", 1)
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)
    rng = np.random.default_rng(12)
    n, layers = 256, (64, 32, 10)
    X = mostly_zero(rng, n, 64, np.float32)
    y = rng.integers(0, 10, n)
    order = np.concatenate([rng.permutation(n) for _ in range(2)]).astype(np.int64)
    how = engine.plan_training(2, 64, layers, len(order))
    assert how.parts == 2 and units.takes_nonzeros(CompressedX(), X, 32, 2, 64)
    runs = [_train("numba", X, y, layers, order, _Opt("sgd", lr=0.1), threads=t, batch=64)[0]
            for t in (1, 2)]
    assert np.array_equal(runs[0], runs[1])
    dense = _train("numba", X, y, layers, order, _Opt("sgd", lr=0.1), batch=64,
                   compressed=False)[0]
    assert not np.array_equal(runs[0], dense)
    np.testing.assert_allclose(runs[0], dense, rtol=1e-4, atol=1e-5)


def test_units_step_on_nonzeros_matches_finite_differences(monkeypatch):
    """One SGD step of lr 1 on a minibatch of all 40 rows in the units scheme, the first layer
    (32 units, whole vectors) from the non-zeros: flat0 - flat1 against central differences."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "units")
    monkeypatch.setattr(engine.plan, "SPARSE_MAX_DENSITY", 0.5)
    rng = np.random.default_rng(13)
    layers = (12, 16, 3)
    X = mostly_zero(rng, 40, 12, density=0.3)
    y = rng.integers(0, 3, 40)
    Y = np.zeros((0, 3))
    flat = helpers.off_the_kinks(layers, X)
    stepped = flat.copy()
    net = engine.Network(stepped, layers, ACTIVATIONS.index("relu"), HEADS.index("softmax"))
    batches = engine.Batches(X, y, Y, np.arange(40, dtype=np.int64), 40, compressed=CompressedX())
    how = engine.plan_training(1, 40, layers, 40)
    assert how.scheme == "units" and units.takes_nonzeros(CompressedX(), X, 16, how.parts, 40)
    engine.train(net, engine.OptimizerState("sgd", 0, np.float64), batches,
                 engine.Hyper.of("sgd", 1.0), 1, guard=False)
    numeric = helpers.central_differences(
        lambda f: reference.loss_and_grad(layer_views(f, layers), X, y, Y, "relu", "softmax")[0],
        flat)
    err = np.abs((flat - stepped) - numeric)
    assert err.max() < 1e-7 and err.mean() < 1e-8, f"max abs error {err.max():.3g}"
