"""The compiled engine against the reference: gradients, whole training runs, determinism."""

import platform
import subprocess
import sys

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import helpers  # noqa: I001 (the tests folder is on sys.path)
from fastmlp import MLP, engine, reference
from fastmlp.codes import ACTIVATIONS, HEADS
from fastmlp.params import init_params, layer_views, param_count
from fastmlp.engine.lowlevel.threads import thread_limits

from helpers import central_differences

LAYERS = (5, 7, 6, 4)


def problem(head, n=11, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, LAYERS[0])).astype(dtype)
    if head == "identity":
        return X, np.zeros(0, np.int64), rng.standard_normal((n, LAYERS[-1])).astype(dtype)
    if head == "logistic":      # multilabel: a 0/1 matrix
        return X, np.zeros(0, np.int64), rng.integers(0, 2, (n, LAYERS[-1])).astype(dtype)
    return X, rng.integers(0, LAYERS[-1], n), np.zeros((0, LAYERS[-1]), dtype)


def compiled_loss_and_grad(flat, act, head, X, y, Y):
    grad = np.empty_like(flat)
    loss, _ = helpers.loss_and_grad(flat, np.array(LAYERS), ACTIVATIONS.index(act), HEADS.index(head),
                                   X, y, Y, grad)
    return loss, grad


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("head", HEADS)
def test_compiled_gradient_matches_finite_differences(act, head):
    X, y, Y = problem(head)
    flat = helpers.off_the_kinks(LAYERS, X, head)
    loss, grad = compiled_loss_and_grad(flat, act, head, X, y, Y)
    numeric = central_differences(lambda f: compiled_loss_and_grad(f, act, head, X, y, Y)[0], flat)
    err = np.abs(grad - numeric)
    case = f"{act} x {head}"
    assert err.max() < 1e-7, f"{case}: max abs error {err.max():.3g}"
    assert err.mean() < 1e-8, f"{case}: mean abs error {err.mean():.3g}"
    ref_loss, ref_grads, _ = reference.loss_and_grad(layer_views(flat, LAYERS), X, y, Y, act, head)
    assert loss == pytest.approx(ref_loss, rel=1e-12), f"{case}: fused loss differs from the reference"
    ref_flat = np.concatenate([t.ravel() for pair in ref_grads for t in pair])
    np.testing.assert_allclose(grad, ref_flat, rtol=1e-10, atol=1e-13, err_msg=case)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("opt,momentum,nesterov,decay", [(0, 0.0, False, 0.0), (0, 0.0, False, 0.01),
                                                         (0, 0.9, False, 0.01), (0, 0.9, True, 0.01),
                                                         (1, 0.0, False, 0.0)])
@pytest.mark.parametrize("batch,parts,blas,scheme", [
    (4, 1, 1, "parts"), (16, 1, 1, "parts"), (11, 1, 2, "parts"), (23, 1, 2, "parts"),
    (23, 2, 1, "parts"), (5, 3, 1, "parts"), (8, 2, 1, "parts"),
    (11, 1, 1, "units"), (23, 2, 1, "units"), (5, 3, 1, "units"), (8, 2, 1, "units"),
    (1, 2, 1, "units"), (16, 8, 1, "units"),
    (23, 2, 1, "rows"), (11, 3, 1, "rows")])
def test_train_batches_matches_reference(dtype, head, opt, momentum, nesterov, decay, batch, parts,
                                         blas, scheme, monkeypatch, act="relu"):
    """One call of whole minibatches (the last one short) on ``parts`` threads, each cut into
    parts of rows or of units (``scheme``; a part may be empty: 8 threads and 4 output units)
    with ``blas`` BLAS threads."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    if scheme == "rows" and engine.plan.BLOCK_ROWS > 8:
        # blocks of 3 rows in groups of up to 2 blocks: several blocks per group, several groups
        monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 3)
        monkeypatch.setattr(engine.plan, "MAX_GROUPS", 2)
    X, y, Y = problem(head, n=23, dtype=dtype)
    flat0 = init_params(LAYERS, "he", np.random.default_rng(1), dtype)
    order = np.random.default_rng(2).permutation(23)
    results = []
    for eng, n_parts, n_blas in ((reference, 1, 1), (engine, parts, blas)):
        flat = flat0.copy()
        s1 = np.zeros_like(flat)
        s2 = np.zeros_like(flat) if opt == 1 else np.zeros(0, dtype)
        with thread_limits(n_parts, n_blas):
            stats = helpers.train_batches(eng, flat, np.array(LAYERS), ACTIVATIONS.index(act),
                                      HEADS.index(head), X, y, Y, order, batch, opt, 0.05, momentum,
                                      nesterov, decay, 0.9, 0.999, 1e-8, s1, s2, 0)
        results.append((flat, s1, stats))
    (ref_flat, ref_s1, ref_stats), (flat, s1, stats) = results
    rtol, atol = (1e-10, 1e-13) if dtype == np.float64 else (1e-4, 1e-5)
    case = (f"{head} {act} opt={opt} momentum={momentum} decay={decay} batch={batch} "
            f"parts={parts} blas={blas} {scheme}")
    np.testing.assert_allclose(flat, ref_flat, rtol=rtol, atol=atol, err_msg=case)
    np.testing.assert_allclose(s1, ref_s1, rtol=rtol, atol=atol, err_msg=case + " state")
    np.testing.assert_allclose(stats[0], ref_stats[0], rtol=rtol * 10, err_msg=case + " loss")
    assert list(stats[1:5]) == list(ref_stats[1:5]), case


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("opt,momentum", [(0, 0.0), (0, 0.9), (1, 0.0)])
@pytest.mark.parametrize("batch,parts,scheme,chunk", [(8, 2, "parts", 128), (8, 1, "units", 128),
                                                      (8, 2, "units", 128), (16, 3, "units", 5),
                                                      (16, 2, "rows", 128)])
def test_every_hidden_activation_matches_reference(dtype, act, opt, momentum, batch, parts, scheme,
                                                   chunk, monkeypatch):
    """Each activation of the hidden layers: the units scheme applies relu and identity in the
    tiles' epilogue and the others in passes of their own, forward and backward."""
    monkeypatch.setattr(engine.plan, "CHUNK_ROWS", chunk)
    test_train_batches_matches_reference(dtype, "softmax", opt, momentum, False, 0.01, batch, parts,
                                         1, scheme, monkeypatch, act=act)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("opt,momentum,nesterov,decay", [(0, 0.0, False, 0.0), (0, 0.0, False, 0.01),
                                                         (0, 0.9, False, 0.01), (0, 0.9, True, 0.01),
                                                         (1, 0.0, False, 0.0)])
@pytest.mark.parametrize("batch,parts,chunk", [(11, 1, 4), (23, 2, 5), (8, 3, 3), (16, 2, 1)])
def test_units_minibatch_in_pieces_matches_reference(dtype, head, opt, momentum, nesterov, decay,
                                                     batch, parts, chunk, monkeypatch):
    """The units scheme taking each minibatch in pieces of ``chunk`` rows (gradients added up
    over the pieces, one optimizer step), the last piece and the last minibatch short."""
    monkeypatch.setattr(engine.plan, "CHUNK_ROWS", chunk)
    test_train_batches_matches_reference(dtype, head, opt, momentum, nesterov, decay, batch, parts,
                                         1, "units", monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("opt,momentum,nesterov,decay",
                         [(0, 0.0, False, 0.01), (0, 0.9, False, 0.0), (1, 0.0, False, 0.0)])
@pytest.mark.parametrize("batch,parts,chunk", [(11, 1, 128), (23, 2, 128), (8, 3, 3), (16, 2, 5)])
@pytest.mark.parametrize("pad", [1, 3])
def test_units_hidden_rows_padded_match_reference(dtype, head, opt, momentum, nesterov, decay,
                                                  batch, parts, chunk, pad, monkeypatch):
    """The units scheme with the hidden layers' rows ``pad`` elements further apart than their
    width (what tiles.row_stride does for widths whose rows would share few L1 sets)."""
    monkeypatch.setattr(engine.units, "row_stride", lambda width, itemsize: width + pad)
    monkeypatch.setattr(engine.plan, "CHUNK_ROWS", chunk)
    test_train_batches_matches_reference(dtype, head, opt, momentum, nesterov, decay, batch, parts,
                                         1, "units", monkeypatch)


def test_row_stride_pads_rows_that_share_few_l1_sets():
    from fastmlp.engine.lowlevel.tiles import DEPTH, _depth, row_stride
    for width, itemsize, padded in [(10, 4, 10), (128, 4, 128), (256, 4, 272), (512, 4, 528),
                                    (128, 8, 136), (100, 8, 100)]:
        assert row_stride(width, itemsize) == padded, (width, itemsize)
        assert _depth(padded * itemsize) == DEPTH, (width, itemsize)


@pytest.mark.parametrize("scheme,threads", [("rows", 1), ("rows", 2), ("units", 1), ("units", 2),
                                            ("parts", 1), ("parts", 2)])
@pytest.mark.parametrize("head", ["softmax", "sigmoid", "identity"])
def test_a_step_allocates_nothing(scheme, threads, head, monkeypatch):
    """Every buffer of a training call is allocated once per call, none per minibatch: a call of
    16 minibatches makes as many of Numba's allocations as one of 4 (tiny minibatches of 3
    rows, with per-sample weights; 40 inputs into 21 units: dot products in the rows scheme,
    whose plain SGD step is fused into them)."""
    from numba.core.runtime import _nrt_python, rtsys

    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)     # 2 threads on a tiny net
    monkeypatch.setattr(engine.plan, "MIN_BATCHES_FOR_UNITS", 1)
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)              # whatever the machine has
    layers = np.array([40, 21, 4])
    rng = np.random.default_rng(3)
    X = rng.standard_normal((48, 40)).astype(np.float32)
    y, Y = rng.integers(0, 4, 48), np.zeros((0, 4), np.float32)
    if head == "identity":
        y, Y = np.zeros(0, np.int64), rng.standard_normal((48, 4)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, 48).astype(np.float32)
    flat = init_params(layers, "he", np.random.default_rng(1), np.float32)
    allocations = []
    enabled = _nrt_python.memsys_stats_enabled()
    _nrt_python.memsys_enable_stats()
    try:
        for steps in (4, 4, 16):                # the first call may compile
            order = rng.permutation(48)[:3 * steps]
            before = rtsys.get_allocation_stats().alloc
            with thread_limits(threads, 1):
                stats = helpers.train_batches(engine, flat, layers, ACTIVATIONS.index("sigmoid"),
                                              HEADS.index(head), X, y, Y, order, 3, 0, 0.05, 0.0,
                                              False, 0.0, 0.9, 0.999, 1e-8, np.zeros(0, np.float32),
                                              np.zeros(0, np.float32), 0, w)
            allocations.append(rtsys.get_allocation_stats().alloc - before)
            assert stats[3] == steps
    finally:
        if not enabled:
            _nrt_python.memsys_disable_stats()
    assert allocations[1] == allocations[2], f"{scheme} on {threads}: allocations {allocations}"


@pytest.mark.parametrize("optimizer,kw", [("sgd", {}), ("sgd", {"momentum": 0.9}),
                                          ("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
                                          ("adam", {"lr": 0.01})])
@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity", "logistic"])
def test_three_epoch_trajectory_matches_numpy_engine(optimizer, kw, batch_size, output):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 6))
    y = {"identity": lambda: rng.standard_normal((70, 3)),
         "logistic": lambda: rng.integers(0, 2, (70, 3))}.get(output, lambda: rng.integers(0, 3, 70))()
    histories, weights = [], []
    for eng in ("numba", "numpy"):
        model = MLP([6, 8, 3], activation="tanh", output=output, dtype="float64", seed=3, engine=eng)
        hist = model.fit(X, y, epochs=3, batch_size=batch_size, optimizer=optimizer,
                         **{"lr": 0.1, **kw})
        histories.append((hist["loss"], hist.get("accuracy")))
        weights.append(model._flat.copy())
    np.testing.assert_allclose(histories[0][0], histories[1][0], rtol=1e-8, atol=1e-12)
    assert histories[0][1] == histories[1][1]
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("scheme", ["parts", "units", "rows"])
@pytest.mark.parametrize("batch_size", [1, 7, None])
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_three_epoch_trajectory_of_each_scheme_matches_numpy_engine(scheme, batch_size, output,
                                                                      monkeypatch):
    """Every scheme forced, on 2 threads, minibatches of 1, of 7 (37 rows: the last one short)
    and the full batch, float64, 3 epochs with momentum: the numpy engine's losses and weights.
    The rows scheme runs in blocks of 3 rows, in groups of up to 2 blocks."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 3)
    monkeypatch.setattr(engine.plan, "MAX_GROUPS", 2)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)     # 2 threads on a tiny net
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)              # whatever the machine has
    assert engine.plan_training(2, batch_size or 37, (6, 9, 5, 3), 37).threads == 2
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((37, 6)), rng.integers(0, 3, 37)
    runs = []
    for eng in ("numba", "numpy"):
        model = MLP([6, 9, 5, 3], activation="tanh", output=output, dtype="float64", seed=2,
                    engine=eng, threads=2)
        hist = model.fit(X, y, epochs=3, batch_size=batch_size, lr=0.05, momentum=0.9)
        runs.append((hist["loss"], model._flat.copy()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("fit", [{}, {"momentum": 0.9}, {"optimizer": "adam", "lr": 0.01}])
@pytest.mark.parametrize("dtype,tol,batch_size", [("float64", 1e-10, 1), ("float64", 1e-10, 7),
                                                  ("float64", 1e-10, None),
                                                  ("float32", 1e-4, None)])
def test_rows_scheme_with_dot_products_matches_the_numpy_engine(act, batch_size, fit, dtype, tol,
                                                                monkeypatch):
    """Layers narrow enough for the dot products of lowlevel.dots (70 inputs into 21 units in
    either dtype on any vector width; 21 into 9 too where 21 is 4 vectors: float64 on AVX2; 9
    into 3 never), 3 epochs on 2 threads in blocks of 3 rows, groups of up to 2: the numpy
    engine's losses and weights (float32 over 3 full-batch steps: a hundred steps of rounding
    apart grow past its tolerance). Plain SGD on minibatches of 1 row takes the step fused into
    the dot products."""
    from fastmlp.engine.lowlevel.dots import dots_pay

    assert dots_pay(70, 21, np.dtype(dtype).itemsize) and not dots_pay(9, 3, 8)
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 3)
    monkeypatch.setattr(engine.plan, "MAX_GROUPS", 2)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)     # 2 threads on a small net
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)              # whatever the machine has
    assert engine.plan_training(2, batch_size or 37, (70, 21, 9, 3), 37).threads == 2
    rng = np.random.default_rng(8)
    X, y = rng.standard_normal((37, 70)), rng.integers(0, 3, 37)
    runs = []
    for eng in ("numba", "numpy"):
        model = MLP([70, 21, 9, 3], activation=act, dtype=dtype, seed=4, engine=eng, threads=2)
        hist = model.fit(X, y, epochs=3, batch_size=batch_size, **{"lr": 0.05, **fit})
        runs.append((hist["loss"], model._flat.copy()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=tol, atol=tol)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=tol, atol=tol)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_rows_scheme_step_with_dot_products_matches_finite_differences(act, monkeypatch):
    """One full-batch SGD step of lr 1 in the rows scheme (blocks of 4 rows on 2 threads; the
    40 -> 9 layer by dot products, 9 -> 3 by the tiles) moves the weights by minus the
    gradient: flat0 - flat1 against central differences of the reference loss."""
    from fastmlp.engine.lowlevel.dots import dots_pay

    layers = (40, 9, 3)
    assert dots_pay(40, 9, 8) and not dots_pay(9, 3, 8)
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 4)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)     # 2 threads on a tiny net
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)
    assert engine.plan_training(2, 13, layers, 13).threads == 2
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((13, 40)), rng.integers(0, 3, 13)
    Y = np.zeros((0, 3))
    code_act, code_head = ACTIVATIONS.index(act), HEADS.index("softmax")
    flat = helpers.off_the_kinks(layers, X)
    stepped = flat.copy()
    state = np.zeros(0)
    with thread_limits(2, 1):
        helpers.train_batches(engine, stepped, np.array(layers), code_act, code_head, X, y, Y,
                              np.arange(13), 13, 0, 1.0, 0.0, False, 0.0, 0.9, 0.999, 1e-8,
                              state, state, 0)
    numeric = central_differences(
        lambda f: reference.loss_and_grad(layer_views(f, layers), X, y, Y, act, "softmax")[0],
        flat)
    err = np.abs((flat - stepped) - numeric)
    assert err.max() < 1e-7 and err.mean() < 1e-8, f"{act}: max abs error {err.max():.3g}"


@pytest.mark.parametrize("threads,batch_size,scheme", [(1, 256, "parts"), (2, 256, "parts"),
                                                      (1, 32, "units"), (2, 32, "units"),
                                                      (3, 20, "units"), (2, 300, "units")])
def test_same_seed_same_threads_is_bitwise_identical(threads, batch_size, scheme, monkeypatch):
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 3)              # whatever the machine has
    rng = np.random.default_rng(0)
    X, y = rng.random((600, 64), dtype=np.float32), rng.integers(0, 5, 600)
    layers = [64, 256, 128, 5]        # enough work per minibatch that the plan keeps every thread
    assert engine.plan_training(threads, batch_size, layers, 600).threads == threads
    runs = []
    for _ in range(2):
        model = MLP(layers, seed=7, threads=threads)
        model.fit(X, y, epochs=2, batch_size=batch_size, optimizer="sgd", momentum=0.9, lr=0.05)
        runs.append((model._flat.copy(), model.predict_proba(X)))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("optimizer,kw", [("sgd", {}), ("sgd", {"batch_size": 12}),
                                          ("sgd", {"momentum": 0.9, "weight_decay": 1e-3}),
                                          ("sgd", {"momentum": 0.9, "nesterov": True}),
                                          ("adam", {"lr": 0.01})])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layers", [[64, 40, 5], [64, 24, 16, 5], [64, 21, 9, 5]])
def test_rows_scheme_gives_the_same_bits_on_any_thread_count(optimizer, kw, dtype, layers,
                                                             monkeypatch):
    """Full-batch and large-minibatch steps in the rows scheme: blocks and groups are fixed by
    the minibatch, so 1, 2 and 3 threads (more threads than cores included) give bitwise
    identical weights. 64 -> 21 takes the dot products on every vector width (W and its
    gradient transposed, each thread stepping its share of both; plain SGD on minibatches of
    one block steps in the dot products)."""
    from fastmlp.engine.lowlevel.dots import dots_pay

    assert dots_pay(64, 21, np.dtype(dtype).itemsize)
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 16)
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 64)), rng.integers(0, 5, 300)
    runs = []
    for threads in (1, 2, 3):
        model = MLP(layers, seed=7, threads=threads, dtype=dtype)
        model.fit(X, y, epochs=3, optimizer=optimizer,
                  **{"batch_size": None if len(layers) == 3 else 128, "lr": 0.05, **kw})
        runs.append(model._flat.copy())
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2])


def test_rows_scheme_full_batch_takes_x_in_its_order(monkeypatch):
    """A full batch's rows go through the rows scheme in X's order, whatever order each
    epoch drew them in: the same bits for any shuffle; a minibatch of fewer rows keeps its
    drawn order."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 16)
    rng = np.random.default_rng(3)
    n, layers = 100, (20, 12, 4)
    X, y = rng.standard_normal((n, 20)).astype(np.float32), rng.integers(0, 4, n)
    shuffled = np.concatenate([rng.permutation(n) for _ in range(2)]).astype(np.int64)
    in_order = np.tile(np.arange(n, dtype=np.int64), 2)

    def trained(order, batch):
        flat = init_params(layers, "he", np.random.default_rng(4), np.float32)
        net = engine.Network(flat, layers, ACTIVATIONS.index("relu"), HEADS.index("softmax"))
        engine.train(net, engine.OptimizerState("sgd", flat.size, np.float32),
                     engine.Batches(X, y, np.zeros((0, 4), np.float32), order, batch),
                     engine.Hyper.of("sgd", 0.1), 1, guard=False)
        return flat

    assert engine.rows.full_batches(X, shuffled, n) and not engine.rows.full_batches(X, shuffled,
                                                                                     n - 1)
    repeated = in_order.copy()
    repeated[n + 1] = 0                         # the second epoch takes row 0 twice
    assert engine.rows.full_batches(X, in_order, n)
    assert not engine.rows.full_batches(X, repeated, n)
    assert np.array_equal(trained(shuffled, n), trained(in_order, n))
    assert not np.array_equal(trained(shuffled, 50), trained(in_order, 50))


@pytest.mark.parametrize("layers", [[64, 5], [64, 9, 5]])
@pytest.mark.parametrize("threads", [1, 3])
def test_rows_scheme_full_batch_matches_the_numpy_engine(layers, threads, monkeypatch):
    """Three full-batch steps in blocks of 16 rows (a net without a hidden layer too) against
    the reference, float64."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 16)
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((150, 64)), rng.integers(0, 5, 150)
    weights = []
    for eng in ("numba", "numpy"):
        model = MLP(layers, seed=2, dtype="float64", engine=eng, threads=threads)
        model.fit(X, y, epochs=3, batch_size=None, lr=0.1, momentum=0.9)
        weights.append(model._flat.copy())
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("head", ["softmax", "logistic"])
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 5, 4097, 9000])
def test_predict_and_evaluate_match_reference(threads, n, head):
    rng = np.random.default_rng(0)
    layers = np.array([9, 13, 4])
    flat = init_params(tuple(layers), "he", rng, np.float64)
    X, y = rng.standard_normal((n, 9)), rng.integers(0, 4, n)
    Y = np.zeros((0, 4))
    if head == "logistic":      # targets are a 0/1 matrix, no class indices
        y, Y = np.zeros(0, np.int64), rng.integers(0, 2, (n, 4)).astype(np.float64)
    code = HEADS.index(head)
    with thread_limits(threads, 1):
        out = helpers.predict_batches("numba", flat, layers, 1, code, X, 4096)
        loss, correct = helpers.evaluate_batches("numba", flat, layers, 1, code, X, y, Y, 4096)
    np.testing.assert_allclose(out, helpers.predict_batches("numpy", flat, layers, 1, code, X), rtol=1e-10)
    ref_loss, ref_correct = helpers.evaluate_batches("numpy", flat, layers, 1, code, X, y, Y)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    assert correct == ref_correct


@pytest.mark.parametrize("threads,scheme,chunk", [(1, None, 128), (2, "parts", 128),
                                                 (2, "units", 128), (3, "units", 128),
                                                 (2, "units", 4), (2, "units", 3),
                                                 (1, "rows", 128), (2, "rows", 3)])
def test_divergence_stops_before_the_bad_update(threads, scheme, chunk, monkeypatch):
    """The third minibatch diverges: in its first piece, or (pieces of 3 rows) its second, after
    a finite first piece whose gradient must not be applied either."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    monkeypatch.setattr(engine.plan, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", chunk)
    X, y, Y = problem("softmax", n=40)
    flat = init_params(LAYERS, "he", np.random.default_rng(0), np.float64)
    X[23:] = np.inf    # the third minibatch of 10 (rows 20-29) gives inf - inf = nan
    before = flat.copy()
    runs = []
    for n in (40, 20):     # the run that diverges, and one of the first two minibatches only
        f = before.copy()
        with thread_limits(threads, 1):
            stats = helpers.train_batches(engine, f, np.array(LAYERS), 1, 0, X, y, Y, np.arange(n), 10, 0,
                                         1e-9, 0.0, False, 0.0, 0.9, 0.999, 1e-8,
                                         np.zeros_like(f), np.zeros(0), 0)
        runs.append((f, stats))
    (flat, stats), (flat_20, _) = runs
    assert stats[4] == 2 and not np.isfinite(stats[5])
    assert stats[3] == 2 and stats[2] == 20    # two batches done before it
    assert np.isfinite(flat).all() and not np.array_equal(flat, before)
    assert np.array_equal(flat, flat_20)       # and nothing of the third applied


@pytest.mark.parametrize("scheme,threads", [("parts", 1), ("units", 2), ("rows", 2)])
@pytest.mark.parametrize("head", ["softmax", "identity"])
def test_trace_of_each_minibatch_matches_the_numpy_engine(scheme, threads, head, monkeypatch):
    """train(trace=True) gives each minibatch's [loss * weight, correct, samples, weight], as the
    reference does, up to the one that diverged (rows 30-39 are inf); its columns add up to the
    call's totals."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    X, y, Y = problem(head, n=47)
    X[30:40] = np.inf
    w = np.linspace(0.5, 1.5, 47)
    traces = []
    for eng in ("numpy", "numba"):
        flat = init_params(LAYERS, "he", np.random.default_rng(0), np.float64)
        net = engine.Network(flat, LAYERS, ACTIVATIONS.index("tanh"), HEADS.index(head))
        state = engine.OptimizerState("sgd", flat.size, flat.dtype)
        batches = engine.Batches(X, y, Y, np.arange(47), 6, w)
        stats = engine.train(net, state, batches, engine.Hyper.of("sgd", 0.05), threads, eng,
                             guard=False, trace=True)
        assert stats.trace.shape == (5, 4) and stats.diverged_at == 5
        np.testing.assert_allclose(stats.trace.sum(axis=0),
                                   [stats.loss_sum, stats.correct, stats.samples, stats.weight],
                                   rtol=1e-12)
        traces.append(stats.trace)
    np.testing.assert_allclose(traces[1], traces[0], rtol=1e-10)
    np.testing.assert_array_equal(traces[1][:, 2], [6] * 5)
    assert engine.train(net, state, batches._replace(order=np.arange(30)),
                        engine.Hyper.of("sgd", 0.05), threads).trace is None


@pytest.mark.parametrize("threads", [1, 2])
def test_divergence_in_the_rows_scheme_with_dot_products_keeps_the_weights(threads, monkeypatch):
    """As above, with a first layer that takes the dot products (W and its gradient kept
    transposed during the call): the third minibatch diverges in its second block, and the
    weights carry nothing of it."""
    from fastmlp.engine.lowlevel.dots import dots_pay

    layers = (40, 9, 4)
    assert dots_pay(40, 9, 8)
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", "rows")
    monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 3)
    monkeypatch.setattr(engine.plan, "MIN_MACS_PER_THREAD", 1)
    rng = np.random.default_rng(2)
    X, y, Y = rng.standard_normal((40, 40)), rng.integers(0, 4, 40), np.zeros((0, 4))
    X[23:] = np.inf
    before = init_params(layers, "he", np.random.default_rng(0), np.float64)
    runs = []
    for n in (40, 20):
        f = before.copy()
        with thread_limits(threads, 1):
            stats = helpers.train_batches(engine, f, np.array(layers), 1, 0, X, y, Y, np.arange(n),
                                          10, 0, 0.1, 0.0, False, 0.0, 0.9, 0.999, 1e-8,
                                          np.zeros(0), np.zeros(0), 0)
        runs.append((f, stats))
    (flat, stats), (flat_20, _) = runs
    assert stats[4] == 2 and stats[3] == 2
    assert np.isfinite(flat).all() and np.array_equal(flat, flat_20)


def test_thread_settings_are_restored_after_fit_and_predict():
    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    numba_before, blas_before = numba.get_num_threads(), blas_threads()
    model = MLP([4, 8, 2], threads=1)
    X, y = np.random.default_rng(0).random((50, 4)), np.arange(50) % 2
    model.fit(X, y, epochs=1, batch_size=10)
    model.predict(X)
    assert numba.get_num_threads() == numba_before
    assert blas_threads() == blas_before


def test_param_count_of_the_benchmark_models():
    assert param_count((784, 128, 10)) == 784 * 128 + 128 + 128 * 10 + 10


# ---------------------------------------------------------------- per-sample weights

def weights_for(n, dtype=np.float64, seed=5):
    """Weights in [0, 2) with exact zeros (samples that must not count)."""
    w = np.random.default_rng(seed).uniform(0, 2, n).astype(dtype)
    w[::4] = 0
    return w


@pytest.mark.parametrize("head", HEADS)
def test_weighted_gradient_matches_finite_differences(head):
    X, y, Y = problem(head)
    w = weights_for(len(X))
    flat = init_params(LAYERS, "uniform", np.random.default_rng(0), np.float64)

    def loss_grad(f):
        grad = np.empty_like(f)
        loss, _ = helpers.loss_and_grad(f, np.array(LAYERS), ACTIVATIONS.index("tanh"),
                                       HEADS.index(head), X, y, Y, grad, w)
        return loss, grad

    loss, grad = loss_grad(flat)
    numeric = central_differences(lambda f: loss_grad(f)[0], flat)
    err = np.abs(grad - numeric)
    assert err.max() < 1e-7 and err.mean() < 1e-8, f"weighted {head}: max abs error {err.max():.3g}"
    # the fused loss is the weighted mean of the per-sample losses
    per_sample = [reference.loss_and_grad(layer_views(flat, LAYERS), X[i:i + 1], y[i:i + 1] if y.size else y,
                                          Y[i:i + 1] if Y.size else Y, "tanh", head)[0] for i in range(len(X))]
    assert loss == pytest.approx(np.average(per_sample, weights=w), rel=1e-12), head
    ref_loss, ref_grads, _ = reference.loss_and_grad(layer_views(flat, LAYERS), X, y, Y, "tanh", head, w)
    assert loss == pytest.approx(ref_loss, rel=1e-12), head
    ref_flat = np.concatenate([t.ravel() for pair in ref_grads for t in pair])
    np.testing.assert_allclose(grad, ref_flat, rtol=1e-10, atol=1e-13, err_msg=head)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("opt,momentum,decay", [(0, 0.0, 0.01), (0, 0.9, 0.0), (1, 0.0, 0.01)])
@pytest.mark.parametrize("batch,parts,scheme", [(4, 1, "parts"), (23, 1, "parts"), (5, 3, "parts"),
                                                (8, 2, "parts"), (4, 1, "units"), (4, 2, "units"),
                                                (5, 3, "units")])
def test_weighted_train_batches_matches_reference(dtype, head, opt, momentum, decay, batch, parts,
                                                  scheme, monkeypatch):
    """Weighted minibatches (one of weight 0 with batch 4: the rows 0, 4, 8, 12 have weight 0,
    and the order puts some of them together) on both engines: same weights, loss and weight."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    if scheme == "rows" and engine.plan.BLOCK_ROWS > 8:
        # blocks of 3 rows in groups of up to 2 blocks: several blocks per group, several groups
        monkeypatch.setattr(engine.plan, "BLOCK_ROWS", 3)
        monkeypatch.setattr(engine.plan, "MAX_GROUPS", 2)
    X, y, Y = problem(head, n=23, dtype=dtype)
    w = weights_for(23, dtype)
    flat0 = init_params(LAYERS, "he", np.random.default_rng(1), dtype)
    order = np.concatenate([[0, 4, 8, 12], np.random.default_rng(2).permutation(
        np.setdiff1d(np.arange(23), [0, 4, 8, 12]))])
    results = []
    for eng, n_parts in ((reference, 1), (engine, parts)):
        flat = flat0.copy()
        s1 = np.zeros_like(flat)
        s2 = np.zeros_like(flat) if opt == 1 else np.zeros(0, dtype)
        with thread_limits(n_parts, 1):
            stats = helpers.train_batches(eng, flat, np.array(LAYERS), 1, HEADS.index(head), X, y, Y, order,
                                      batch, opt, 0.05, momentum, False, decay, 0.9, 0.999, 1e-8,
                                      s1, s2, 0, w)
        results.append((flat, stats))
    (ref_flat, ref_stats), (flat, stats) = results
    # float32 Adam divides by sqrt(v): a gradient entry near 0 (a light minibatch) turns its
    # rounding into steps of up to ~lr * 1e-3, hence the looser atol
    rtol, atol = (1e-10, 1e-13) if dtype == np.float64 else (1e-4, 1e-4 if opt == 1 else 1e-5)
    case = f"weighted {dtype.__name__} {head} opt={opt} batch={batch} parts={parts} {scheme}"
    assert flat.dtype == dtype, case
    np.testing.assert_allclose(flat, ref_flat, rtol=rtol, atol=atol, err_msg=case)
    np.testing.assert_allclose(stats[[0, 6]], ref_stats[[0, 6]], rtol=rtol * 10, err_msg=case)
    assert list(stats[1:5]) == list(ref_stats[1:5]), case
    assert stats[6] == pytest.approx(w.sum(dtype=np.float64), rel=1e-6), case


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("opt,momentum,decay", [(0, 0.0, 0.01), (0, 0.9, 0.0), (1, 0.0, 0.01)])
def test_weighted_minibatch_in_pieces_matches_reference(dtype, head, opt, momentum, decay,
                                                        monkeypatch):
    """Weighted minibatches of 8 in the units scheme's pieces of 3: every piece's dz is scaled
    by its whole minibatch's weight."""
    monkeypatch.setattr(engine.plan, "CHUNK_ROWS", 3)
    test_weighted_train_batches_matches_reference(dtype, head, opt, momentum, decay, 8, 2,
                                                  "units", monkeypatch)


@pytest.mark.parametrize("head", HEADS)
def test_unit_weights_change_nothing_and_weighted_evaluate_matches_reference(head):
    X, y, Y = problem(head, n=40)
    flat0 = init_params(LAYERS, "he", np.random.default_rng(1), np.float64)
    runs = []
    for w in (None, np.ones(40)):
        flat = flat0.copy()
        stats = helpers.train_batches(engine, flat, np.array(LAYERS), 1, HEADS.index(head), X, y, Y,
                                     np.arange(40), 16, 0, 0.05, 0.9, True, 0.01, 0.9, 0.999, 1e-8,
                                     np.zeros_like(flat), np.zeros(0), 0, w)
        runs.append((flat, stats))
    assert np.array_equal(runs[0][0], runs[1][0]) and np.array_equal(runs[0][1], runs[1][1]), head
    w = weights_for(40)
    layers = np.array(LAYERS)
    for threads in (1, 2):
        with thread_limits(threads, 1):
            loss, correct = helpers.evaluate_batches("numba", flat0, layers, 1, HEADS.index(head), X, y, Y, 7, w)
        ref_loss, ref_correct = helpers.evaluate_batches("numpy", flat0, layers, 1, HEADS.index(head), X, y, Y, 7, w)
        assert loss == pytest.approx(ref_loss, rel=1e-10) and correct == ref_correct, head
    plain, _ = helpers.evaluate_batches("numba", flat0, layers, 1, HEADS.index(head), X, y, Y)
    assert helpers.evaluate_batches("numba", flat0, layers, 1, HEADS.index(head), X, y, Y, 4096, np.ones(40))[0] == pytest.approx(plain, rel=1e-12)


@pytest.mark.parametrize("optimizer,kw", [("sgd", {"momentum": 0.9, "weight_decay": 1e-3}),
                                          ("adam", {"lr": 0.01})])
@pytest.mark.parametrize("output", ["softmax", "identity", "logistic"])
def test_weighted_trajectory_matches_numpy_engine(optimizer, kw, output):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((70, 6))
    y = {"identity": lambda: rng.standard_normal((70, 3)),
         "logistic": lambda: rng.integers(0, 2, (70, 3))}.get(output, lambda: rng.integers(0, 3, 70))()
    w = weights_for(70)
    histories, weights = [], []
    for eng in ("numba", "numpy"):
        model = MLP([6, 8, 3], activation="tanh", output=output, dtype="float64", seed=3, engine=eng)
        hist = model.fit(X, y, epochs=3, batch_size=16, optimizer=optimizer, sample_weight=w,
                         validation_split=0.2, **{"lr": 0.1, **kw})
        histories.append((hist["loss"], hist["val_loss"], hist.get("accuracy")))
        weights.append(model._flat.copy())
    np.testing.assert_allclose(histories[0][0], histories[1][0], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(histories[0][1], histories[1][1], rtol=1e-8, atol=1e-12)
    assert histories[0][2] == histories[1][2]
    np.testing.assert_allclose(weights[0], weights[1], rtol=1e-8, atol=1e-12)


def test_weights_of_the_wrong_length_are_refused_before_compiled_code():
    X, y, Y = problem("softmax", n=10)
    flat = init_params(LAYERS, "he", np.random.default_rng(0), np.float64)
    with pytest.raises(ValueError, match=r"one weight per row of X \(10\); got 9"):
        helpers.train_batches(engine, flat, np.array(LAYERS), 1, 0, X, y, Y, np.arange(10), 5, 0, 0.1, 0.0,
                             False, 0.0, 0.9, 0.999, 1e-8, np.zeros_like(flat), np.zeros(0), 0,
                             np.ones(9))
    with pytest.raises(ValueError, match="one weight per row"):
        helpers.evaluate_batches("numba", flat, np.array(LAYERS), 1, 0, X, y, Y, 4096, np.ones(11))


def test_serial_and_parallel_builds_have_their_own_cache_entries():
    """Numba names cache files after the function's qualified name: one name for both builds
    made the parallel dispatcher load the serial machine code from the cache."""
    serial, parallel = engine.parts.train_serial.py_func, engine.parts.train_parallel.py_func
    assert serial.__qualname__ != parallel.__qualname__
    assert engine.parts.train_parallel.targetoptions.get("parallel")
    assert not engine.parts.train_serial.targetoptions.get("parallel")


def test_compiled_calls_flush_denormals_and_restore_the_callers_setting(monkeypatch):
    """Adam's m and momentum decay into subnormals on weights whose gradient became zero;
    subnormal arithmetic is ~100x slower on x86, so compiled calls flush them (FTZ/DAZ) — and
    put the caller's floating-point mode back."""
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)              # whatever the machine has
    rng = np.random.default_rng(0)
    X, y = rng.random((2000, 20), dtype=np.float32), rng.integers(0, 4, 2000)
    model = MLP([20, 1024, 4], seed=0, threads=2)
    assert engine.plan_training(2, 32, model.layers, 2000).threads == 2, "not on 2 threads"
    # lr 0.05 kills most ReLU units: their gradients become exactly 0 and Adam's m decays
    model.fit(X, y, epochs=30, batch_size=32, optimizer="adam", lr=0.05)
    m = model._optimizer.state1
    tiny = np.finfo(np.float32).tiny
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert not np.any((m != 0) & (np.abs(m) < tiny)), "subnormal optimizer state survived"
    model.predict(X)
    assert np.float32(1e-38) / np.float32(4) != 0, "the caller's MXCSR was left with FTZ set"


@pytest.mark.parametrize("scheme", ["parts", "units"])
def test_x_of_another_dtype_or_layout_trains_the_same(scheme, monkeypatch):
    """train_batches takes X as given; the units scheme reads its rows by address as the model's
    dtype, so float64 or Fortran-ordered X must be converted first, never read raw."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", scheme)
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 20)), rng.integers(0, 5, 300)
    results = []
    for given in (X.astype(np.float32), X, np.asfortranarray(X), X[:, ::-1][:, ::-1]):
        flat = init_params((20, 16, 5), "he", np.random.default_rng(1), "float32")
        empty = np.zeros(0, np.float32)
        with thread_limits(2, 1):
            helpers.train_batches(engine, flat, np.array([20, 16, 5]), 0, 0, given, y,
                                 np.zeros((0, 5), np.float32), np.arange(300), 32, 0, 0.1, 0.0,
                                 False, 0.0, 0.9, 0.999, 1e-8, empty, empty, 0)
        results.append(flat)
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_scheme_follows_the_measured_rules(monkeypatch):
    """Units for small and mid-size minibatches of a long call; parts for a call of few
    minibatches, for minibatches with very little or a lot of work per thread, for nets
    without a hidden layer and for narrow ones on several threads; rows for large minibatches
    of narrow nets (docs/performance.md, "The thread plan", "The rows scheme")."""
    monkeypatch.setattr(engine.plan, "FORCE_SCHEME", None)
    n = 60000
    assert engine.plan.scheme(2, 32, (784, 128, 10), n) == "units"
    assert engine.plan.scheme(2, 512, (784, 128, 10), n) == "units"
    assert engine.plan.scheme(1, 32, (784, 128, 10), n) == "units"
    assert engine.plan.scheme(2, 32, (784, 128, 10), 7 * 32) == "parts"      # 7 minibatches
    assert engine.plan.scheme(2, 512, (784, 512, 256, 10), n) == "parts"     # 137M per thread
    assert engine.plan.scheme(1, 64, (784, 512, 256, 10), n) == "parts"      # 34M on one thread
    assert engine.plan.scheme(2, 128, (784, 512, 256, 10), n) == "units"     # 34M, 64 rows each
    assert engine.plan.scheme(2, 256, (784, 512, 256, 10), n) == "parts"     # 69M, 128 rows each
    assert engine.plan.scheme(2, 256, (784, 2048, 10), n) == "parts"         # 208M, 128 rows each
    assert engine.plan.scheme(2, 200, (64, 100, 10), n) == "parts"           # 0.74M per thread
    assert engine.plan.scheme(2, 32, (784, 10), n) == "parts"                # no hidden layer
    # narrow hidden layers: the rows scheme at any minibatch size when one takes dot products
    # (20 float32 units leave lanes empty on AVX2 and AVX-512), else no units scheme across
    # threads, and the rows scheme for minibatches of 256 rows or more
    narrow = "rows" if engine.plan.takes_dot_products((784, 20, 10)) else None
    assert engine.plan.scheme(2, 128, (784, 20, 10), n) == (narrow or "parts")  # 10 units
    assert engine.plan.scheme(1, 128, (784, 20, 10), n) == (narrow or "units")
    assert engine.plan.scheme(1, 10, (784, 20, 10), n) == (narrow or "units")
    assert engine.plan.scheme(2, 32, (784, 20, 10), 7 * 32) == "parts"       # 7 minibatches
    assert engine.plan.scheme(1, 32, (784, 32, 10), n) == "units"            # whole vectors
    assert not engine.plan.takes_dot_products((784, 64, 10))
    assert engine.plan.scheme(2, 256, (784, 20, 10), n) == "rows"
    assert engine.plan.scheme(2, 1024, (784, 20, 10), 8000) == "rows"
    assert engine.plan.scheme(2, 8000, (784, 20, 10), 8000) == "rows"
    assert engine.plan.scheme(1, 8000, (784, 25, 15, 10), 8000) == "rows"
    assert engine.plan.scheme(2, 8000, (784, 10), 8000) == "rows"
    assert engine.plan.scheme(2, 512, (54, 64, 64, 7), n) == "rows"
    assert engine.plan.scheme(2, 8000, (784, 128, 10), 8000) == "parts"      # too wide for rows


COMPILE_ONCE = """
import importlib, pkgutil
import numpy as np
import fastmlp
import fastmlp.functional
from numba.core.dispatcher import Dispatcher
X = np.random.default_rng(0).standard_normal((600, 20)).astype(np.float32)
y = np.arange(600) % 3
model = fastmlp.MLP((20, 160, 128, 3), threads=2)
fastmlp.engine.plan.PLAN_CORES = 2                     # whatever the machine has
for batch, how in ((32, "units"), (300, "parts")):    # both schemes, really on 2 threads
    assert fastmlp.engine.plan_training(2, batch, model.layers, 600)[:3:2] == (2, how)
    model.fit(X, y, epochs=1, batch_size=batch)
wide = np.random.default_rng(1).standard_normal((600, 80)).astype(np.float32)
narrow = fastmlp.MLP((80, 21, 3), threads=2)          # the rows scheme, with dot products
assert fastmlp.engine.plan_training(2, 600, narrow.layers, 600)[:3:2] == (2, "rows")
assert fastmlp.engine.lowlevel.dots.dots_pay(80, 21, 4)
narrow.fit(wide, y, epochs=2, batch_size=None)
model.predict(X)
model.evaluate(X, y)
params = fastmlp.functional.init((20, 16, 3), dtype="float32")
fastmlp.functional.loss_and_grad(params, X, y)
fastmlp.functional.train_epoch(params, X, y, 0.1, batch_size=32)
for info in pkgutil.walk_packages(fastmlp.__path__, "fastmlp."):
    module = importlib.import_module(info.name)
    for name, f in vars(module).items():
        if isinstance(f, Dispatcher) and f.py_func.__module__ == module.__name__ and len(f.signatures) > 1:
            print(module.__name__, name, *f.signatures, sep="\\n    ")
"""


def test_each_function_compiles_once_for_one_dtype(tmp_path):
    """Numba compiles a function once per distinct argument types, and a literal (0, True) is a
    type of its own: fits of one dtype through every scheme, predict, evaluate and the functional
    API must compile every function once (each extra version is seconds of a first call).
    A version loaded from Numba's cache is listed among a dispatcher's signatures just as a
    compiled one is, so the child counts them from the usual cache, warm after the tests before
    it (an empty cache would compile everything again: a minute or more)."""
    done = subprocess.run([sys.executable, "-c", COMPILE_ONCE], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout == "", "compiled more than once:\n" + done.stdout


@pytest.mark.parametrize("weighted", [False, True])
def test_loss_and_grad_of_both_engines_agree(weighted):
    """engine.loss_and_grad: the compiled call and the reference's twin, mean loss and gradient."""
    rng = np.random.default_rng(4)
    X, y = rng.random((50, 6)), rng.integers(0, 3, 50)
    flat = init_params((6, 8, 3), "he", rng, np.float64)
    net = engine.Network(flat, (6, 8, 3), ACTIVATIONS.index("tanh"), HEADS.index("softmax"))
    w = rng.random(50) if weighted else None
    grads = [np.empty_like(flat), np.empty_like(flat)]
    results = [engine.loss_and_grad(net, X, y, np.zeros((0, 3)), g, w, engine=name)
               for g, name in zip(grads, ("numba", "numpy"))]
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("head", ["softmax", "sigmoid", "identity"])
def test_loss_and_grad_of_a_narrow_net_in_the_rows_scheme(weighted, head, monkeypatch):
    """A net of 80 inputs into 12 units, whose first layer takes dot products on any vector
    width, on 300 rows: the plan takes the rows scheme (blocks of 128 rows in 3 groups); the
    compiled mean loss and gradient are the reference's, the same bits on 1, 2 and 3 threads,
    and the parameters do not change."""
    layers = (80, 12, 7, 4)
    assert engine.plan.takes_dot_products(layers)
    assert engine.plan_training(2, 300, layers, 300).scheme == "rows"
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 80))
    y, Y = ((np.zeros(0, np.int64), rng.standard_normal((300, 4))) if head == "identity"
            else (rng.integers(0, 4, 300), np.zeros((0, 4))))
    flat = init_params(layers, "he", rng, np.float64)
    before = flat.copy()
    net = engine.Network(flat, layers, ACTIVATIONS.index("relu"), HEADS.index(head))
    w = rng.random(300) if weighted else None
    runs = []
    for threads in (1, 2, 3):
        g = np.empty_like(flat)
        with thread_limits(threads, 1):
            runs.append((engine.loss_and_grad(net, X, y, Y, g, w, threads), g))
    ref = np.empty_like(flat)
    ref_loss, ref_correct = engine.loss_and_grad(net, X, y, Y, ref, w, engine="numpy")
    (loss, correct), grad = runs[0]
    assert loss == pytest.approx(ref_loss, rel=1e-12) and correct == ref_correct
    np.testing.assert_allclose(grad, ref, rtol=1e-10, atol=1e-14)
    assert all(r[0] == runs[0][0] and np.array_equal(r[1], grad) for r in runs[1:])
    np.testing.assert_array_equal(flat, before)


def test_loss_and_grad_in_the_rows_scheme_leaves_grad_on_a_non_finite_loss():
    layers = (80, 12, 4)
    rng = np.random.default_rng(6)
    X, y = rng.standard_normal((300, 80)), rng.integers(0, 4, 300)
    X[200] = np.inf
    flat = init_params(layers, "he", rng, np.float64)
    net = engine.Network(flat, layers, ACTIVATIONS.index("relu"), HEADS.index("softmax"))
    g = np.full_like(flat, 7.0)
    loss, _ = engine.loss_and_grad(net, X, y, np.zeros((0, 4)), g, None, 2)
    assert not np.isfinite(loss) and (g == 7.0).all()


def test_the_reference_engine_gets_the_threads_as_blas_threads(monkeypatch):
    """The NumPy reference parallelises only inside BLAS: a call with threads=2 runs it on
    2 BLAS threads and 1 Numba thread (the benchmarks' reference columns depend on it)."""
    seen = []
    real = reference.train_batches

    def spy(*args):
        seen.append((numba.get_num_threads(),
                     max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")))
        return real(*args)

    monkeypatch.setattr(reference, "train_batches", spy)
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 8)), rng.integers(0, 3, 64)
    net = engine.Network(init_params((8, 4, 3), "he", rng, np.float64), (8, 4, 3), 1, 0)
    engine.train(net, engine.OptimizerState("sgd", 0, np.float64),
                 engine.Batches(X, y, np.zeros((0, 3)), np.arange(64), 16),
                 engine.Hyper.of("sgd", 0.1), threads=2, engine="numpy")
    assert seen == [(1, 2)]


@pytest.mark.parametrize("layers", [(784, 128, 10), (784, 512, 256, 10), (784, 20, 10), (54, 64, 64, 7),
                                    (10, 3), (784, 16, 10)])
@pytest.mark.parametrize("batch_size", [1, 10, 32, 128, 512, 4096])
@pytest.mark.parametrize("n_samples", [600, 60000])
def test_the_explained_plan_is_the_plan(layers, batch_size, n_samples):
    """fastmlp info --model shows plan_training's plan and a reason naming the rule's constant."""
    from fastmlp.engine.plan import explain_training

    chosen, why = explain_training(2, batch_size, layers, n_samples)
    assert chosen == engine.plan_training(2, batch_size, layers, n_samples)
    assert len(why) == 2 and "MIN_MACS_PER_THREAD" in why[0]
    assert any(word in why[1] for word in ("MIN_", "ROWS_", "no hidden layer"))
