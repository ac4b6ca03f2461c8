"""The reference: every operation of fastmlp in plain NumPy, written to be read.

It is the ground truth the compiled kernels are tested against, the baseline of the benchmarks,
and the ``engine="numpy"`` of :class:`fastmlp.MLP`. Row-major throughout: X is (B, n_in), a
layer's W is (n_in, n_out), b is (n_out,). Backward functions overwrite their outputs; the
mean over the batch is taken once, in the loss gradient (``dz = (...) / B``).

Per-sample weights: the heads (and everything above them) take an optional ``w``, the rows'
weights (None or an empty array: all 1). The batch loss is then the weighted mean
sum_i w_i loss_i / sum_i w_i and row i's gradient is scaled by w_i / sum_i w_i instead of 1 / B
(a batch of total weight 0 has loss 0 and gradient 0).
"""

import numpy as np

from .codes import ACTIVATIONS, HEADS, LEAKY_SLOPE, OPT_ADAM, Y_HEADS
from .params import layer_views, weight_mask


# ---------------------------------------------------------------- activations

def sigmoid(z):
    """Logistic 1 / (1 + exp(-z)), evaluated without overflow for any z."""
    e = np.exp(-np.abs(z))                      # in (0, 1]: never overflows
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def activation_forward(z, act):
    """a = act(z), elementwise; z is (B, n)."""
    if act == "identity":
        return z.copy()
    if act == "relu":
        return np.maximum(z, 0)
    if act == "leaky_relu":
        return np.where(z > 0, z, z * z.dtype.type(LEAKY_SLOPE))
    if act == "sigmoid":
        return sigmoid(z)
    if act == "tanh":
        return np.tanh(z)
    raise ValueError(f"unknown activation {act!r}; choose one of {ACTIVATIONS}")


def activation_grad(a, da, act):
    """dz = da * act'(z), with the derivative written in terms of the output a = act(z)."""
    if act == "identity":
        return da.copy()
    if act == "relu":
        return np.where(a > 0, da, 0).astype(da.dtype, copy=False)
    if act == "leaky_relu":
        return np.where(a > 0, da, da * da.dtype.type(LEAKY_SLOPE))
    if act == "sigmoid":
        return da * a * (1 - a)                 # sigma' = sigma (1 - sigma)
    if act == "tanh":
        return da * (1 - a * a)                 # tanh' = 1 - tanh^2
    raise ValueError(f"unknown activation {act!r}; choose one of {ACTIVATIONS}")


# ---------------------------------------------------------------- dense layer

def dense(x, W, b, act):
    """out = act(x @ W + b); x is (B, n_in), W is (n_in, n_out), b is (n_out,), out is (B, n_out)."""
    return activation_forward(x @ W + b, act)


def dense_grads(x, W, out, dout, act, need_dinp=True):
    """Gradients of a dense layer from the gradient ``dout`` of its output ``out``.

    Returns (dinp, dW, db): dinp is (B, n_in) or None when ``need_dinp`` is False (the first
    layer's input gradient is never used), dW is (n_in, n_out), db is (n_out,). Sums over the
    batch: the 1/B is already in ``dout``.
    """
    dz = activation_grad(out, dout, act)
    dW = x.T @ dz
    db = dz.sum(axis=0)
    dinp = dz @ W.T if need_dinp else None
    return dinp, dW, db


# ---------------------------------------------------------------- output heads (loss + gradient)

def row_weights(w):
    """The rows' weights as float64, or None for uniform weights (``w`` None or empty)."""
    return None if w is None or len(w) == 0 else np.asarray(w, dtype=np.float64)


def scale_rows(g, w64):
    """The loss gradient's batch mean: g / B for uniform weights, else row i of g times
    w_i / sum(w) (0 when sum(w) is 0), in g's dtype."""
    if w64 is None:
        return g / g.dtype.type(g.shape[0])
    total = w64.sum()
    scale = g.dtype.type(1.0 / total) if total > 0 else g.dtype.type(0)
    return g * (w64.astype(g.dtype) * scale)[:, None]


def weighted_mean(per_row, w64):
    """Mean of the per-row losses (float64), weighted by ``w64`` when it is not None; a batch of
    total weight 0 gives 0."""
    if w64 is None:
        return float(np.mean(per_row))
    total = w64.sum()
    return float(np.sum(w64 * per_row) * (1.0 / total)) if total > 0 else 0.0


def softmax(logits):
    """Row-wise softmax, shifted by the row maximum so exp never overflows."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def softmax_crossentropy(logits, y, w=None):
    """Softmax + cross-entropy, fused: returns (loss, probs, dlogits).

    loss = mean_i [logsumexp(z_i) - z_i[y_i]] (stable for any finite logits),
    dlogits = (probs - onehot(y)) / B. logits is (B, C), y is (B,) integer classes. With row
    weights ``w``: the weighted mean, and dlogits_i = (probs_i - onehot(y_i)) * w_i / sum(w).
    """
    B = logits.shape[0]
    w64 = row_weights(w)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(B)
    loss = weighted_mean(log_norm - shifted[rows, y], w64)
    probs = np.exp(shifted - log_norm[:, None])
    dlogits = probs.copy()
    dlogits[rows, y] -= 1
    return loss, probs, scale_rows(dlogits, w64)


def squared_error(out, Y, w=None):
    """Identity head, for regression: returns (loss, out, dout).

    loss = mean_i 0.5 * ||out_i - Y_i||^2 (half squared error summed over outputs, averaged
    over samples), dout = (out - Y) / B. out and Y are (B, k). With row weights ``w``: the
    weighted mean, and dout_i = (out_i - Y_i) * w_i / sum(w).
    """
    B = out.shape[0]
    w64 = row_weights(w)
    diff = out - Y
    if w64 is None:
        loss = float(0.5 * np.sum(diff.astype(np.float64) ** 2) / B)
    else:
        loss = weighted_mean(0.5 * np.sum(diff.astype(np.float64) ** 2, axis=1), w64)
    return loss, out.copy(), scale_rows(diff, w64)


def sigmoid_squared_error(z, y, w=None):
    """Sigmoid head with the quadratic cost on one-hot targets: returns (loss, a, dz).

    a = sigmoid(z), loss = mean_i 0.5 * ||a_i - onehot(y_i)||^2,
    dz = (a - onehot(y)) * a * (1 - a) / B. z is (B, C), y is (B,) integer classes. With row
    weights ``w``: the weighted mean, and w_i / sum(w) in place of 1 / B.
    """
    B, C = z.shape
    w64 = row_weights(w)
    a = sigmoid(z)
    diff = a - np.eye(C, dtype=z.dtype)[y]
    if w64 is None:
        loss = float(0.5 * np.sum(diff.astype(np.float64) ** 2) / B)
    else:
        loss = weighted_mean(0.5 * np.sum(diff.astype(np.float64) ** 2, axis=1), w64)
    return loss, a, scale_rows(diff * a * (1 - a), w64)


def sigmoid_crossentropy(z, Y, w=None):
    """Logistic head for multilabel 0/1 targets, sigmoid + binary cross-entropy fused:
    returns (loss, a, dz).

    a = sigmoid(z), loss = mean_i sum_j [softplus(z_ij) - Y_ij z_ij] (the binary cross-entropy
    -[Y log a + (1 - Y) log(1 - a)] summed over outputs), written max(z, 0) - Y z +
    log1p(exp(-|z|)) so that it is exact for any finite z; dz = (a - Y) / B. z and Y are (B, k).
    With row weights ``w``: the weighted mean, and dz_i = (a_i - Y_i) * w_i / sum(w).
    """
    B = z.shape[0]
    w64 = row_weights(w)
    z64 = z.astype(np.float64)
    per_entry = np.maximum(z64, 0) - Y * z64 + np.log1p(np.exp(-np.abs(z64)))
    loss = float(np.sum(per_entry) / B) if w64 is None else weighted_mean(per_entry.sum(axis=1), w64)
    a = sigmoid(z)
    return loss, a, scale_rows(a - Y, w64)


def head_takes_Y(head):
    """Whether the head (a code, or a name) trains on the float target matrix Y rather than class
    indices y."""
    return (HEADS.index(head) if isinstance(head, str) else head) in Y_HEADS


def subset_correct(z, Y):
    """Rows of the logistic head whose every label (z > 0) equals Y: subset accuracy count."""
    return float(np.sum(np.all((z > 0) == (Y > 0.5), axis=1)))


def head_loss_and_grad(z, y, Y, head, w=None):
    """Dispatch to the head's fused loss: returns (loss, output, dz). ``y`` or ``Y`` is unused.
    ``w``: the rows' weights (None: all 1)."""
    if head == "softmax":
        return softmax_crossentropy(z, y, w)
    if head == "identity":
        return squared_error(z, Y, w)
    if head == "sigmoid":
        return sigmoid_squared_error(z, y, w)
    if head == "logistic":
        return sigmoid_crossentropy(z, Y, w)
    raise ValueError(f"unknown output head {head!r}; choose one of {HEADS}")


def head_output(z, head):
    """The head's output without the loss: probabilities, values or sigmoids ("sigmoid", "logistic")."""
    if head == "softmax":
        return softmax(z)
    if head == "identity":
        return z
    return sigmoid(z)


# ---------------------------------------------------------------- whole network

def forward(params, X, act, head):
    """Hidden activations of every layer: returns [X, a_1, ..., a_{L-1}, z_L].

    ``params`` is a list of (W, b). The last entry is the output layer's pre-activation z_L;
    the head turns it into probabilities and a loss (see :func:`head_loss_and_grad`).
    """
    acts = [X]
    for l, (W, b) in enumerate(params):
        layer_act = act if l < len(params) - 1 else "identity"
        acts.append(dense(acts[-1], W, b, layer_act))
    return acts


def backward(params, acts, dz_out, act):
    """Gradients [(dW, db), ...] of every layer, given dz of the output layer (already / B)."""
    grads = [None] * len(params)
    dout = dz_out
    for l in range(len(params) - 1, -1, -1):
        W, _ = params[l]
        layer_act = act if l < len(params) - 1 else "identity"
        dout, dW, db = dense_grads(acts[l], W, acts[l + 1], dout, layer_act, need_dinp=l > 0)
        grads[l] = (dW, db)
    return grads


def loss_and_grad(params, X, y, Y, act, head, w=None):
    """(loss, grads, output) of one batch: the loss is the batch mean (weighted by the per-sample
    weights ``w`` when given), grads are its gradient."""
    acts = forward(params, X, act, head)
    loss, output, dz = head_loss_and_grad(acts[-1], y, Y, head, w)
    return loss, backward(params, acts, dz, act), output


def predict_output(params, X, act, head, chunk=4096):
    """Head output (probabilities / values) for all rows of X, computed ``chunk`` rows at a time."""
    n_out = params[-1][0].shape[1]
    out = np.empty((X.shape[0], n_out), dtype=params[0][0].dtype)
    for s in range(0, X.shape[0], chunk):
        z = forward(params, X[s:s + chunk].astype(out.dtype, copy=False), act, head)[-1]
        out[s:s + chunk] = head_output(z, head)
    return out


# ---------------------------------------------------------------- twins of the compiled kernels
#
# Each function below has the name and the arguments of a compiled kernel (in
# fastmlp.engine.kernels, .optimizer and .lowlevel.tiles): outputs first and written in place,
# codes for activations and heads, ``blas`` accepted and unused. tests/test_twins.py finds
# every compiled kernel's twin here by name and compares them.

def _act_name(act):
    return ACTIVATIONS[act] if not isinstance(act, str) else act


def _head_name(head):
    return HEADS[head] if not isinstance(head, str) else head


def sigmoid_scalar(z):
    """1 / (1 + exp(-z)) of a scalar, without overflow."""
    return sigmoid(np.asarray(z, dtype=np.float64))[()]


def activate(z, act):
    """act(z) for one scalar (``act`` a code)."""
    z = np.asarray(z)
    return activation_forward(z, _act_name(act))[()]


def activation_derivative(a, act):
    """act'(z) written in terms of the output a = act(z), for one scalar."""
    a = np.asarray(a)
    return activation_grad(a, np.ones_like(a), _act_name(act))[()]


def _row_block(buf, start, ld, B, c0, c1):
    """Columns c0:c1 of the B rows, ``ld`` elements apart, of the block at ``start`` of the
    flat ``buf``: a view."""
    return buf[start:start + B * ld].reshape(B, ld)[:, c0:c1] if B else buf[:0].reshape(0, 0)


def bias_activation_rows(buf, start, ld, B, c0, c1, b, act):
    """x <- act(x + b) on columns c0:c1 of B rows ``ld`` apart at ``start`` of the flat buf."""
    x = _row_block(buf, start, ld, B, c0, c1)
    x[...] = activation_forward(x + b, _act_name(act))


def bias_activation_forward(out, b, act):
    """out <- act(out + b), in place."""
    out[...] = activation_forward(out + b, _act_name(act))


def activation_backward_rows(dz, a, start, ld, B, c0, c1, act):
    """dz <- dz * act'(z) on columns c0:c1 of B rows ``ld`` apart at ``start`` of the flat
    buffers dz and a (a: the layer's output)."""
    d = _row_block(dz, start, ld, B, c0, c1)
    d[...] = activation_grad(_row_block(a, start, ld, B, c0, c1), d, _act_name(act))


def activation_backward(dz, a, act):
    """dz <- dz * act'(z), in place, from the layer output a."""
    dz[...] = activation_grad(a, dz, _act_name(act))


def dense_forward(out, x, W, b, act, blas=None):
    """out = act(x @ W + b)."""
    out[...] = dense(x, W, b, _act_name(act))


def dense_backward(dinp, dW, db, x, W, dz, need_dinp, blas=None):
    """dW = x.T @ dz, db = dz summed over rows, dinp = dz @ W.T (when ``need_dinp``)."""
    d_in, dW[...], db[...] = dense_grads(x, W, None, dz, "identity", need_dinp)
    if need_dinp:
        dinp[...] = d_in


def row_weight(w, i):
    """Weight of row i as a float: 1 when ``w`` is empty."""
    return 1.0 if len(w) == 0 else float(w[i])


def row_scale(w, i, scale):
    """Gradient factor of row i: ``scale`` times its weight (``scale`` when ``w`` is empty)."""
    return scale if len(w) == 0 else scale * w[i]


def exp_nonpositive(x, bits=None):
    """x <- exp(x), in place (x <= 0)."""
    x[...] = np.exp(x)


def _loss_sum(per_row, w):
    """Sum over rows of w_i * per_row_i (float64); ``w`` empty: all 1."""
    return float(np.sum(per_row if len(w) == 0 else np.asarray(w, np.float64) * per_row))


def _row_factors(w, scale, B, dtype):
    """Each row's gradient factor, w_i * scale, as a column in the model's dtype."""
    s = dtype.type(scale)
    f = np.full(B, s, dtype=dtype) if len(w) == 0 else np.asarray(w, dtype=dtype) * s
    return f[:, None]


def softmax_crossentropy_backward(dlogits, logits, y, w, scale):
    """dlogits_i = (softmax(z_i) - onehot(y_i)) * w_i * scale; returns (sum of w_i * [logsumexp(z_i)
    - z_i[y_i]], correct argmax count)."""
    B, C = logits.shape
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(B)
    probs = np.exp(shifted - log_norm[:, None]).astype(dlogits.dtype)
    probs[rows, y] -= 1
    dlogits[...] = probs * _row_factors(w, scale, B, dlogits.dtype)
    return _loss_sum(log_norm - shifted[rows, y], w), int(np.sum(logits.argmax(axis=1) == y))


def squared_error_backward(dout, out, Y, w, scale):
    """dout_i = (out_i - Y_i) * w_i * scale; returns the sum of w_i * 0.5 * ||out_i - Y_i||^2."""
    diff = out - Y
    dout[...] = diff * _row_factors(w, scale, out.shape[0], dout.dtype)
    return _loss_sum(0.5 * np.sum(diff.astype(np.float64) ** 2, axis=1), w)


def sigmoid_squared_error_backward(dz, z, y, w, scale):
    """a = sigmoid(z), dz_i = (a_i - onehot(y_i)) a_i (1 - a_i) w_i scale; returns (sum of
    w_i * 0.5 * ||a_i - onehot(y_i)||^2, correct argmax count)."""
    B, C = z.shape
    a = sigmoid(z)
    diff = a - np.eye(C, dtype=z.dtype)[y]
    dz[...] = diff * a * (1 - a) * _row_factors(w, scale, B, dz.dtype)
    loss = _loss_sum(0.5 * np.sum(diff.astype(np.float64) ** 2, axis=1), w)
    return loss, int(np.sum(z.argmax(axis=1) == y))


def softplus_minus_yz(z, t):
    """softplus(z) - t z for one entry, as max(z, 0) - t z + log1p(exp(-|z|))."""
    z = float(z)
    return max(z, 0.0) - float(t) * z + float(np.log1p(np.exp(-abs(z))))


def sigmoid_crossentropy_backward(dz, z, Y, w, scale):
    """dz_i = (sigmoid(z_i) - Y_i) w_i scale; returns (sum of w_i * sum_j [softplus(z_ij) -
    Y_ij z_ij], rows whose every label (z > 0) equals Y)."""
    z64 = z.astype(np.float64)
    per_entry = np.maximum(z64, 0) - Y * z64 + np.log1p(np.exp(-np.abs(z64)))
    dz[...] = (sigmoid(z) - Y) * _row_factors(w, scale, z.shape[0], dz.dtype)
    return _loss_sum(per_entry.sum(axis=1), w), int(subset_correct(z, Y))


def head_backward(dz, z, y, Y, w, head, scale):
    """The head's fused loss and gradient: returns (summed weighted loss, correct count)."""
    name = _head_name(head)
    if name == "softmax":
        return softmax_crossentropy_backward(dz, z, y, w, scale)
    if name == "sigmoid":
        return sigmoid_squared_error_backward(dz, z, y, w, scale)
    if name == "logistic":
        return sigmoid_crossentropy_backward(dz, z, Y, w, scale)
    return squared_error_backward(dz, z, Y, w, scale), 0


def head_forward(out, z, head):
    """out = the head's output for z (no loss)."""
    out[...] = head_output(z, _head_name(head))


def head_loss(z, y, Y, w, head):
    """(summed weighted loss, correct count) of the rows of z, without a gradient."""
    return head_backward(np.empty_like(z), z, y, Y, w, head, 1.0)


def optimizer_update(p, g, decay, state1, state2, hyper, step):
    """One optimizer step on the flat p from the flat gradient g, in place (g too, by the decay):
    g += decay * p; then SGD p -= lr g, momentum v = m v + g, p -= lr v (Nesterov: lr (g + m v)),
    or Adam m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
    p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) with t = ``step``."""
    T = p.dtype.type
    if decay is not None and len(decay):
        g += decay * p
    lr = T(hyper.lr)
    if hyper.opt == OPT_ADAM:
        b1, b2 = T(hyper.beta1), T(hyper.beta2)
        state1 *= b1
        state1 += (1 - b1) * g
        state2 *= b2
        state2 += (1 - b2) * g * g
        m_hat = state1 / T(1 - hyper.beta1 ** step)
        v_hat = state2 / T(1 - hyper.beta2 ** step)
        p -= lr * m_hat / (np.sqrt(v_hat) + T(hyper.eps))
    elif hyper.momentum == 0:
        p -= lr * g
    else:
        mom = T(hyper.momentum)
        state1 *= mom
        state1 += g
        p -= lr * (g + mom * state1) if hyper.nesterov else lr * state1


def momentum_step(p, v, lr, decay):
    """After a product made v = momentum * v + dW: v += decay * p, p -= lr * v."""
    v += decay * p
    p -= lr * v


def _rows_at(addresses, width, dtype):
    """The rows at ``addresses`` (``width`` elements each) as a new (m, width) array."""
    import ctypes

    dtype = np.dtype(dtype)
    return np.array([np.frombuffer((ctypes.c_char * (width * dtype.itemsize)).from_address(int(a)),
                                   dtype=dtype) for a in addresses]).reshape(len(addresses), width)


def row_addresses(out, A, rows):
    """out[i] = address of A[rows[i], 0] (``rows`` empty: of every row of A)."""
    idx = rows if len(rows) else np.arange(A.shape[0])
    out[:len(idx)] = A.ctypes.data + np.asarray(idx, np.int64) * A.strides[0]


def matmul_rows(C, A_rows, W, alpha, beta):
    """C = alpha * A @ W + beta * C, A's row i at address A_rows[i]."""
    A = _rows_at(A_rows[:C.shape[0]], W.shape[0], C.dtype)
    C[...] = C.dtype.type(alpha) * (A @ W) + (C.dtype.type(beta) * C if beta else 0)


EPI_BIAS, EPI_BIAS_RELU, EPI_RELU_MASK = 1, 2, 3      # as in fastmlp.engine.lowlevel.tiles


def matmul_rows_epilogue(C, A_rows, W, epi, e_addr):
    """C = A @ W finished by ``epi``: + b (b at address e_addr), relu(. + b), or times (a > 0)
    with a's element ``e_addr`` bytes from C's."""
    m, n = C.shape
    Z = _rows_at(A_rows[:m], W.shape[0], C.dtype) @ W
    if epi in (EPI_BIAS, EPI_BIAS_RELU):
        Z = Z + _rows_at([e_addr], n, C.dtype)[0]
        C[...] = np.maximum(Z, 0) if epi == EPI_BIAS_RELU else Z
    else:
        a = _rows_at([C.ctypes.data + i * C.strides[0] + e_addr for i in range(m)], n, C.dtype)
        C[...] = Z * (a > 0)


def rank_update(C, A_rows, a_col, D, alpha, beta):
    """C = alpha * A[:, a_col:a_col + k].T @ D + beta * C, A's row i at address A_rows[i]."""
    k = C.shape[0]
    A = _rows_at(A_rows[:D.shape[0]], a_col + k, C.dtype)[:, a_col:]
    C[...] = C.dtype.type(alpha) * (A.T @ D) + (C.dtype.type(beta) * C if beta else 0)


def update_block(flat, slots, blk, a_prev, a_rows, dz, accumulate, hyper, opt, step, blas=None):
    """One block's step (see fastmlp.engine.optimizer.update_block): dW of W[s0:s1, j0:j1] and
    db of b[c0:c1] from the minibatch, into ``slots.grad`` when it has entries (added with
    ``accumulate``), then the optimizer over the block unless ``opt`` < 0; with ``slots.grad``
    empty, the SGD or momentum step made at once."""
    w0, b0, n_in, n_out, s0, s1, j0, j1, c0, c1 = (int(v) for v in blk)
    state1, state2, grad, decay = slots
    T = flat.dtype.type
    if len(a_rows):
        A = _rows_at(a_rows[:dz.shape[0]], s1, flat.dtype)[:, s0:s1]
    else:
        A = a_prev[:, s0:s1]
    dW = A.T @ dz[:, j0:j1]
    db = dz[:, c0:c1].sum(axis=0, dtype=flat.dtype)
    W = flat[w0:b0].reshape(n_in, n_out)[s0:s1, j0:j1]
    b = flat[b0 + c0:b0 + c1]
    if len(grad) == 0:                          # fused: plain SGD or momentum
        if hyper.momentum == 0.0:
            W[...] = T(1.0 - hyper.lr * hyper.weight_decay) * W - T(hyper.lr) * dW
            b -= T(hyper.lr) * db
        else:
            V = state1[w0:b0].reshape(n_in, n_out)[s0:s1, j0:j1]
            V[...] = T(hyper.momentum) * V + dW
            V += T(hyper.weight_decay) * W
            W -= T(hyper.lr) * V
            vb = state1[b0 + c0:b0 + c1]
            vb[...] = T(hyper.momentum) * vb + db
            b -= T(hyper.lr) * vb
        return
    G = grad[w0:b0].reshape(n_in, n_out)[s0:s1, j0:j1]
    gb = grad[b0 + c0:b0 + c1]
    G[...] = G + dW if accumulate else dW
    gb[...] = gb + db if accumulate else db
    if opt < 0:
        return
    for lo, hi in _block_ranges(w0, n_out, s0, s1, j0, j1):
        optimizer_update(flat[lo:hi], grad[lo:hi], decay[lo:hi] if len(decay) else None,
                         state1[lo:hi], state2[lo:hi] if len(state2) else state2, hyper, step)
    optimizer_update(b, gb, None, state1[b0 + c0:b0 + c1],
                     state2[b0 + c0:b0 + c1] if len(state2) else state2, hyper, step)


def _block_ranges(w0, n_out, s0, s1, j0, j1):
    """The flat ranges of W[s0:s1, j0:j1]: one when it spans whole rows, else one per row."""
    if j0 == 0 and j1 == n_out:
        return [(w0 + s0 * n_out, w0 + s1 * n_out)]
    return [(w0 + r * n_out + j0, w0 + r * n_out + j1) for r in range(s0, s1)]


# ---------------------------------------------------------------- the engine contract

def train_batches(net, state, batches, hyper):
    """Train on the minibatches ``order[k*B:(k+1)*B]`` in turn (the last one may be shorter):
    the twin of :func:`fastmlp.engine.train_batches`, with the same arguments (see
    :class:`fastmlp.engine.Network`, ``Batches``, ``Hyper``, ``OptimizerState``).

    ``net.flat`` and the optimizer state are updated in place (``state.step`` is not: the
    caller adds the steps made). Per-sample weights make each minibatch's loss their weighted
    mean. Returns the statistics as float64 [sum of batch loss * batch weight, correct
    predictions, samples, batches, index of the first batch whose loss was not finite (it made
    no update and training stopped there) or -1, that batch's loss, weight of the samples].
    """
    act, head = ACTIVATIONS[net.act], HEADS[net.head]
    flat, layers = net.flat, net.layers
    X, y, Y, order, batch_size, w = batches
    dtype = flat.dtype.type
    params = layer_views(flat, layers)
    decay = (weight_mask(layers) * hyper.weight_decay).astype(flat.dtype) if hyper.weight_decay else None
    weighted = w is not None and len(w) > 0
    n_batches = -(-len(order) // batch_size)
    loss_sum = correct = samples = weight = 0.0
    for k in range(n_batches):
        idx = order[k * batch_size:(k + 1) * batch_size]
        xb = X[idx].astype(dtype, copy=False)
        takes_Y = head_takes_Y(head)
        yb = y if takes_Y else y[idx]
        Yb = Y[idx].astype(dtype, copy=False) if takes_Y else Y
        wb = np.asarray(w, dtype=flat.dtype)[idx] if weighted else None
        batch_weight = float(np.sum(wb, dtype=np.float64)) if weighted else float(len(idx))
        acts = forward(params, xb, act, head)
        loss, _, dz = head_loss_and_grad(acts[-1], yb, Yb, head, wb)
        if not np.isfinite(loss):
            return np.array([loss_sum, correct, samples, k, k, loss, weight], dtype=np.float64)
        grads = backward(params, acts, dz, act)
        g = np.concatenate([t.ravel() for pair in grads for t in pair])
        optimizer_update(flat, g, decay, state.state1, state.state2, hyper, state.step + k + 1)
        loss_sum += loss * batch_weight
        samples += len(idx)
        weight += batch_weight
        if head == "logistic":
            correct += subset_correct(acts[-1], Yb)
        elif head != "identity":
            correct += float(np.sum(acts[-1].argmax(axis=1) == yb))   # argmax of the logits
    return np.array([loss_sum, correct, samples, n_batches, -1, 0.0, weight], dtype=np.float64)


def loss_and_grad_all(net, X, y, Y, w, grad):
    """(summed weighted loss, correct count) of all rows, and the gradient of the (weighted)
    mean loss into the flat ``grad``: the twin of the engine's ``loss_and_grad``."""
    act, head = ACTIVATIONS[net.act], HEADS[net.head]
    params = layer_views(net.flat, net.layers)
    wb = w if w is not None and len(w) else None
    acts = forward(params, X, act, head)
    loss, _, dz = head_loss_and_grad(acts[-1], y, Y, head, wb)
    total = float(np.sum(wb, dtype=np.float64)) if wb is not None else float(X.shape[0])
    grads = backward(params, acts, dz, act)
    grad[...] = np.concatenate([t.ravel() for pair in grads for t in pair])
    if head == "logistic":
        correct = subset_correct(acts[-1], Y)
    else:
        correct = 0.0 if head == "identity" else float(np.sum(acts[-1].argmax(axis=1) == y))
    return loss * total, correct


def evaluate_batches(net, X, y, Y, w=None, chunk=4096):
    """(sum of per-sample losses, correct predictions) over all rows, ``chunk`` rows at a time;
    the losses are weighted by ``w`` (n,) when given (the count is not)."""
    act, head = ACTIVATIONS[net.act], HEADS[net.head]
    params = layer_views(net.flat, net.layers)
    loss_sum = correct = 0.0
    for s in range(0, X.shape[0], chunk):
        xb = X[s:s + chunk].astype(net.flat.dtype, copy=False)
        z = forward(params, xb, act, head)[-1]
        takes_Y = head_takes_Y(head)
        yb = y if takes_Y else y[s:s + chunk]
        Yb = Y[s:s + chunk].astype(net.flat.dtype, copy=False) if takes_Y else Y
        if w is not None and len(w) > 0:
            wb = np.asarray(w, dtype=np.float64)[s:s + chunk]
            loss, _, _ = head_loss_and_grad(z, yb, Yb, head, wb)
            loss_sum += loss * wb.sum()
        else:
            loss, _, _ = head_loss_and_grad(z, yb, Yb, head)
            loss_sum += loss * xb.shape[0]
        if head == "logistic":
            correct += subset_correct(z, Yb)
        elif head != "identity":
            correct += float(np.sum(z.argmax(axis=1) == yb))
    return loss_sum, correct


def predict_batches(net, X, chunk=4096):
    """Head output for all rows of X (the engine contract's predict)."""
    return predict_output(layer_views(net.flat, net.layers), X, ACTIVATIONS[net.act],
                          HEADS[net.head], chunk)
