"""The NumPy reference engine: gradients, fused losses, optimizer steps, dtypes, init, schedules.

Everything here is the ground truth the compiled kernels are later tested against, so the checks
are against independent formulas: a naive loss written in this file, finite differences, and
optimizer steps worked out by hand.
"""

import itertools
import math

import numpy as np
import pytest
from scipy.special import expit, log_softmax, xlogy

import helpers  # noqa: I001 (the tests folder is on sys.path)
from fastmlp import reference as R
from fastmlp.codes import (ACT_IDENTITY, ACT_RELU, ACTIVATIONS, HEAD_IDENTITY, HEAD_SOFTMAX,
                           HEADS, LEAKY_SLOPE, OPT_ADAM, OPT_SGD)
from fastmlp.params import init_params, layer_views, param_count, weight_mask
from fastmlp.schedules import Constant, Cosine, InverseScaling, Piecewise, make_schedule

from helpers import central_differences

# Central differences in float64: eps ~1e-6 gives truncation ~1e-12 and round-off ~1e-10.
FD_EPS = 1e-6
FD_MAX_ABS = 1e-7       # worst absolute error over all entries
FD_REL = 1e-6           # ||analytic - numeric|| / (||analytic|| + ||numeric||)
# Pre-activations closer than this to the ReLU kink would make finite differences meaningless.
KINK_MARGIN = 1e-3

GRAD_LAYERS = [5, 7, 6, 4]
GRAD_BATCH = 8


# ---------------------------------------------------------------- an independent naive network

def naive_act(z, act):
    return {
        "identity": lambda: z,
        "relu": lambda: np.maximum(z, 0.0),
        "leaky_relu": lambda: np.where(z > 0, z, LEAKY_SLOPE * z),
        "sigmoid": lambda: expit(z),
        "tanh": lambda: np.tanh(z),
    }[act]()


def naive_hidden_preacts(flat, layers, X, act):
    """Pre-activations z of every hidden layer (used to keep away from the ReLU kink)."""
    zs, a = [], X
    for W, b in layer_views(flat, layers)[:-1]:
        z = a @ W + b
        zs.append(z)
        a = naive_act(z, act)
    return zs


def naive_loss(flat, layers, X, y, Y, act, head):
    """The batch-mean loss, written out from the definitions (not from reference.py)."""
    a = X
    views = layer_views(flat, layers)
    for l, (W, b) in enumerate(views):
        z = a @ W + b
        a = naive_act(z, act) if l < len(views) - 1 else z
    B = X.shape[0]
    if head == "softmax":
        return -np.mean(log_softmax(a, axis=1)[np.arange(B), y])
    if head == "identity":
        return 0.5 * np.sum((a - Y) ** 2) / B
    if head == "logistic":      # -[Y log sigma(a) + (1 - Y) log(1 - sigma(a))] = log(1 + e^a) - Y a
        return np.sum(np.logaddexp(0.0, a) - Y * a) / B
    onehot = np.eye(a.shape[1])[y]
    return 0.5 * np.sum((expit(a) - onehot) ** 2) / B


def gradient_problem(act, head, seed):
    """(flat, X, y, Y) in float64 for the gradient checks; biases are random (not zero) so
    every bias gradient is exercised, and ReLU-like pre-activations stay off the kink."""
    rng = np.random.default_rng(seed)
    flat = rng.normal(0.0, 0.6, param_count(GRAD_LAYERS))
    X = rng.normal(0.0, 1.0, (GRAD_BATCH, GRAD_LAYERS[0]))
    y = rng.integers(0, GRAD_LAYERS[-1], GRAD_BATCH)
    Y = rng.normal(0.0, 1.0, (GRAD_BATCH, GRAD_LAYERS[-1]))
    if head == "logistic":      # multilabel: a 0/1 matrix
        Y = (Y > 0).astype(np.float64)
    return flat, X, y, Y


def off_kink_problem(act, head):
    """The first seed whose hidden pre-activations are all at least KINK_MARGIN from 0."""
    for seed in range(100):
        flat, X, y, Y = gradient_problem(act, head, seed)
        zs = naive_hidden_preacts(flat, GRAD_LAYERS, X, act)
        if min(np.abs(z).min() for z in zs) > KINK_MARGIN:
            return flat, X, y, Y
    raise AssertionError("no seed in range(100) keeps the pre-activations off the kink")


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize("act,head", list(itertools.product(ACTIVATIONS, HEADS)))
def test_gradient_matches_central_differences(act, head):
    case = f"activation={act} x head={head}"
    flat, X, y, Y = off_kink_problem(act, head)
    params = layer_views(flat, GRAD_LAYERS)

    loss, grads, output = R.loss_and_grad(params, X, y, Y, act, head)
    analytic = np.concatenate([t.ravel() for pair in grads for t in pair])
    assert analytic.shape == flat.shape, case
    assert analytic.dtype == np.float64, case

    # The fused loss equals the loss of the independent naive network.
    assert loss == pytest.approx(naive_loss(flat, GRAD_LAYERS, X, y, Y, act, head), rel=1e-12, abs=1e-14), case

    # Perturb every W and b entry through the flat buffer.
    numeric = central_differences(lambda f: naive_loss(f, GRAD_LAYERS, X, y, Y, act, head), flat,
                                  FD_EPS)

    err = np.abs(analytic - numeric)
    rel = np.linalg.norm(analytic - numeric) / (np.linalg.norm(analytic) + np.linalg.norm(numeric))
    assert np.linalg.norm(numeric) > 1e-6, f"{case}: degenerate problem, the gradient is ~0"
    assert err.max() < FD_MAX_ABS, f"{case}: max abs error {err.max():.3g} (mean {err.mean():.3g}) at flat[{err.argmax()}]"
    assert rel < FD_REL, f"{case}: relative error {rel:.3g}"


@pytest.mark.parametrize("head", HEADS)
def test_head_fused_loss_equals_separate_loss(head):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, (GRAD_BATCH, 5))
    y = rng.integers(0, 5, GRAD_BATCH)
    Y = rng.normal(0, 1, (GRAD_BATCH, 5))
    if head == "logistic":
        Y = (Y > 0).astype(np.float64)
    loss, output, dz = R.head_loss_and_grad(z, y, Y, head)
    B = GRAD_BATCH
    if head == "softmax":
        expected = -log_softmax(z, axis=1)[np.arange(B), y].mean()
        np.testing.assert_allclose(output, np.exp(log_softmax(z, axis=1)), rtol=1e-12)
        np.testing.assert_allclose(dz, (output - np.eye(5)[y]) / B, rtol=1e-12, atol=1e-15)
    elif head == "identity":
        expected = 0.5 * ((z - Y) ** 2).sum() / B
        np.testing.assert_array_equal(output, z)
        np.testing.assert_allclose(dz, (z - Y) / B, rtol=1e-12)
    elif head == "logistic":
        s = expit(z)
        expected = -(xlogy(Y, s) + xlogy(1 - Y, 1 - s)).sum() / B   # binary cross-entropy
        np.testing.assert_allclose(output, s, rtol=1e-12)
        np.testing.assert_allclose(dz, (s - Y) / B, rtol=1e-12, atol=1e-15)
    else:
        s = expit(z)
        expected = 0.5 * ((s - np.eye(5)[y]) ** 2).sum() / B
        np.testing.assert_allclose(output, s, rtol=1e-12)
        np.testing.assert_allclose(dz, (s - np.eye(5)[y]) * s * (1 - s) / B, rtol=1e-12, atol=1e-15)
    assert loss == pytest.approx(expected, rel=1e-12), head
    # The head's plain output (used by predict) matches the fused one.
    np.testing.assert_allclose(R.head_output(z, head), output, rtol=1e-12)


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_activation_backward_from_output(act):
    """The derivative written in terms of a = act(z) equals the derivative of act at z."""
    z = np.linspace(-3, 3, 24).reshape(4, 6) + 0.0123   # no exact zero
    da = np.random.default_rng(2).normal(size=z.shape)
    a = R.activation_forward(z, act)
    np.testing.assert_allclose(a, naive_act(z, act), rtol=1e-12, atol=1e-15)
    numeric = (naive_act(z + FD_EPS, act) - naive_act(z - FD_EPS, act)) / (2 * FD_EPS)
    np.testing.assert_allclose(R.activation_grad(a, da, act), da * numeric, rtol=1e-6, atol=1e-8,
                               err_msg=act)


def test_unknown_activation_and_head_raise():
    z = np.zeros((2, 3))
    with pytest.raises(ValueError, match="relu"):
        R.activation_forward(z, "rellu")
    with pytest.raises(ValueError, match="softmax"):
        R.head_loss_and_grad(z, np.zeros(2, int), z, "softmaxx")


# ---------------------------------------------------------------- numerical stability


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_crossentropy_is_stable_for_huge_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [1e4, 1e4, -1e4]], dtype=dtype)
    y = np.array([0, 0, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        loss, probs, dlogits = R.softmax_crossentropy(logits, y)
        p = R.softmax(logits)
    assert np.isfinite(loss)
    # Row 0 is right with certainty, row 1 wrong by 2e4, row 2 wrong by 2e4 (+log 2).
    assert loss == pytest.approx((0.0 + 2e4 + 2e4 + math.log(2)) / 3, rel=1e-6)
    assert np.isfinite(probs).all() and np.isfinite(dlogits).all() and np.isfinite(p).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p, probs, rtol=1e-6)
    assert probs.dtype == dtype and dlogits.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_stable_for_huge_inputs(dtype):
    z = np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        s = R.sigmoid(z)
        loss, a, dz = R.sigmoid_squared_error(z, np.array([4]))
    assert s.dtype == dtype
    assert np.isfinite(s).all() and np.isfinite(dz).all() and np.isfinite(loss)
    assert s[0, 0] == 0.0 and s[0, 2] == 0.5 and s[0, 4] == 1.0
    np.testing.assert_allclose(s, expit(z.astype(np.float64)), rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_crossentropy_is_stable_for_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 50.0]], dtype=dtype)
    Y = np.array([[1, 0, 1], [1, 1, 0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        loss, a, dz = R.sigmoid_crossentropy(z, Y)
    # Row 0: right with certainty (0, 0) and log 2; row 1: wrong by 1e4, right, wrong by 50.
    assert loss == pytest.approx((math.log(2) + 1e4 + 50 + math.log1p(math.exp(-50))) / 2, rel=1e-12)
    assert a.dtype == dtype and dz.dtype == dtype and np.isfinite(dz).all()
    np.testing.assert_allclose(dz, (np.array([[1, 0, 0.5], [0, 1, 1]]) - Y) / 2, atol=1e-7)
    assert R.subset_correct(z, Y) == 0.0 and R.subset_correct(z[:, :2], Y[:, :2]) == 1.0


# ---------------------------------------------------------------- optimizer steps by hand

# A [2, 2] linear network with the identity head, two samples, flat = W (row-major), b:
#   W = [[0.1, 0.2], [0.3, 0.4]], b = [0.0, 0.1]
#   x1 = [1, 2], Y1 = [1, 0]:  out1 = [0.7, 1.1],   diff1 = [-0.3, 1.1]
#   x2 = [-1, 0], Y2 = [0, 1]: out2 = [-0.1, -0.1], diff2 = [-0.1, -1.1]
#   loss = mean(0.5 * |diff|^2) = (0.65 + 0.61) / 2 = 0.63
#   dW = (x1^T diff1 + x2^T diff2) / 2 = [[-0.1, 1.1], [-0.3, 1.1]],  db = [-0.2, 0.0]
HAND_LAYERS = np.array([2, 2], dtype=np.int64)
HAND_FLAT = [0.1, 0.2, 0.3, 0.4, 0.0, 0.1]
HAND_X = np.array([[1.0, 2.0], [-1.0, 0.0]])
HAND_Y = np.array([[1.0, 0.0], [0.0, 1.0]])
HAND_GRAD = np.array([-0.1, 1.1, -0.3, 1.1, -0.2, 0.0])
NO_LABELS = np.zeros(0, dtype=np.int64)


def hand_grad(flat):
    """Gradient of the [2, 2] identity-head problem at ``flat``, from the formula above."""
    W, b = flat[:4].reshape(2, 2), flat[4:]
    diff = HAND_X @ W + b - HAND_Y
    return np.concatenate([(HAND_X.T @ diff / 2).ravel(), diff.mean(axis=0)])


def run_hand(opt, steps, lr, momentum=0.0, nesterov=False, weight_decay=0.0, beta1=0.9,
             beta2=0.999, eps=1e-8, flat=None, state=None, step=0):
    """``steps`` full-batch updates of the hand problem through reference.train_batches."""
    flat = np.array(HAND_FLAT if flat is None else flat, dtype=np.float64)
    s1, s2 = state if state is not None else (
        np.zeros_like(flat), np.zeros_like(flat) if opt == OPT_ADAM else np.zeros(0))
    order = np.tile(np.arange(2, dtype=np.int64), steps)
    stats = helpers.train_batches(R, flat, HAND_LAYERS, ACT_IDENTITY, HEAD_IDENTITY, HAND_X, NO_LABELS, HAND_Y,
                            order, 2, opt, lr, momentum, nesterov, weight_decay, beta1, beta2, eps,
                            s1, s2, step)
    return flat, s1, s2, stats


def test_hand_problem_gradient():
    np.testing.assert_allclose(hand_grad(np.array(HAND_FLAT)), HAND_GRAD, atol=1e-15)
    params = layer_views(np.array(HAND_FLAT), [2, 2])
    loss, grads, _ = R.loss_and_grad(params, HAND_X, NO_LABELS, HAND_Y, "identity", "identity")
    assert loss == pytest.approx(0.63, abs=1e-15)
    np.testing.assert_allclose(np.concatenate([grads[0][0].ravel(), grads[0][1]]), HAND_GRAD, atol=1e-15)


def test_sgd_one_step_by_hand():
    flat, _, _, stats = run_hand(OPT_SGD, steps=1, lr=0.1)
    # W - 0.1 dW = [[0.11, 0.09], [0.33, 0.29]], b - 0.1 db = [0.02, 0.1]
    np.testing.assert_allclose(flat, [0.11, 0.09, 0.33, 0.29, 0.02, 0.1], atol=1e-15)
    # [loss * weight, correct (0 for regression), samples, batches, diverged, bad loss, weight]
    np.testing.assert_allclose(stats, [0.63 * 2, 0, 2, 1, -1, 0, 2], atol=1e-14)


def test_momentum_two_steps_by_hand():
    flat, velocity, _, stats = run_hand(OPT_SGD, steps=2, lr=0.1, momentum=0.9)
    # Step 1: v1 = g1, p1 = p0 - 0.1 g1 (as plain SGD).
    # Step 2 at p1: out1 = [0.79, 0.77], out2 = [-0.09, 0.01]
    #   g2 = dW [[-0.06, 0.88], [-0.21, 0.77]], db [-0.15, -0.11]
    #   v2 = 0.9 g1 + g2 = [[-0.15, 1.87], [-0.48, 1.76]], [-0.33, -0.11]
    #   p2 = p1 - 0.1 v2 = [[0.125, -0.097], [0.378, 0.114]], [0.053, 0.111]
    np.testing.assert_allclose(velocity, [-0.15, 1.87, -0.48, 1.76, -0.33, -0.11], atol=1e-14)
    np.testing.assert_allclose(flat, [0.125, -0.097, 0.378, 0.114, 0.053, 0.111], atol=1e-14)
    # losses 0.63 then 0.4063, each over 2 samples
    np.testing.assert_allclose(stats, [2 * (0.63 + 0.4063), 0, 4, 2, -1, 0, 4], atol=1e-13)


def test_nesterov_two_steps_by_hand():
    lr, mu = 0.1, 0.9
    flat, velocity, _, _ = run_hand(OPT_SGD, steps=2, lr=lr, momentum=mu, nesterov=True)
    p = np.array(HAND_FLAT)
    v = np.zeros_like(p)
    for _ in range(2):
        g = hand_grad(p)
        v = mu * v + g
        p = p - lr * (g + mu * v)
    np.testing.assert_allclose(velocity, v, atol=1e-14)
    np.testing.assert_allclose(flat, p, atol=1e-14)
    # Nesterov really differs from heavy-ball momentum.
    plain, _, _, _ = run_hand(OPT_SGD, steps=2, lr=lr, momentum=mu)
    assert np.abs(plain - flat).max() > 1e-3


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_weight_decay_applies_to_weights_only(momentum):
    lr, wd = 0.1, 0.5
    flat, _, _, _ = run_hand(OPT_SGD, steps=1, lr=lr, momentum=momentum, weight_decay=wd)
    p = np.array(HAND_FLAT)
    decay = np.array([wd, wd, wd, wd, 0.0, 0.0])    # biases are not decayed
    np.testing.assert_allclose(flat, p - lr * (HAND_GRAD + decay * p), atol=1e-15)
    # By hand: W entry 0: 0.1 - 0.1 * (-0.1 + 0.5 * 0.1) = 0.105; bias 1: 0.1 - 0.1 * 0 = 0.1
    assert flat[0] == pytest.approx(0.105, abs=1e-15)
    assert flat[5] == pytest.approx(0.1, abs=1e-15)


def test_weight_mask_marks_weights():
    mask = weight_mask([2, 3, 1])
    # W0 (6), b0 (3), W1 (3), b1 (1)
    assert mask.tolist() == [True] * 6 + [False] * 3 + [True] * 3 + [False]


def test_adam_one_step_by_hand():
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    flat, m, v, _ = run_hand(OPT_ADAM, steps=1, lr=lr, beta1=b1, beta2=b2, eps=eps)
    g = HAND_GRAD
    # m = 0.1 g, v = 0.001 g^2; bias-corrected m_hat = g, v_hat = g^2, so each entry moves by
    # lr * g / (|g| + eps): about lr * sign(g), and 0 where g = 0 (the second bias).
    np.testing.assert_allclose(m, 0.1 * g, atol=1e-16)
    np.testing.assert_allclose(v, 0.001 * g * g, atol=1e-18)
    np.testing.assert_allclose(flat, np.array(HAND_FLAT) - lr * g / (np.abs(g) + eps), atol=1e-15)
    np.testing.assert_allclose(flat, [0.11, 0.19, 0.31, 0.39, 0.01, 0.1], atol=1e-8)


def test_adam_continues_with_step_count():
    """A second call with step=1 uses t=2 in the bias correction and keeps the moments."""
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    flat, m, v, _ = run_hand(OPT_ADAM, steps=1, lr=lr)
    p, m_ref, v_ref = flat.copy(), m.copy(), v.copy()
    flat, m, v, _ = run_hand(OPT_ADAM, steps=1, lr=lr, flat=flat, state=(m, v), step=1)
    g = hand_grad(p)
    m_ref = b1 * m_ref + (1 - b1) * g
    v_ref = b2 * v_ref + (1 - b2) * g * g
    p = p - lr * (m_ref / (1 - b1 ** 2)) / (np.sqrt(v_ref / (1 - b2 ** 2)) + eps)
    np.testing.assert_allclose(m, m_ref, atol=1e-16)
    np.testing.assert_allclose(v, v_ref, atol=1e-18)
    np.testing.assert_allclose(flat, p, atol=1e-15)


def test_train_batches_last_batch_shorter_and_softmax_accuracy():
    """A [2, 2, 2] ReLU + softmax network, batch 2 over 3 samples: two batches (2 + 1)."""
    flat = np.array([0.5, -0.2, 0.1, 0.3, 0.05, 0.02, 0.4, -0.1, -0.3, 0.2, 0.0, 0.01])
    X = np.array([[1.0, 0.5], [-0.5, 1.0], [0.3, -0.7]])
    y = np.array([0, 1, 1])
    p = flat.copy()
    expected_loss = 0.0
    correct = 0
    for idx in ([0, 1], [2]):
        params = layer_views(p, [2, 2, 2])
        (W0, b0), (W1, b1) = params
        h = np.maximum(X[idx] @ W0 + b0, 0)
        z = h @ W1 + b1
        probs = np.exp(log_softmax(z, axis=1))
        B = len(idx)
        expected_loss += -log_softmax(z, axis=1)[np.arange(B), y[idx]].sum()
        correct += int((probs.argmax(1) == y[idx]).sum())
        dz = (probs - np.eye(2)[y[idx]]) / B
        dW1, db1 = h.T @ dz, dz.sum(0)
        dh = dz @ W1.T * (h > 0)
        dW0, db0 = X[idx].T @ dh, dh.sum(0)
        p = p - 0.5 * np.concatenate([dW0.ravel(), db0, dW1.ravel(), db1])
    stats = helpers.train_batches(R, flat, np.array([2, 2, 2]), ACT_RELU, HEAD_SOFTMAX, X, y,
                            np.zeros((0, 2)), np.arange(3), 2, OPT_SGD, 0.5, 0.0, False, 0.0,
                            0.9, 0.999, 1e-8, np.zeros_like(flat), np.zeros(0), 0)
    np.testing.assert_allclose(flat, p, atol=1e-15)
    np.testing.assert_allclose(stats, [expected_loss, correct, 3, 2, -1, 0, 3], atol=1e-13)


def test_train_batches_stops_at_non_finite_loss():
    flat = np.array([1e200, 0, 0, 1e200, 0, 0], dtype=np.float64)
    before = flat.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        stats = helpers.train_batches(R, flat, HAND_LAYERS, ACT_IDENTITY, HEAD_IDENTITY, HAND_X * 1e200,
                                NO_LABELS, HAND_Y, np.arange(2), 2, OPT_SGD, 0.1, 0.0, False, 0.0,
                                0.9, 0.999, 1e-8, np.zeros(6), np.zeros(0), 0)
    assert stats[4] == 0 and not np.isfinite(stats[5])
    np.testing.assert_array_equal(flat, before)   # the bad batch made no update


# ---------------------------------------------------------------- float32 stays float32


@pytest.mark.parametrize("act,head", list(itertools.product(ACTIVATIONS, HEADS)))
def test_float32_stays_float32(act, head):
    layers = [5, 7, 6, 4]
    f32 = np.float32
    flat = init_params(layers, "glorot", np.random.default_rng(0), f32)
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 5)).astype(f32)
    y = rng.integers(0, 4, 8)
    Y = rng.normal(size=(8, 4)).astype(f32)
    params = layer_views(flat, layers)
    acts = R.forward(params, X, act, head)
    assert all(a.dtype == f32 for a in acts), [a.dtype for a in acts]
    loss, grads, output = R.loss_and_grad(params, X, y, Y, act, head)
    assert output.dtype == f32
    assert all(t.dtype == f32 for pair in grads for t in pair)
    assert R.predict_output(params, X.astype(np.float64), act, head).dtype == f32

    # The optimizers update in float32; states stay float32.
    for opt, momentum, nesterov in ((OPT_SGD, 0.0, False), (OPT_SGD, 0.9, True), (OPT_ADAM, 0.0, False)):
        work = flat.copy()
        s1 = np.zeros_like(work)
        s2 = np.zeros_like(work) if opt == OPT_ADAM else np.zeros(0, f32)
        helpers.train_batches(R, work, np.array(layers), ACTIVATIONS.index(act), HEADS.index(head), X.astype(np.float64), y, Y,
                        np.arange(8), 4, opt, 0.1, momentum, nesterov, 1e-3, 0.9, 0.999, 1e-8,
                        s1, s2, 0)
        assert work.dtype == f32 and s1.dtype == f32 and s2.dtype == f32
        assert np.isfinite(work).all() and not np.array_equal(work, flat)


def test_float32_and_float64_agree():
    layers = [5, 7, 6, 4]
    f64 = init_params(layers, "he", np.random.default_rng(3), np.float64)
    f32 = init_params(layers, "he", np.random.default_rng(3), np.float32)
    np.testing.assert_array_equal(f32, f64.astype(np.float32))
    X = np.random.default_rng(4).normal(size=(8, 5))
    y = np.arange(8) % 4
    l64, g64, _ = R.loss_and_grad(layer_views(f64, layers), X, y, None, "tanh", "softmax")
    l32, g32, _ = R.loss_and_grad(layer_views(f32, layers), X.astype(np.float32), y, None, "tanh", "softmax")
    assert l32 == pytest.approx(l64, rel=1e-5)
    for (dW64, db64), (dW32, db32) in zip(g64, g32):
        np.testing.assert_allclose(dW32, dW64, rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(db32, db64, rtol=1e-3, atol=1e-5)


# ---------------------------------------------------------------- initialisation


@pytest.mark.parametrize("init", ["he", "glorot", "uniform", "normal"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_shapes_dtype_and_determinism(init, dtype):
    layers = [6, 5, 3]
    flat = init_params(layers, init, np.random.default_rng(7), dtype)
    assert flat.dtype == dtype and flat.shape == (param_count(layers),) == (6 * 5 + 5 + 5 * 3 + 3,)
    views = layer_views(flat, layers)
    assert [(W.shape, b.shape) for W, b in views] == [((6, 5), (5,)), ((5, 3), (3,))]
    again = init_params(layers, init, np.random.default_rng(7), dtype)
    np.testing.assert_array_equal(flat, again)
    other = init_params(layers, init, np.random.default_rng(8), dtype)
    assert not np.array_equal(flat, other)
    # Views write through to the flat buffer.
    views[1][1][0] = 123.0
    assert flat[6 * 5 + 5 + 5 * 3] == 123.0


@pytest.mark.parametrize("init", ["he", "glorot", "uniform", "normal"])
def test_init_statistics(init):
    n_in, n_out = 1000, 400
    flat = init_params([n_in, n_out], init, np.random.default_rng(0), np.float64)
    (W, b), = layer_views(flat, [n_in, n_out])
    assert abs(W.mean()) < 0.05 * W.std()
    if init == "he":
        assert W.std() == pytest.approx(math.sqrt(2 / n_in), rel=0.02)
    elif init == "glorot":
        limit = math.sqrt(6 / (n_in + n_out))
        assert np.abs(W).max() <= limit
        assert W.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    elif init == "uniform":
        assert np.abs(W).max() <= 0.5 and np.abs(b).max() <= 0.5
        assert W.std() == pytest.approx(1 / math.sqrt(12), rel=0.02)
    else:
        assert W.std() == pytest.approx(1.0, rel=0.02)
    if init in ("he", "glorot"):
        assert (b == 0).all()
    else:
        assert (b != 0).all() and b.std() > 0.1


def test_init_unknown_scheme():
    with pytest.raises(ValueError, match="glorot"):
        init_params([3, 2], "glorott", np.random.default_rng(0), np.float32)


# ---------------------------------------------------------------- schedules


def test_piecewise_schedule():
    s = Piecewise({0: 2.0, 30: 0.4, 60: 0.01})
    assert [s(e) for e in (0, 29, 30, 59, 60, 100)] == [2.0, 2.0, 0.4, 0.4, 0.01, 0.01]
    # The table may be given in any order.
    assert Piecewise({60: 0.01, 0: 2.0, 30: 0.4})(45) == 0.4


def test_constant_cosine_inverse_scaling_formulas():
    assert Constant(0.3)(0) == Constant(0.3)(99) == 0.3
    c = Cosine(1.0, epochs=10, lr_min=0.1)
    for e in range(12):
        t = min(e, 10) / 10
        assert c(e) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)), abs=1e-15)
    assert c(0) == pytest.approx(1.0) and c(5) == pytest.approx(0.55) and c(10) == pytest.approx(0.1)
    assert c(20) == pytest.approx(0.1)            # stays at lr_min past the end
    inv = InverseScaling(0.5, power_t=0.5)
    for e in range(5):
        assert inv(e) == pytest.approx(0.5 / math.sqrt(e + 1), rel=1e-15)
    assert InverseScaling(2.0, power_t=1.0)(3) == pytest.approx(0.5)


def test_make_schedule():
    assert make_schedule(None, 0.2, 5)(3) == 0.2
    assert make_schedule("constant", 0.2, 5)(3) == 0.2
    assert make_schedule("invscaling", 0.2, 5)(3) == pytest.approx(0.2 / 2)
    assert make_schedule("cosine", 0.2, 4)(2) == pytest.approx(0.1)
    assert make_schedule({0: 1.0, 2: 0.5}, 0.2, 5)(2) == 0.5
    f = lambda e: 0.1 * e + 1  # noqa: E731
    assert make_schedule(f, 0.2, 5) is f


@pytest.mark.parametrize("bad,error,pattern", [
    ("cosin", ValueError, "Did you mean 'cosine'"),
    ("piecewise", ValueError, "needs its table"),
    ({30: 0.4}, ValueError, "starts at epoch 0"),
    ({0: 0.0}, ValueError, r"lr_schedule\[0\]"),
    ({0: 1.0, -5: 0.1}, ValueError, "lr_schedule epoch"),
    ({0: float("nan")}, ValueError, "finite"),
    (0.1, TypeError, "lr_schedule must be"),
    ([0.1, 0.2], TypeError, "lr_schedule must be"),
])
def test_make_schedule_rejects_bad_input(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        make_schedule(bad, 0.1, 10)


def test_schedule_constructors_validate():
    with pytest.raises(ValueError, match="lr"):
        Constant(0)
    with pytest.raises(ValueError, match="epochs"):
        Cosine(0.1, epochs=0)
    with pytest.raises(ValueError, match="power_t"):
        InverseScaling(0.1, power_t=-1)
