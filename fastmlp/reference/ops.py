"""The operations in plain NumPy: activations, dense layers, output heads, whole networks."""

import numpy as np

from ..codes import ACTIVATIONS, HEADS, LEAKY_SLOPE, Y_HEADS

__all__ = ["activation_forward", "activation_grad", "backward", "dense", "dense_grads", "forward", "head_loss_and_grad", "head_output", "head_takes_Y", "loss_and_grad", "predict_output", "row_weights", "scale_rows", "sigmoid", "sigmoid_crossentropy", "sigmoid_squared_error", "softmax", "softmax_crossentropy", "squared_error", "subset_correct", "weighted_mean"]



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
