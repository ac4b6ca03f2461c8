"""Every compiled kernel against its NumPy twin in fastmlp.reference, over a grid of shapes."""

import math

import numpy as np
import pytest
from numba import njit

from fastmlp import reference
from fastmlp.engine import kernels
from fastmlp.engine.optimizer import Hyper, optimizer_update
from fastmlp.engine.lowlevel.blas import blas_handle, gemm
from fastmlp.codes import ACTIVATIONS, HEADS

# (rtol, atol) per dtype: float64 tight, float32 loose
TOL = {np.float64: (1e-10, 1e-12), np.float32: (1e-4, 1e-5)}
DTYPES = [np.float64, np.float32]
# batch 1, odd sizes, and sizes that are no multiple of any tile (AVX-512 holds 16 floats)
SHAPES = [(1, 1, 1), (1, 7, 3), (5, 3, 9), (17, 33, 10), (64, 16, 16), (33, 65, 31)]


def close(actual, expected, dtype, what):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def data(shape, dtype, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@njit(cache=True)
def _gemm_in_numba(blas, ta, tb, A, B, C):
    """gemm as the kernels call it (from compiled code); one compiled version per dtype."""
    gemm(blas, ta, tb, -0.5, A, B, 0.25, C)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (17, 1, 33), (64, 31, 2)])
def test_gemm_matches_numpy(dtype, ta, tb, m, n, k):
    A = data((k, m) if ta else (m, k), dtype, 1)
    B = data((n, k) if tb else (k, n), dtype, 2)
    C = data((m, n), dtype, 3)
    expected = -0.5 * ((A.T if ta else A) @ (B.T if tb else B)) + 0.25 * C
    kernels_C = C.copy()
    _gemm_in_numba(blas_handle(), ta, tb, A, B, kernels_C)
    close(kernels_C, expected, dtype, f"gemm ta={ta} tb={tb} m,n,k={m},{n},{k}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("B,n_in,n_out", SHAPES)
def test_dense_forward(dtype, act, B, n_in, n_out):
    x, W, b = data((B, n_in), dtype, 1), data((n_in, n_out), dtype, 2), data(n_out, dtype, 3)
    out = np.empty((B, n_out), dtype)
    kernels.dense_forward(out, x, W, b, ACTIVATIONS.index(act), blas_handle())
    assert out.dtype == dtype
    close(out, reference.dense(x, W, b, act), dtype, f"dense_forward {act} {B}x{n_in}x{n_out}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("B,n_in,n_out", SHAPES)
def test_dense_backward(dtype, act, B, n_in, n_out):
    x, W, b = data((B, n_in), dtype, 1), data((n_in, n_out), dtype, 2), data(n_out, dtype, 3)
    out = reference.dense(x, W, b, act)
    dout = data((B, n_out), dtype, 4)
    ref_dinp, ref_dW, ref_db = reference.dense_grads(x, W, out, dout, act)
    # the compiled backward takes dz: the activation derivative is applied by activation_backward
    dz = dout.copy()
    kernels.activation_backward(dz, out, ACTIVATIONS.index(act))
    dinp, dW, db = np.empty_like(x), np.full_like(W, np.nan), np.full_like(b, np.nan)
    kernels.dense_backward(dinp, dW, db, x, W, dz, True, blas_handle())
    case = f"dense_backward {act} {B}x{n_in}x{n_out}"
    close(dW, ref_dW, dtype, case + " dW")
    close(db, ref_db, dtype, case + " db")
    close(dinp, ref_dinp, dtype, case + " dinp")


def test_exp_nonpositive_is_within_two_ulp_of_exp():
    """The vectorised float32 exp of the softmax against exp in float64, over its whole range
    and past it (0 below the smallest normal float32), -inf and NaN; float64 is math.exp."""
    x = np.concatenate([np.linspace(-100, 0, 200_001), -np.logspace(-30, 2, 1000),
                        [0.0, -0.0, kernels.EXP_MIN_F32, -87.4, -1e30, -np.inf, np.nan]])
    x = x.astype(np.float32).astype(np.float64)    # the inputs float32 can hold
    expected = np.exp(x)
    got32 = x.astype(np.float32)
    kernels.exp_nonpositive(got32)
    normal = expected >= np.finfo(np.float32).tiny
    rel = np.abs(got32[normal] - expected[normal]) / expected[normal]
    assert rel.max() <= 2 * np.finfo(np.float32).eps, f"max error {rel.max():.3g}"
    below = ~normal & ~np.isnan(x)
    assert np.all(got32[below] == 0) and np.isnan(got32[-1])
    got64 = x.copy()
    kernels.exp_nonpositive(got64)
    # against math.exp: NumPy's exp may differ from it by an ulp
    np.testing.assert_array_equal(got64, [math.exp(v) for v in x])


def test_sigmoid_is_within_two_ulp_and_keeps_its_limits():
    """The hidden layers' sigmoid (its own vectorised loop in bias_activation_rows, float32 on
    the polynomial exp) against the float64 sigmoid: within 2 ulp where the result is a normal
    float32, 0 below, 1 and 0 at +-inf, NaN kept; float64 is exact to the formula on math.exp."""
    z = np.concatenate([np.linspace(-100, 100, 400_001), -np.logspace(-30, 2, 500),
                        np.logspace(-30, 2, 500), [0.0, -0.0, np.inf, -np.inf, 1e30, -1e30,
                                                   np.nan]])
    z = z.astype(np.float32).astype(np.float64)
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-z))
    got32 = z.astype(np.float32).reshape(-1, 1)
    kernels.bias_activation_forward(got32, np.zeros(1, np.float32), ACTIVATIONS.index("sigmoid"))
    got32 = got32.ravel()
    normal = expected >= np.finfo(np.float32).tiny
    rel = np.abs(got32[normal] - expected[normal]) / expected[normal]
    assert rel.max() <= 2 * np.finfo(np.float32).eps, f"max error {rel.max():.3g}"
    below = ~normal & ~np.isnan(z)
    assert np.all(got32[below] == 0) and np.isnan(got32[-1])
    assert got32[np.isposinf(z)][0] == 1 and got32[np.isneginf(z)][0] == 0
    got64 = z.reshape(-1, 1).copy()
    kernels.bias_activation_forward(got64, np.zeros(1), ACTIVATIONS.index("sigmoid"))
    e = np.array([math.exp(-abs(v)) for v in z[:-1]])     # NumPy's exp may differ by an ulp
    np.testing.assert_array_equal(got64.ravel()[:-1], np.where(z[:-1] >= 0, 1.0, e) / (1 + e))


def ref_head(head, z, y, Y):
    loss, output, dz = reference.head_loss_and_grad(z, y, Y, head)
    return loss, output, dz


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("B,C", [(1, 2), (3, 10), (17, 5), (64, 3)])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_heads(dtype, head, B, C, scale):
    z = data((B, C), dtype, 1, scale)
    y = np.random.default_rng(2).integers(0, C, B)
    Y = data((B, C), dtype, 3)
    if head == "logistic":                           # multilabel 0/1 targets
        Y = (Y > 0).astype(dtype)
    loss, output, dz = ref_head(head, z, y, Y)
    got_dz = np.empty_like(z)
    code = HEADS.index(head)
    got_loss, correct = kernels.head_backward(got_dz, z, y, Y, np.zeros(0, dtype), code, dtype(1.0 / B))
    case = f"{head} head {B}x{C} logits scale {scale}"
    assert np.isfinite(got_loss) and np.isfinite(got_dz).all(), case
    rtol = TOL[dtype][0] if scale == 1.0 else 1e-3   # float32 logits of 1e4 lose digits
    np.testing.assert_allclose(got_loss / B, loss, rtol=rtol, atol=TOL[dtype][1], err_msg=case)
    close(got_dz, dz, dtype, case + " dz")
    loss_only, correct_only = kernels.head_loss(z, y, Y, np.zeros(0, dtype), code)
    np.testing.assert_allclose(loss_only / B, loss, rtol=rtol, atol=TOL[dtype][1], err_msg=case)
    out = np.empty_like(z)
    kernels.head_forward(out, z, code)
    close(out, output, dtype, case + " output")
    if head == "logistic":                           # subset accuracy: every label right
        expected = int(np.sum(np.all((z > 0) == (Y > 0.5), axis=1)))
        assert correct == correct_only == expected, case
    elif head != "identity":
        assert correct == correct_only == int(np.sum(z.argmax(axis=1) == y)), case


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("B,C", [(1, 2), (3, 10), (17, 5), (64, 3)])
def test_weighted_heads(dtype, head, B, C):
    """Per-row weights (some 0): loss = weighted sum, dz_i scaled by w_i / sum(w), the kernel
    and its reference twin agree in both dtypes, and the gradient stays in the dtype."""
    z = data((B, C), dtype, 1, 3.0)
    y = np.random.default_rng(2).integers(0, C, B)
    Y = data((B, C), dtype, 3)
    if head == "logistic":
        Y = (Y > 0).astype(dtype)
    w = np.random.default_rng(4).uniform(0, 3, B).astype(dtype)
    w[1::3] = 0
    w[0] = 1.5                                       # a nonzero total
    total = float(w.sum(dtype=np.float64))
    loss, _, dz = reference.head_loss_and_grad(z, y, Y, head, w)
    assert dz.dtype == dtype
    code = HEADS.index(head)
    got_dz = np.full_like(z, np.nan)
    got_loss, correct = kernels.head_backward(got_dz, z, y, Y, w, code, dtype(1.0 / total))
    case = f"weighted {head} head {dtype.__name__} {B}x{C}"
    np.testing.assert_allclose(got_loss / total, loss, rtol=TOL[dtype][0], atol=TOL[dtype][1], err_msg=case)
    close(got_dz, dz, dtype, case + " dz")
    np.testing.assert_array_equal(got_dz[w == 0], 0, err_msg=case + ": a weight-0 row has a gradient")
    loss_only, correct_only = kernels.head_loss(z, y, Y, w, code)
    np.testing.assert_allclose(loss_only / total, loss, rtol=TOL[dtype][0], atol=TOL[dtype][1], err_msg=case)
    # weighted = the per-row losses of the unweighted twin, averaged with the weights
    rows = [reference.head_loss_and_grad(z[i:i + 1], y[i:i + 1], Y[i:i + 1], head)[0] for i in range(B)]
    np.testing.assert_allclose(loss, np.average(rows, weights=w.astype(np.float64)),
                               rtol=TOL[dtype][0], atol=TOL[dtype][1], err_msg=case)
    unweighted = kernels.head_backward(np.empty_like(z), z, y, Y, w[:0], code, dtype(1.0 / B))[1]
    assert correct == correct_only == unweighted, case + ": the correct count is not weighted"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt,momentum,nesterov", [("sgd", 0.0, False), ("sgd", 0.9, False),
                                                   ("sgd", 0.9, True), ("adam", 0.0, False)])
@pytest.mark.parametrize("P", [1, 37, 1000])
@pytest.mark.parametrize("decay", [0.0, 0.01])
def test_optimizer_update(dtype, opt, momentum, nesterov, P, decay):
    p = data(P, dtype, 1)
    g = data(P, dtype, 2)
    decay_vec = np.where(np.arange(P) % 5 == 0, 0, decay).astype(dtype)
    ref_p = p.copy()
    s1, s2 = data(P, dtype, 3) * 0.1, np.abs(data(P, dtype, 4)) * 0.1
    ref_s1, ref_s2 = s1.copy(), s2.copy()
    lr, b1, b2, eps, step = 0.05, 0.9, 0.999, 1e-8, 3
    hyper = Hyper.of(opt, lr, momentum, nesterov, 0.0, b1, b2, eps)
    reference.optimizer_update(ref_p, g.copy(), decay_vec, ref_s1, ref_s2, hyper, step)
    optimizer_update(p, g.copy(), decay_vec if decay else decay_vec[:0], s1, s2, hyper, step)
    case = f"{opt} momentum={momentum} nesterov={nesterov} P={P} decay={decay}"
    close(p, ref_p, dtype, case)
    if opt == "adam" or momentum:
        close(s1, ref_s1, dtype, case + " state1")
    if opt == "adam":
        close(s2, ref_s2, dtype, case + " state2")


@pytest.mark.parametrize("act", ACTIVATIONS)
def test_float32_scalar_kernels_return_float32(act):
    """A Python float literal would promote a float32 expression to float64: check the return
    types Numba inferred for float32 arguments."""
    from numba import types

    code = ACTIVATIONS.index(act)
    for fn, args in ((kernels.activate, (np.float32(0.3), code)),
                     (kernels.activation_derivative, (np.float32(0.3), code)),
                     (kernels.sigmoid_scalar, (np.float32(-0.3),))):
        fn(*args)
        sig = next(s for s in fn.signatures if s[0] == types.float32)
        assert fn.overloads[sig].signature.return_type == types.float32, f"{fn.__name__}({act})"
