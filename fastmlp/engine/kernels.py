"""Numba kernels: the compiled twins of :mod:`fastmlp.reference`, one forward/backward pair per op.

Conventions (as in the reference): row-major, x is (B, n_in), W is (n_in, n_out), b is (n_out,),
out is (B, n_out). Output buffers come first in the argument list. Backward kernels OVERWRITE
their outputs (never accumulate). The loss kernels return the loss SUMMED over their rows and
take ``scale`` (1 / size of the whole minibatch) for the gradient, so that chunks of one
minibatch computed on different threads add up to the minibatch mean. Per-sample weights: the
loss kernels also take ``w``, the rows' weights (an empty array means all 1); row i's loss is
multiplied by w_i and its gradient by w_i * scale, with ``scale`` = 1 / the minibatch's weight
total, which makes the minibatch loss a weighted mean.

Every kernel keeps the dtype it is given: constants go through ``T = x.dtype.type`` because a
Python float literal would silently promote a float32 expression to float64. Matrix products go
through :func:`fastmlp.engine.lowlevel.blas.gemm`; ``blas`` is the handle from
:func:`fastmlp.engine.lowlevel.blas.blas_handle`.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..codes import (ACT_IDENTITY, ACT_LEAKY_RELU, ACT_RELU, ACT_SIGMOID, ACT_TANH, HEAD_IDENTITY,
                    HEAD_LOGISTIC, HEAD_SIGMOID, HEAD_SOFTMAX, LEAKY_SLOPE)
from .lowlevel.blas import gemm, gemm_few_rows
from .lowlevel.intrinsics import float32_from_bits

# error_model="numpy": a float division by zero gives inf or nan as in NumPy instead of raising,
# which also lets LLVM vectorise loops that divide (docs/performance.md, "error_model").
jit = njit(cache=True, nogil=True, error_model="numpy")
# values that Numba does not type as literals: a call that passes a literal (0, True, ...) is
# compiled apart from one that passes a variable in its place, seconds of a first fit each
ZERO, ONE = np.int64(0), np.int64(1)
TRUE, FALSE = np.bool_(True), np.bool_(False)


# ---------------------------------------------------------------- activations

@jit
def sigmoid_scalar(z):
    """1 / (1 + exp(-z)) without overflow: with e = exp(-|z|) <= 1, 1 / (1 + e) for z >= 0
    and e / (1 + e) below (NaN stays NaN). No branch and, in float32, no call
    (:func:`exp_nonpositive_scalar`): a loop over it vectorises."""
    T = type(z)
    e = exp_nonpositive_scalar(-abs(z))
    return (T(1) if z >= 0 else e) / (T(1) + e)


@jit
def activate(z, act):
    """act(z) for one scalar; ``act`` is a code from fastmlp.codes."""
    T = type(z)
    if act == ACT_RELU:
        return T(0) if z <= 0 else z     # NaN stays NaN, as in np.maximum
    if act == ACT_LEAKY_RELU:
        return z if z > 0 else z * T(LEAKY_SLOPE)
    if act == ACT_SIGMOID:
        return sigmoid_scalar(z)
    if act == ACT_TANH:
        return math.tanh(z)
    return z


@jit
def activation_derivative(a, act):
    """act'(z) written in terms of the output a = act(z)."""
    T = type(a)
    if act == ACT_RELU:
        return T(1) if a > 0 else T(0)
    if act == ACT_LEAKY_RELU:
        return T(1) if a > 0 else T(LEAKY_SLOPE)
    if act == ACT_SIGMOID:
        return a * (T(1) - a)
    if act == ACT_TANH:
        return T(1) - a * a
    return T(1)


@jit
def bias_activation_rows(buf, start, ld, B, c0, c1, b, act):
    """x <- act(x + b) in place on columns c0:c1 of the B rows, ``ld`` elements apart, of the
    block at ``start`` of the flat buffer ``buf``; b has c1 - c0 entries. Loops over 1-D slices
    of the flat buffer vectorise (not so over a block of columns of a 2-D array, whose strides
    Numba cannot know, nor over buf[at + j], whose index might be negative; docs/performance.md,
    "Loops over 1-D row slices")."""
    n = c1 - c0
    for i in range(B):
        row = buf[start + i * ld + c0:start + i * ld + c1]
        if act == ACT_RELU:             # the common case in a loop of its own, without branches
            T = buf.dtype.type
            for j in range(n):
                z = row[j] + b[j]
                row[j] = T(0) if z <= 0 else z
        elif act == ACT_SIGMOID:        # a loop of its own too: it vectorises
            for j in range(n):
                row[j] = sigmoid_scalar(row[j] + b[j])
        else:
            for j in range(n):
                row[j] = activate(row[j] + b[j], act)


@jit
def bias_activation_forward(out, b, act):
    """out <- act(out + b), in place; out is a C-contiguous (B, n), b is (n,)."""
    B, n = out.shape
    bias_activation_rows(out.reshape(-1), ZERO, n, B, ZERO, n, b, act)


@jit
def activation_backward_rows(dz, a, start, ld, B, c0, c1, act):
    """dz <- dz * act'(z) in place, from the layer output a, on columns c0:c1 of the B rows,
    ``ld`` elements apart, of the blocks at ``start`` of the flat buffers dz and a (see
    bias_activation_rows)."""
    if act == ACT_IDENTITY:
        return
    n = c1 - c0
    for i in range(B):
        d = dz[start + i * ld + c0:start + i * ld + c1]
        out = a[start + i * ld + c0:start + i * ld + c1]
        if act == ACT_RELU:
            # a loop of its own, which LLVM compiles without branches: with the act test inside,
            # the branch on the sign of a is mispredicted half the time
            T = dz.dtype.type
            for j in range(n):
                d[j] *= T(1) if out[j] > 0 else T(0)
        else:
            for j in range(n):
                d[j] *= activation_derivative(out[j], act)


@jit
def activation_backward(dz, a, act):
    """dz <- dz * act'(z) in place, from the layer output a (no mask arrays); both C-contiguous
    (B, n)."""
    B, n = dz.shape
    activation_backward_rows(dz.reshape(-1), a.reshape(-1), ZERO, n, B, ZERO, n, act)


# ---------------------------------------------------------------- dense layer

@jit
def dense_forward(out, x, W, b, act, blas):
    """out = act(x @ W + b): the matmul in BLAS, bias and activation fused in one pass."""
    gemm_few_rows(blas, False, x, W, out)
    bias_activation_forward(out, b, act)


@jit
def dense_backward(dinp, dW, db, x, W, dz, need_dinp, blas):
    """dW = x.T @ dz, db = sum over rows of dz, dinp = dz @ W.T (skipped unless need_dinp).

    dz is the gradient of the pre-activation (B, n_out), already scaled by 1 / B.
    """
    gemm(blas, True, False, 1.0, x, dz, 0.0, dW)
    B, n_out = dz.shape
    db[:] = 0
    for i in range(B):
        for j in range(n_out):
            db[j] += dz[i, j]
    if need_dinp:
        gemm(blas, False, True, 1.0, dz, W, 0.0, dinp)


# ---------------------------------------------------------------- output heads

@jit
def row_weight(w, i):
    """Weight of row i as a float64: 1 when ``w`` is empty (uniform weights)."""
    return 1.0 if w.shape[0] == 0 else float(w[i])


@jit
def row_scale(w, i, scale):
    """Gradient factor of row i: ``scale`` times its weight (``scale`` alone when ``w`` is empty)."""
    return scale if w.shape[0] == 0 else scale * w[i]


# ln of the smallest normal float32 (1.1754944e-38): exp below it is a denormal, flushed to 0
EXP_MIN_F32 = -87.33654


def exp_nonpositive_scalar(v):
    """exp(v) for v <= 0 (NaN stays NaN); compiled, float32 takes :func:`_exp_nonpositive_f32`
    and float64 math.exp."""
    return math.exp(v)


@overload(exp_nonpositive_scalar, jit_options={"error_model": "numpy"}, inline="always")
def _exp_nonpositive_scalar(v):
    if v == types.float32:
        return _exp_nonpositive_f32
    return lambda v: math.exp(v)


def _exp_nonpositive_f32(v):
    """exp(v) for a float32 v <= 0 (NaN stays NaN), with no call, so that a loop over it
    vectorises (libm's expf is a call per element), to within about 1 ulp of expf (the Cephes
    scheme):
        exp(v) = 2^n * exp(r),  n = round(v / ln 2),  r = v - n ln 2 in [-ln2/2, ln2/2]
    with ln 2 split in two constants so that n ln 2 is exact enough, exp(r) by its Taylor-like
    minimax polynomial 1 + r + r^2 (1/2 + r/6 + ...), and 2^n written into the exponent bits
    ((n + 127) << 23); below EXP_MIN_F32 the result is 0."""
    T = np.float32
    # NaN -> 0 and v clamped to [EXP_MIN_F32, 0] for the integer conversion only
    vc = T(0) if v != v else (T(EXP_MIN_F32) if v < T(EXP_MIN_F32) else v)
    m = np.int32(vc * T(1.4426950408889634) - T(0.5))   # truncation = round(v / ln 2)
    n = T(m)
    r = vc - n * T(0.693359375) + n * T(2.12194440e-4)
    p = T(1.9875691500e-4)
    p = p * r + T(1.3981999507e-3)
    p = p * r + T(8.3334519073e-3)
    p = p * r + T(4.1665795894e-2)
    p = p * r + T(1.6666665459e-1)
    p = p * r + T(5.0000001201e-1)
    p = p * r * r + r + T(1)
    two_n = float32_from_bits((m + np.int32(127)) << np.int32(23))
    return v if v != v else (T(0) if v < T(EXP_MIN_F32) else p * two_n)


@jit
def exp_nonpositive(x):
    """x <- exp(x) in place on a 1-D array of values <= 0 (NaN stays NaN), element by element
    (:func:`exp_nonpositive_scalar`: in float32 the loop vectorises)."""
    for k in range(x.shape[0]):
        x[k] = exp_nonpositive_scalar(x[k])


@jit
def softmax_crossentropy_backward(dlogits, logits, y, w, scale):
    """Fused softmax + cross-entropy over rows: dlogits_i = (softmax(z_i) - onehot(y_i)) * w_i * scale.

    ``w`` holds the rows' weights (empty: all 1). Returns (sum over rows of
    w_i * [logsumexp(z_i) - z_i[y_i]], correct argmax count, unweighted). Stable for any finite
    logits: exp only sees z - max(z) <= 0, all rows' at once (:func:`exp_nonpositive`), in
    dlogits itself where it is contiguous (no scratch array: a step allocates nothing).
    """
    B, C = logits.shape
    T = type(scale)
    e = flat_scratch(dlogits)                   # e[i * C + j]: z_ij - max(z_i), then its exp
    correct = 0
    for i in range(B):
        top, arg = _row_max(logits, i)
        correct += arg == y[i]
        for j in range(C):
            e[i * C + j] = logits[i, j] - top
    exp_nonpositive(e)
    loss = 0.0
    for i in range(B):
        s = row_scale(w, i, scale)
        total = T(0)
        for j in range(C):
            total += e[i * C + j]
        inv = T(1) / total
        for j in range(C):
            dlogits[i, j] = e[i * C + j] * (inv * s)
        dlogits[i, y[i]] -= s
        top = _row_max(logits, i)[0]
        loss += row_weight(w, i) * (math.log(total) - (logits[i, y[i]] - top))
    return loss, correct


@jit
def _row_max(z, i):
    """(max of row i of z, the first column that holds it)."""
    top = z[i, 0]
    arg = 0
    for j in range(1, z.shape[1]):
        if z[i, j] > top:
            top = z[i, j]
            arg = j
    return top, arg


def flat_scratch(a):
    """A 1-D array of a's size: compiled, ``a`` itself seen flat where its type is contiguous
    (no allocation; what is written there is written into ``a``), else a new array."""
    return np.empty(a.size, a.dtype)


@overload(flat_scratch, inline="always")
def _flat_scratch(a):
    if isinstance(a, types.Array) and a.layout == "C":
        return lambda a: a.reshape(a.size)
    return lambda a: np.empty(a.size, a.dtype)


@jit
def squared_error_backward(dout, out, Y, w, scale):
    """Identity head: dout_i = (out_i - Y_i) * w_i * scale; returns the sum over rows of
    w_i * 0.5 * ||out_i - Y_i||^2 (``w`` empty: all weights 1)."""
    B, k = out.shape
    loss = 0.0
    for i in range(B):
        s = row_scale(w, i, scale)
        wi = row_weight(w, i)
        for j in range(k):
            d = out[i, j] - Y[i, j]
            dout[i, j] = d * s
            loss += wi * (0.5 * float(d) * float(d))
    return loss


@jit
def sigmoid_squared_error_backward(dz, z, y, w, scale):
    """Sigmoid head, quadratic cost on one-hot targets: a = sigmoid(z),
    dz_i = (a_i - onehot(y_i)) * a_i * (1 - a_i) * w_i * scale. Returns (summed
    w_i * 0.5 * ||a_i - onehot||^2, correct, unweighted); ``w`` empty: all weights 1."""
    B, C = z.shape
    T = type(scale)
    loss = 0.0
    correct = 0
    for i in range(B):
        s = row_scale(w, i, scale)
        wi = row_weight(w, i)
        arg = 0
        for j in range(C):
            arg = j if z[i, j] > z[i, arg] else arg
        correct += arg == y[i]
        for j in range(C):                      # a into dz first: this loop vectorises
            dz[i, j] = sigmoid_scalar(z[i, j])
        for j in range(C):
            a = dz[i, j]
            d = a - (T(1) if j == y[i] else T(0))
            dz[i, j] = d * a * (T(1) - a) * s
            loss += wi * (0.5 * float(d) * float(d))
    return loss, correct


@jit
def softplus_minus_yz(z, t):
    """One entry of the binary cross-entropy on a logit: softplus(z) - t z, in float64, as
    max(z, 0) - t z + log1p(exp(-|z|)) (exact for any finite z; exp only sees -|z|)."""
    zf = float(z)
    return max(zf, 0.0) - float(t) * zf + math.log1p(math.exp(-abs(zf)))


@jit
def sigmoid_crossentropy_backward(dz, z, Y, w, scale):
    """Logistic head, sigmoid + binary cross-entropy on 0/1 targets (multilabel):
    dz_i = (sigmoid(z_i) - Y_i) * w_i * scale. z, Y and dz are (B, k), ``w`` is (B,) or empty.

    Returns (sum over rows and outputs of w_i * [softplus(z) - Y z], rows whose every label
    (z > 0) equals Y: subset accuracy, unweighted).
    """
    B, k = z.shape
    T = type(scale)
    loss = 0.0
    correct = 0
    for i in range(B):
        s = row_scale(w, i, scale)
        wi = row_weight(w, i)
        same = True
        for j in range(k):
            t = Y[i, j]
            dz[i, j] = (sigmoid_scalar(z[i, j]) - t) * s
            loss += wi * softplus_minus_yz(z[i, j], t)
            same = same and ((z[i, j] > T(0)) == (t > T(0.5)))
        correct += same
    return loss, correct


@jit
def head_takes_Y(head):
    """Whether the head trains on the float target matrix Y (else on class indices y)."""
    return head == HEAD_IDENTITY or head == HEAD_LOGISTIC


@jit
def head_backward(dz, z, y, Y, w, head, scale):
    """The head's fused loss and gradient, rows weighted by ``w`` (empty: all 1) and the gradient
    by ``scale`` (1 / the minibatch's weight total): returns (summed weighted loss, correct count)."""
    if head == HEAD_SOFTMAX:
        return softmax_crossentropy_backward(dz, z, y, w, scale)
    if head == HEAD_SIGMOID:
        return sigmoid_squared_error_backward(dz, z, y, w, scale)
    if head == HEAD_LOGISTIC:
        return sigmoid_crossentropy_backward(dz, z, Y, w, scale)
    return squared_error_backward(dz, z, Y, w, scale), 0


@jit
def head_forward(out, z, head):
    """The head's output without a loss: out = softmax(z), sigmoid(z) ("sigmoid" and "logistic")
    or z (row-wise)."""
    B, C = z.shape
    T = out.dtype.type
    for i in range(B):
        if head == HEAD_SOFTMAX:
            zmax = z[i, 0]
            for j in range(1, C):
                zmax = max(zmax, z[i, j])
            total = T(0)
            for j in range(C):
                out[i, j] = math.exp(z[i, j] - zmax)
                total += out[i, j]
            for j in range(C):
                out[i, j] /= total
        elif head == HEAD_SIGMOID or head == HEAD_LOGISTIC:
            for j in range(C):
                out[i, j] = sigmoid_scalar(z[i, j])
        else:
            for j in range(C):
                out[i, j] = z[i, j]


@jit
def head_loss(z, y, Y, w, head):
    """(summed loss, correct count) of the rows of z, without a gradient (evaluation); row i's
    loss is weighted by w_i (``w`` empty: all 1), the count is not."""
    B, C = z.shape
    T = z.dtype.type
    loss = 0.0
    correct = 0
    for i in range(B):
        wi = row_weight(w, i)
        if head == HEAD_IDENTITY:
            for j in range(C):
                d = float(z[i, j]) - float(Y[i, j])
                loss += wi * (0.5 * d * d)
            continue
        if head == HEAD_LOGISTIC:
            same = True
            for j in range(C):
                loss += wi * softplus_minus_yz(z[i, j], Y[i, j])
                same = same and ((z[i, j] > T(0)) == (Y[i, j] > T(0.5)))
            correct += same
            continue
        arg = _row_max(z, i)[1]
        correct += arg == y[i]
        if head == HEAD_SOFTMAX:
            total = 0.0
            for j in range(C):
                total += math.exp(float(z[i, j]) - float(z[i, arg]))
            loss += wi * (math.log(total) - (float(z[i, y[i]]) - float(z[i, arg])))
        else:
            for j in range(C):
                a = sigmoid_scalar(float(z[i, j]))
                d = a - (1.0 if j == y[i] else 0.0)
                loss += wi * (0.5 * d * d)
    return loss, correct


# ---------------------------------------------------------------- input rows

@jit
def gather_convert(dst, src, rows, at, pixels):
    """dst[at[i], :] = src[rows[i], :] in dst's dtype, for rows of data read from a file
    (:class:`fastmlp.mapped.MappedRows`). With ``pixels`` each value v becomes
    float32(v) / float32(255), rounded as NumPy's float32 division rounds it, then dst's dtype:
    what :func:`fastmlp.data.as_float_images` gives."""
    T = dst.dtype.type
    for i in range(rows.shape[0]):
        row = src[rows[i]]
        out = dst[at[i]]
        if pixels:
            for j in range(out.shape[0]):
                out[j] = T(np.float32(row[j]) / np.float32(255))
        else:
            for j in range(out.shape[0]):
                out[j] = T(row[j])
