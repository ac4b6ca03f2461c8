"""Property tests: Hypothesis draws shapes, dtypes and values; every compiled kernel must agree
with its NumPy twin in fastmlp.reference, and one compiled training call with one call of the
reference.

Tolerances follow the size of what is summed: a dot product of n terms in float32 may be off by
about n * eps * sum(|terms|), so bounds are built from |x| @ |W| rather than from the result,
which can cancel to near 0.
"""

import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
kernels = pytest.importorskip("fastmlp.engine.kernels")
engine = pytest.importorskip("fastmlp.engine")

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra.numpy import arrays  # noqa: E402

import helpers  # noqa: I001 (the tests folder is on sys.path)
from fastmlp import reference  # noqa: E402
from fastmlp.engine.lowlevel.blas import blas_handle  # noqa: E402
from fastmlp.codes import ACTIVATIONS, HEADS  # noqa: E402
from fastmlp.params import init_params, layer_views, param_count  # noqa: E402
from fastmlp.engine.lowlevel.threads import thread_limits  # noqa: E402

# Modest: the first example of each test compiles (or loads) kernels; no example database on disk.
# Under CI the draws are derandomized (the same examples every run, so a result is
# reproducible); elsewhere every run explores new ones.
SETTINGS = settings(max_examples=25, deadline=None, database=None,
                    derandomize=bool(os.environ.get("CI")),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = st.sampled_from([np.float32, np.float64])
Y_HEADS = ("identity", "logistic")      # heads whose targets are the matrix Y, not class indices
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


def targets(draw, head, shape, dtype, bound=4.0):
    """The matrix Y of a head: values (identity), 0/1 labels (logistic) or empty (class heads)."""
    if head == "identity":
        return values(draw, shape, dtype, bound)
    if head == "logistic":
        return draw(arrays(dtype, shape, elements=st.sampled_from([0.0, 1.0])))
    return np.zeros((0, shape[1]), dtype)


def values(draw, shape, dtype, bound=4.0):
    """An array of finite values in [-bound, bound], with some exact zeros and repeats.

    Magnitudes below 1e-6 become 0: the engine runs with subnormals flushed to zero (FTZ/DAZ,
    fastmlp/fpenv.py), so an input like 1.2e-38 times a weight is 0 there and a subnormal in
    the reference, and a ReLU then takes different sides of its kink."""
    elements = st.floats(-bound, bound, allow_nan=False, allow_infinity=False,
                         width=32 if dtype == np.float32 else 64).map(
                             lambda v: 0.0 if abs(v) < 1e-6 else v)
    return draw(arrays(dtype, shape, elements=elements))


def close_within(actual, expected, bound, what):
    """|actual - expected| <= bound elementwise, with the worst offender in the message."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    err = np.abs(actual - expected)
    bound = np.broadcast_to(np.asarray(bound, np.float64), err.shape)
    if err.size and not (err <= bound).all():
        i = np.unravel_index(np.argmax(err - bound), err.shape)
        raise AssertionError(f"{what}: at {i} got {actual[i]!r}, expected {expected[i]!r} "
                             f"(error {err[i]:.3g} > bound {bound[i]:.3g})")


@st.composite
def dense_case(draw):
    dtype = draw(DTYPES)
    B, n_in, n_out = (draw(st.integers(1, n)) for n in (9, 12, 9))
    return (dtype, values(draw, (B, n_in), dtype), values(draw, (n_in, n_out), dtype),
            values(draw, (n_out,), dtype))


def matmul_bound(x, W, b, dtype):
    """Rounding bound of x @ W + b: (n_in + 2) eps (|x| @ |W| + |b|), plus a tiny floor."""
    scale = np.abs(x).astype(np.float64) @ np.abs(W).astype(np.float64) + np.abs(b)
    return 4 * (x.shape[1] + 2) * EPS[dtype] * scale + 1e-30


@pytest.mark.parametrize("act", ACTIVATIONS)
@SETTINGS
@given(case=dense_case())
def test_dense_forward(act, case):
    dtype, x, W, b = case
    out = np.full((x.shape[0], W.shape[1]), np.nan, dtype)
    kernels.dense_forward(out, x, W, b, ACTIVATIONS.index(act), blas_handle())
    assert out.dtype == dtype
    # Every activation is 1-Lipschitz, so the pre-activation bound carries over; the
    # activation itself rounds its output once more.
    expected = reference.dense(x, W, b, act)
    close_within(out, expected, matmul_bound(x, W, b, dtype) + 4 * EPS[dtype] * np.abs(expected),
                 f"dense_forward {act} {dtype.__name__} x{x.shape} W{W.shape}")


@pytest.mark.parametrize("act", ACTIVATIONS)
@SETTINGS
@given(data=st.data())
def test_activation_backward(act, data):
    dtype = data.draw(DTYPES)
    shape = (data.draw(st.integers(1, 8)), data.draw(st.integers(1, 8)))
    z = values(data.draw, shape, dtype)
    a = reference.activation_forward(z, act)
    da = values(data.draw, shape, dtype)
    dz = da.copy()
    kernels.activation_backward(dz, a, ACTIVATIONS.index(act))
    expected = reference.activation_grad(a, da, act)
    close_within(dz, expected, 4 * EPS[dtype] * np.abs(da).astype(np.float64) + 1e-30,
                 f"activation_backward {act} {dtype.__name__}")


@SETTINGS
@given(case=dense_case(), need_dinp=st.booleans(), data=st.data())
def test_dense_backward(case, need_dinp, data):
    dtype, x, W, _ = case
    dz = values(data.draw, (x.shape[0], W.shape[1]), dtype)
    ref_dinp, ref_dW, ref_db = reference.dense_grads(x, W, dz, dz, "identity", need_dinp)
    dinp = np.full_like(x, np.nan)
    dW, db = np.full_like(W, np.nan), np.full(W.shape[1], np.nan, dtype)
    kernels.dense_backward(dinp, dW, db, x, W, dz, need_dinp, blas_handle())
    ax, aW, adz = (np.abs(t).astype(np.float64) for t in (x, W, dz))
    B = x.shape[0]
    close_within(dW, ref_dW, 4 * (B + 2) * EPS[dtype] * (ax.T @ adz) + 1e-30, "dW")
    close_within(db, ref_db, 4 * (B + 2) * EPS[dtype] * adz.sum(axis=0) + 1e-30, "db")
    if need_dinp:
        close_within(dinp, ref_dinp, 4 * (W.shape[1] + 2) * EPS[dtype] * (adz @ aW.T) + 1e-30, "dinp")
    else:
        assert np.isnan(dinp).all(), "dinp was written although need_dinp is False"


@pytest.mark.parametrize("head", HEADS)
@SETTINGS
@given(data=st.data())
def test_heads(head, data):
    dtype = data.draw(DTYPES)
    B, C = data.draw(st.integers(1, 10)), data.draw(st.integers(2, 8))
    bound = data.draw(st.sampled_from([1.0, 30.0]))       # 30: exp(30) overflows no float type here
    z = values(data.draw, (B, C), dtype, bound)
    y = data.draw(arrays(np.int64, B, elements=st.integers(0, C - 1)))
    Y = targets(data.draw, head, (B, C), dtype)
    y_used = np.zeros(0, np.int64) if head in Y_HEADS else y
    ref_loss, ref_out, ref_dz = reference.head_loss_and_grad(z, y, Y, head)
    code = HEADS.index(head)
    what = f"{head} head {dtype.__name__} {B}x{C} |z|<={bound}"

    dz = np.full_like(z, np.nan)
    loss, correct = kernels.head_backward(dz, z, y_used, Y, np.zeros(0, dtype), code, dtype(1.0 / B))
    # exp and log of z - max(z) carry an error of about eps * |z|, per term
    tol = 16 * EPS[dtype] * (1 + np.abs(z).max() + (np.abs(Y).max() if Y.size else 0)) * C
    assert np.isfinite(loss) and np.isfinite(dz).all(), what
    close_within(loss / B, ref_loss, tol * (1 + abs(ref_loss)), what + " loss")
    close_within(dz, ref_dz, tol / B, what + " dz")

    loss_only, correct_only = kernels.head_loss(z, y_used, Y, np.zeros(0, dtype), code)
    close_within(loss_only / B, ref_loss, tol * (1 + abs(ref_loss)), what + " head_loss")
    out = np.full_like(z, np.nan)
    kernels.head_forward(out, z, code)
    close_within(out, ref_out, tol, what + " head_forward")
    if head == "logistic":                  # subset accuracy: every label's (z > 0) right
        assert correct == correct_only == int(np.sum(np.all((z > 0) == (Y > 0.5), axis=1))), what
    elif head != "identity":
        assert correct == correct_only == int(np.sum(z.argmax(axis=1) == y)), what


@st.composite
def training_case(draw):
    dtype = draw(DTYPES)
    layers = [draw(st.integers(1, 6)) for _ in range(draw(st.integers(2, 4)))]
    head = draw(st.sampled_from(HEADS))
    if head != "identity":
        layers[-1] = max(layers[-1], 2)
    act = draw(st.sampled_from(ACTIVATIONS))
    # Adam divides by sqrt(v) + eps: in float32 a gradient of rounding-noise size can move a
    # weight by lr either way, so Adam is compared in float64 only.
    opt = draw(st.sampled_from([0, 1] if dtype == np.float64 else [0]))
    momentum = 0.0 if opt else draw(st.sampled_from([0.0, 0.9]))
    nesterov = bool(momentum) and draw(st.booleans())
    decay = draw(st.sampled_from([0.0, 0.01]))
    B = draw(st.integers(1, 12))
    n = B + draw(st.integers(0, 5))                       # the batch is drawn from n rows
    X = values(draw, (n, layers[0]), dtype, 2.0)
    y = draw(arrays(np.int64, n, elements=st.integers(0, layers[-1] - 1)))
    Y = targets(draw, head, (n, layers[-1]), dtype, 2.0)
    order = np.asarray(draw(st.permutations(range(n)))[:B], dtype=np.int64)
    threads = draw(st.sampled_from([1, 2]))
    seed = draw(st.integers(0, 2**16))
    return dict(dtype=dtype, layers=layers, head=head, act=act, opt=opt, momentum=momentum,
                nesterov=nesterov, decay=decay, B=B, X=X, y=y, Y=Y, order=order, threads=threads,
                seed=seed)


@SETTINGS
@given(case=training_case())
def test_train_batches_one_batch(case):
    """One minibatch through engine.train_batches and reference.train_batches: same weights,
    optimizer state and statistics."""
    dtype, layers = case["dtype"], case["layers"]
    flat0 = init_params(layers, "glorot", np.random.default_rng(case["seed"]), dtype)
    assert flat0.shape == (param_count(layers),)
    y = case["y"] if case["head"] not in Y_HEADS else np.zeros(0, np.int64)
    results = []
    for eng, threads in ((reference, 1), (engine, case["threads"])):
        flat = flat0.copy()
        state1 = np.zeros_like(flat)
        state2 = np.zeros_like(flat) if case["opt"] == 1 else np.zeros(0, dtype)
        with thread_limits(threads, 1):
            stats = helpers.train_batches(eng, flat, np.array(layers, dtype=np.int64), ACTIVATIONS.index(case["act"]),
                                      HEADS.index(case["head"]), case["X"], y, case["Y"], case["order"],
                                      case["B"], case["opt"], 0.05, case["momentum"], case["nesterov"],
                                      case["decay"], 0.9, 0.999, 1e-8, state1, state2, 0)
        results.append((flat, state1, state2, stats))
    (ref_flat, ref_s1, ref_s2, ref_stats), (flat, s1, s2, stats) = results
    what = (f"{dtype.__name__} layers={layers} {case['act']}/{case['head']} opt={case['opt']} "
            f"momentum={case['momentum']} decay={case['decay']} B={case['B']} threads={case['threads']}")
    assert stats[4] == ref_stats[4] == -1 and stats[3] == ref_stats[3] == 1, what
    assert stats[2] == ref_stats[2] == case["B"], what
    if case["head"] != "identity":
        # Rows whose deciding logits are within rounding of a tie (two top logits, or a logistic
        # logit at 0) may be counted differently by the two engines' differently rounded sums.
        z = reference.forward(layer_views(flat0, layers), case["X"][case["order"]].astype(dtype),
                              case["act"], case["head"])[-1]
        tol = 1e-6 * (1 + np.abs(z).max(axis=1))
        if case["head"] == "logistic":
            near_ties = int(np.sum(np.abs(z).min(axis=1) <= tol))
        else:
            top2 = np.sort(z, axis=1)[:, -2:]
            near_ties = int(np.sum(top2[:, 1] - top2[:, 0] <= tol))
        assert abs(stats[1] - ref_stats[1]) <= near_ties, what + " correct count"
    # A few layers of products in a row: scale the float32 bound generously, float64 tightly.
    rtol, atol = (2e-4, 2e-5) if dtype == np.float32 else (1e-9, 1e-11)
    np.testing.assert_allclose(flat, ref_flat, rtol=rtol, atol=atol, err_msg=what + " weights")
    np.testing.assert_allclose(s1, ref_s1, rtol=rtol, atol=atol, err_msg=what + " state1")
    np.testing.assert_allclose(s2, ref_s2, rtol=rtol, atol=atol, err_msg=what + " state2")
    np.testing.assert_allclose(stats[0], ref_stats[0], rtol=rtol * 10, atol=atol, err_msg=what + " loss")
