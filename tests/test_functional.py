"""fastmlp.functional: the compiled forward / backward / loss_and_grad against the NumPy
reference and central differences, in-place training without copies, and input checks."""

import numpy as np
import pytest

import helpers  # noqa: I001 (the tests folder is on sys.path)
from fastmlp import MLP, TrainingDiverged, reference
from fastmlp import functional as F
from fastmlp.codes import ACTIVATIONS
from fastmlp.codes import HEADS as CODES

HEADS = ["softmax", "sigmoid", "identity", "logistic"]
Y_HEADS = ("identity", "logistic")       # heads whose targets are a matrix, not class indices


def problem(head, n=40, widths=(6, 5, 4, 3), dtype="float64", seed=0):
    """Params, X and targets for a head; pre-activations stay off the ReLU kink."""
    rng = np.random.default_rng(seed)
    params = F.init(list(widths), init="glorot", seed=seed, dtype=dtype)
    X = rng.standard_normal((n, widths[0])).astype(dtype)
    if head == "identity":
        y = rng.standard_normal((n, widths[-1]))
    elif head == "logistic":             # multilabel: a 0/1 matrix
        y = rng.integers(0, 2, (n, widths[-1]))
    else:
        y = rng.integers(0, widths[-1], n)
    return params, X, y


def ref_loss_and_grad(params, X, y, act, head):
    p64 = [(W.astype(np.float64), b.astype(np.float64)) for W, b in params]
    labels, Y = (None, np.asarray(y, np.float64)) if head in Y_HEADS else (y, None)
    return reference.loss_and_grad(p64, X.astype(np.float64), labels, Y, act, head)


def max_error(grads, ref_grads):
    return max(float(np.max(np.abs(a - b))) for pa, pb in zip(grads, ref_grads) for a, b in zip(pa, pb))


# ---------------------------------------------------------------- against the reference

@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_forward_backward_loss_and_grad_match_reference(act, head):
    params, X, y = problem(head)
    ref_loss, ref_grads, ref_out = ref_loss_and_grad(params, X, y, act, head)
    fwd = F.forward(params, X, act, head)
    assert len(fwd.activations) == len(params) + 1 and fwd.activations[0] is X
    np.testing.assert_allclose(fwd.output, ref_out, rtol=1e-12, atol=1e-14, err_msg=f"{act}/{head}")
    assert max_error(F.backward(params, fwd, y, act, head), ref_grads) < 1e-13, f"{act}/{head}"
    loss, grads = F.loss_and_grad(params, X, y, act, head)
    assert loss == pytest.approx(ref_loss, rel=1e-12), f"{act}/{head}"
    assert max_error(grads, ref_grads) < 1e-13, f"{act}/{head}"
    assert [g.shape for pair in grads for g in pair] == [p.shape for pair in params for p in pair]


@pytest.mark.parametrize("head", HEADS)
def test_float32_agrees_with_float64_reference(head):
    params, X, y = problem(head, dtype="float32")
    ref_loss, ref_grads, _ = ref_loss_and_grad(params, X, y, "tanh", head)
    loss, grads = F.loss_and_grad(params, X, y, "tanh", head)
    assert grads[0][0].dtype == np.float32
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert max_error(grads, ref_grads) < 1e-5


@pytest.mark.parametrize("head", HEADS)
def test_gradient_matches_central_differences(head):
    params, X, y = problem(head, n=12, widths=(4, 5, 3), seed=2)
    _, grads = F.loss_and_grad(params, X, y, "tanh", head)
    eps, errors = 1e-6, []
    for (W, b), (dW, db) in zip(params, grads):
        for p, g in ((W, dW), (b, db)):
            for i in np.ndindex(p.shape):
                old = p[i]
                p[i] = old + eps
                up = F.loss_and_grad(params, X, y, "tanh", head)[0]
                p[i] = old - eps
                down = F.loss_and_grad(params, X, y, "tanh", head)[0]
                p[i] = old
                errors.append(abs((up - down) / (2 * eps) - g[i]))
    assert max(errors) < 1e-8 and np.mean(errors) < 1e-9


# ---------------------------------------------------------------- init, step, training

def test_init_is_the_models_initialisation_in_one_buffer():
    params = F.init([6, 5, 3], seed=3, dtype="float64")
    model = MLP([6, 5, 3], seed=3, dtype="float64")
    for (W, b), (W_m, b_m) in zip(params, model.params):
        np.testing.assert_array_equal(W, W_m)
        np.testing.assert_array_equal(b, b_m)
    base = params[0][0].base
    assert all(W.base is base and b.base is base for W, b in params)
    assert [W.shape for W, _ in params] == [(6, 5), (5, 3)]


def test_params_move_between_functional_and_the_model():
    params, X, y = problem("softmax", widths=(6, 5, 3))
    model = MLP([6, 5, 3], dtype="float64", activation="tanh")
    model.params = params                                  # plain arrays in ...
    np.testing.assert_array_equal(model.predict(X), F.predict(params, X, activation="tanh"))
    np.testing.assert_allclose(model.predict_proba(X), F.forward(params, X, "tanh").output, rtol=1e-12)
    model.fit(X, y, epochs=2, batch_size=8)
    out = [(W.copy(), b.copy()) for W, b in model.params]  # ... and out
    np.testing.assert_array_equal(F.predict(out, X, activation="tanh"), model.predict(X))


def test_step_is_sgd_in_place():
    params, X, y = problem("softmax")
    before = [(W.copy(), b.copy()) for W, b in params]
    ids = [(id(W), id(b)) for W, b in params]
    _, grads = F.loss_and_grad(params, X, y)
    F.step(params, grads, lr=0.5, weight_decay=0.1)
    assert [(id(W), id(b)) for W, b in params] == ids
    for (W, b), (W0, b0), (dW, db) in zip(params, before, grads):
        np.testing.assert_allclose(W, W0 - 0.5 * (dW + 0.1 * W0), rtol=1e-12)
        np.testing.assert_allclose(b, b0 - 0.5 * db, rtol=1e-12)


@pytest.mark.parametrize("head", HEADS)
def test_train_epoch_matches_the_reference_engine(head):
    params, X, y = problem(head, n=50)
    flat = np.concatenate([p.ravel() for pair in params for p in pair])
    layers = (6, 5, 4, 3)
    labels = np.zeros(0, np.int64) if head in Y_HEADS else y
    Y = y.astype(np.float64) if head in Y_HEADS else np.zeros((0, 3))
    order = np.arange(50)
    helpers.train_batches(reference, flat, layers, ACTIVATIONS.index("relu"), CODES.index(head),
                            X, labels, Y, order, 16, 0, 0.1, 0.0, False, 0.01, 0.9, 0.999, 1e-8,
                            np.zeros_like(flat), np.zeros(0), 0)
    logs = F.train_epoch(params, X, y, lr=0.1, batch_size=16, output=head, shuffle=False, weight_decay=0.01)
    np.testing.assert_allclose(np.concatenate([p.ravel() for pair in params for p in pair]), flat, rtol=1e-10)
    assert set(logs) == ({"loss"} if head == "identity" else {"loss", "accuracy"})


def test_train_epoch_trains_views_in_place_and_writes_back_other_arrays():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + 2 * (X[:, 2] > 0)
    shared = F.init([8, 16, 4], seed=1)
    flat = shared[0][0].base
    own = [(W.copy(order="F"), b.copy()) for W, b in shared]    # not one buffer, not C order
    ids = [(id(W), id(b)) for W, b in own]
    first = F.train_epoch(shared, X, y, lr=0.2, batch_size=20, rng=7)
    F.train_epoch(own, X, y, lr=0.2, batch_size=20, rng=7)
    assert shared[0][0].base is flat                              # trained where it lives
    assert [(id(W), id(b)) for W, b in own] == ids                # written back in place
    for (W, b), (W_o, b_o) in zip(shared, own):
        np.testing.assert_array_equal(W, W_o)
        np.testing.assert_array_equal(b, b_o)
    for epoch in range(15):
        logs = F.train_epoch(shared, X, y, lr=0.2, batch_size=20, rng=epoch)
    assert logs["loss"] < first["loss"] and logs["accuracy"] > 0.9
    assert np.mean(F.predict(shared, X) == y) > 0.9
    np.testing.assert_array_equal(F.predict(shared, X), F.forward(shared, X).output.argmax(axis=1))


def test_full_batch_and_regression():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 3))
    Y = X @ rng.standard_normal((3, 2))
    params = F.init([3, 8, 2], seed=0, dtype="float64")
    losses = [F.train_epoch(params, X, Y, lr=0.05, batch_size=None, activation="tanh",
                            output="identity")["loss"] for _ in range(200)]
    assert losses[-1] < 0.1 * losses[0]
    pred = F.predict(params, X, activation="tanh", output="identity")
    np.testing.assert_allclose(pred, F.forward(params, X, "tanh", "identity").output)
    assert pred.shape == (64, 2)


def test_multilabel_logistic_head():
    params, X, Y = problem("logistic", n=64, widths=(6, 8, 3))
    logs = [F.train_epoch(params, X, Y, lr=0.5, batch_size=16, activation="tanh", output="logistic",
                          rng=epoch) for epoch in range(30)]
    assert logs[-1]["loss"] < logs[0]["loss"] and set(logs[-1]) == {"loss", "accuracy"}
    pred = F.predict(params, X, activation="tanh", output="logistic")
    fwd = F.forward(params, X, "tanh", "logistic")
    assert pred.shape == (64, 3) and pred.dtype == np.int64
    np.testing.assert_array_equal(pred, (fwd.activations[-1] > 0).astype(int))
    np.testing.assert_allclose(fwd.output, 1 / (1 + np.exp(-fwd.activations[-1])), rtol=1e-12)
    with pytest.raises(ValueError, match="0s and 1s only"):
        F.loss_and_grad(params, X, Y * 2, "tanh", "logistic")
    with pytest.raises(ValueError, match=r"shape \(64,\) but output='logistic'"):
        F.train_epoch(params, X, Y[:, 0], lr=0.1, output="logistic")


def test_divergence_keeps_finite_params():
    params, X, y = problem("identity", n=64)
    with pytest.raises(TrainingDiverged):
        for _ in range(50):
            F.train_epoch(params, X * 1e3, y * 1e6, lr=10.0, batch_size=8, output="identity")
    assert all(np.isfinite(W).all() and np.isfinite(b).all() for W, b in params)


def test_an_overflowing_last_update_is_a_divergence():
    """Every loss finite, but the epoch's last update overflows the weights: the epoch raises and
    the params keep their values from before it (the next epoch would find a NaN loss, with no
    finite weights left to keep)."""
    params, X, y = problem("identity", n=16)
    start = [(W.copy(), b.copy()) for W, b in params]
    with pytest.raises(TrainingDiverged, match="step 1: the weights overflowed"):
        F.train_epoch(params, X * 1e3, y * 1e6, lr=1e300, batch_size=None, output="identity")
    for (W, b), (W0, b0) in zip(params, start):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)


# ---------------------------------------------------------------- input checks

def test_bad_inputs_raise_clear_errors():
    params, X, y = problem("softmax")
    with pytest.raises(ValueError, match=r"b\.ravel\(\)"):
        F.forward([(params[0][0], params[0][1][:, None])] + params[1:], X)
    with pytest.raises(ValueError, match=r"W\.T"):
        F.forward([params[0], (params[1][0].T.copy(), params[1][1])], X)
    with pytest.raises(TypeError, match="mix"):
        F.forward([(params[0][0].astype(np.float32), params[0][1])] + params[1:], X)
    with pytest.raises(ValueError, match="class indices 0..2"):
        F.loss_and_grad(params, X, y + 1)
    with pytest.raises(ValueError, match="NaN"):
        F.predict(params, np.where(X > 1, np.nan, X))
    with pytest.raises(ValueError, match="features"):
        F.train_epoch(params, X[:, :4], y, lr=0.1)
    with pytest.raises(ValueError, match="samples"):
        F.train_epoch(params, X, y[:-1], lr=0.1)
    with pytest.raises(ValueError, match="lr"):
        F.train_epoch(params, X, y, lr=-1)
    with pytest.raises(ValueError, match="activation"):
        F.forward(params, X, activation="relu6")
    with pytest.raises(TypeError, match="Forward"):
        F.backward(params, [X], y)
    with pytest.raises(ValueError, match="read-only"):
        frozen = [(W.copy(), b.copy()) for W, b in params]
        frozen[0][0].flags.writeable = False
        F.train_epoch(frozen, X, y, lr=0.1, batch_size=8)
