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


def activation_backward(a, da, act):
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

def dense_forward(x, W, b, act):
    """out = act(x @ W + b); x is (B, n_in), W is (n_in, n_out), b is (n_out,), out is (B, n_out)."""
    return activation_forward(x @ W + b, act)


def dense_backward(x, W, out, dout, act, need_dinp=True):
    """Gradients of a dense layer from the gradient ``dout`` of its output ``out``.

    Returns (dinp, dW, db): dinp is (B, n_in) or None when ``need_dinp`` is False (the first
    layer's input gradient is never used), dW is (n_in, n_out), db is (n_out,). Sums over the
    batch: the 1/B is already in ``dout``.
    """
    dz = activation_backward(out, dout, act)
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
    """Whether the head (a name) trains on the float target matrix Y rather than class indices y."""
    return HEADS.index(head) in Y_HEADS


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
        acts.append(dense_forward(acts[-1], W, b, layer_act))
    return acts


def backward(params, acts, dz_out, act):
    """Gradients [(dW, db), ...] of every layer, given dz of the output layer (already / B)."""
    grads = [None] * len(params)
    dout = dz_out
    for l in range(len(params) - 1, -1, -1):
        W, _ = params[l]
        layer_act = act if l < len(params) - 1 else "identity"
        dout, dW, db = dense_backward(acts[l], W, acts[l + 1], dout, layer_act, need_dinp=l > 0)
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


# ---------------------------------------------------------------- optimizers (in place, flat)

def sgd_update(p, g, velocity, lr, momentum, nesterov, decay):
    """One SGD step on flat arrays, in place.

    g <- g + decay * p (L2 weight decay; ``decay`` is a per-entry array, 0 on biases, or None),
    v <- momentum * v + g, then p <- p - lr * (g + momentum * v) with Nesterov,
    p <- p - lr * v without (momentum 0 is plain SGD).
    """
    if decay is not None:
        g = g + decay * p
    if momentum == 0:
        p -= lr * g
        return
    velocity *= momentum
    velocity += g
    p -= lr * (g + momentum * velocity) if nesterov else lr * velocity


def adam_update(p, g, m, v, lr, beta1, beta2, eps, step, decay):
    """One Adam step on flat arrays, in place (``step`` counts from 1), with bias correction:

    m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
    p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    """
    if decay is not None:
        g = g + decay * p
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** step)
    v_hat = v / (1 - beta2 ** step)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)


# ---------------------------------------------------------------- the training loop

def thread_plan(threads, batch_size, layers):
    """(Numba threads, BLAS threads) for a call: the reference parallelises only inside BLAS."""
    return 1, threads


def train_batches(flat, layers, act, head, X, y, Y, order, batch_size, opt, lr, momentum,
                  nesterov, weight_decay, beta1, beta2, eps, state1, state2, step, w=None):
    """Train on the minibatches ``order[k*B:(k+1)*B]`` in turn (the last one may be shorter).

    The engine contract, shared with :func:`fastmlp.engine.train_batches`: ``flat`` (the
    parameters) and the optimizer state ``state1``/``state2`` (momentum or Adam's m and v) are
    updated in place; ``step`` is the number of updates made before this call. ``act`` and
    ``head`` are codes (see :mod:`fastmlp.codes`). ``w``: per-sample weights (n,), gathered by
    ``order`` like the rows of X, or None / empty for all 1; each minibatch then minimises the
    weighted mean of its losses (row i's gradient scaled by w_i / the minibatch's weight total).
    Returns float64 [sum of batch loss * batch weight, correct predictions, samples, batches,
    diverged, bad loss, weight] where diverged is the index of the first batch whose loss was
    not finite (that batch made no update and training stopped there) or -1, bad loss is that
    batch's loss, and weight is the total weight of the samples processed (the sample count
    for uniform weights): entry 0 / entry 6 is the (weighted) mean loss. The correct count is
    not weighted.
    """
    act, head = ACTIVATIONS[act], HEADS[head]
    dtype = flat.dtype.type
    params = layer_views(flat, layers)
    decay = (weight_mask(layers) * weight_decay).astype(flat.dtype) if weight_decay else None
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
        if opt == OPT_ADAM:
            adam_update(flat, g, state1, state2, dtype(lr), dtype(beta1), dtype(beta2),
                        dtype(eps), step + k + 1, decay)
        else:
            sgd_update(flat, g, state1, dtype(lr), dtype(momentum), nesterov, decay)
        loss_sum += loss * batch_weight
        samples += len(idx)
        weight += batch_weight
        if head == "logistic":
            correct += subset_correct(acts[-1], Yb)
        elif head != "identity":
            correct += float(np.sum(acts[-1].argmax(axis=1) == yb))   # argmax of the logits
    return np.array([loss_sum, correct, samples, n_batches, -1, 0.0, weight], dtype=np.float64)


def evaluate_batches(flat, layers, act, head, X, y, Y, chunk=4096, w=None):
    """(sum of per-sample losses, correct predictions) over all rows, ``chunk`` rows at a time;
    the losses are weighted by ``w`` (n,) when given (the count is not)."""
    act, head = ACTIVATIONS[act], HEADS[head]
    params = layer_views(flat, layers)
    loss_sum = correct = 0.0
    for s in range(0, X.shape[0], chunk):
        xb = X[s:s + chunk].astype(flat.dtype, copy=False)
        z = forward(params, xb, act, head)[-1]
        takes_Y = head_takes_Y(head)
        yb = y if takes_Y else y[s:s + chunk]
        Yb = Y[s:s + chunk].astype(flat.dtype, copy=False) if takes_Y else Y
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


def predict_batches(flat, layers, act, head, X, chunk=4096):
    """Head output for all rows of X (the engine contract's predict)."""
    return predict_output(layer_views(flat, layers), X, ACTIVATIONS[act], HEADS[head], chunk)
