"""Twins of the compiled kernels: each function has the name and the arguments of a kernel in
fastmlp.engine.kernels, .optimizer, .lowlevel.tiles, .lowlevel.dots or .lowlevel.sparse
(outputs first, written in place; codes for activations and heads; ``blas`` accepted and
unused). tests/test_twins.py finds every compiled kernel's twin by name."""

import numpy as np

from ..codes import ACTIVATIONS, HEADS, OPT_ADAM
from .ops import (activation_forward, activation_grad, dense, dense_grads, head_output, sigmoid,
                  subset_correct)

__all__ = ["EPI_BIAS", "EPI_BIAS_RELU", "EPI_RELU_MASK", "RANK_ADD", "RANK_STEP", "RANK_WRITE", "activate", "activation_backward", "activation_backward_rows", "activation_derivative", "bias_activation_forward", "bias_activation_rows", "dense_backward", "dense_forward", "dot_rank_update", "dot_rows_epilogue", "exp_nonpositive", "gather_convert", "head_backward", "head_forward", "head_loss", "matmul_rows", "matmul_rows_epilogue", "momentum_step", "optimizer_update", "rank_update", "row_addresses", "row_scale", "row_weight", "sigmoid_crossentropy_backward", "sigmoid_scalar", "sigmoid_squared_error_backward", "softmax_crossentropy_backward", "softplus_minus_yz", "sparse_column_sums", "sparse_rank_update", "sparse_rows_epilogue", "squared_error_backward", "update_block", "update_block_nonzeros"]



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


def exp_nonpositive(x):
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
RANK_WRITE, RANK_ADD, RANK_STEP = 0, 1, 2             # as in fastmlp.engine.lowlevel.dots


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


def dot_rows_epilogue(C, A_rows, Wt, epi, e_addr):
    """C = A @ Wt.T, then + b (b at address e_addr) or relu(. + b) by ``epi``."""
    m, n = C.shape
    Z = _rows_at(A_rows[:m], Wt.shape[1], C.dtype) @ Wt.T
    if epi in (EPI_BIAS, EPI_BIAS_RELU):
        Z = Z + _rows_at([e_addr], n, C.dtype)[0]
    C[...] = np.maximum(Z, 0) if epi == EPI_BIAS_RELU else Z


def dot_rank_update(Gt, A_rows, a_col, D, mode, lr, fetch_rows):
    """S = D.T @ A[:, a_col:a_col + k], A's row i at address A_rows[i], into Gt by ``mode``:
    Gt = S (RANK_WRITE), Gt + S (RANK_ADD) or Gt - lr * S (RANK_STEP). ``fetch_rows`` (rows
    the compiled kernel fetches into the cache) changes no value."""
    k = Gt.shape[1]
    A = _rows_at(A_rows[:D.shape[0]], a_col + k, Gt.dtype)[:, a_col:]
    S = D.T @ A
    Gt[...] = (S if mode == RANK_WRITE else Gt + S if mode == RANK_ADD
               else Gt - Gt.dtype.type(lr) * S)


def _dense(compressed, n_cols, picked):
    """Rows ``picked`` of the matrix whose rows are ``compressed`` = (ptr, idx, val), dense."""
    ptr, idx, val = compressed
    out = np.zeros((len(picked), n_cols), dtype=val.dtype)
    for r, i in enumerate(picked):
        out[r, idx[ptr[i]:ptr[i + 1]]] = val[ptr[i]:ptr[i + 1]]
    return out


def sparse_rows_epilogue(C, rows, csr, W, epi, e_addr):
    """C = X[rows] @ W, X's rows given by their non-zeros ``csr`` = (ptr, idx, val), then + b
    (b at address e_addr) or relu(. + b) by ``epi``."""
    m, n = C.shape
    Z = _dense(csr, W.shape[0], rows) @ W
    if epi in (EPI_BIAS, EPI_BIAS_RELU):
        Z = Z + _rows_at([e_addr], n, C.dtype)[0]
    C[...] = np.maximum(Z, 0) if epi == EPI_BIAS_RELU else Z


def sparse_column_sums(G, csc, D, k0):
    """G = (X.T @ D)[k0:k0 + k] for G (k, n), X's columns given by their non-zeros ``csc`` =
    (ptr, idx, val): rows k0 .. of the weight gradient X.T @ D."""
    k = G.shape[0]
    G[...] = _dense(csc, D.shape[0], range(k0, k0 + k)) @ D


def sparse_rank_update(C, rows, csr, D, alpha, beta, S):
    """C = alpha * X[rows].T @ D + beta * C (beta 0: C is only written), X's rows given by
    their non-zeros ``csr``; ``S`` (the compiled kernel's scratch) is unused."""
    T = C.dtype.type
    XT = _dense(csr, C.shape[0], rows).T
    C[...] = T(alpha) * (XT @ D) + (T(beta) * C if beta else 0)


def update_block_nonzeros(flat, slots, blk, rows, csr, dz, accumulate, hyper, opt, step,
                          scratch):
    """:func:`update_block` with the block's input rows given by their non-zeros ``csr``
    (rows ``rows`` of X); ``scratch`` is unused."""
    update_block(flat, slots, blk, _dense(csr, int(blk[2]), rows), np.zeros(0, np.int64), dz,
                 accumulate, hyper, opt, step)


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


def gather_convert(dst, src, rows, at, pixels):
    if pixels:
        dst[at] = np.divide(src[rows], np.float32(255), dtype=np.float32)
    else:
        dst[at] = src[rows]
