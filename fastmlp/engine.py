"""The compiled engine: whole runs of minibatches, forward + backward + update, inside Numba.

It implements the engine contract of :mod:`fastmlp.reference` (``train_batches``,
``evaluate_batches``, ``predict_batches``, ``thread_plan``) with the kernels of
:mod:`fastmlp.kernels`: one compiled call runs every minibatch it is given, with no Python in
between.

Parallelism comes from the BLAS threads inside each GEMM (:func:`thread_plan`). We measured the
alternatives on this project's 2-core machine (see the engine issue's closing note): cutting each
minibatch into per-thread parts with Numba's ``prange`` (per-thread gradient buffers reduced in a
fixed order) did not run the parts concurrently when they call BLAS and was 1.0-2.2x slower;
BLAS threads alone were fastest whenever a layer's product is big enough to share. Nothing is
ever added into shared memory from two threads, so the same seed, data and thread count give
bitwise identical weights.
"""

import numpy as np
from numba import njit

from .blas import blas_handle
from .codes import HEAD_IDENTITY, OPT_ADAM
from .kernels import (activation_backward, dense_backward, dense_backward_sgd, dense_forward,
                      head_backward, head_forward, head_loss, optimizer_update)
from .params import layer_offsets, weight_mask

# A BLAS thread pays for itself only with at least this many multiply-adds in a layer's product
# (measured, 784-128-10 float32 on 2 cores: at batch 32, 3.2M MACs, 1 thread 0.28 s/epoch vs
# 2 threads 0.34 s; at batch 64 even; at batch 128 and above 2 threads win).
MACS_PER_BLAS_THREAD = 5_000_000


def thread_plan(threads, batch_size, layers):
    """(Numba threads, BLAS threads) for a call on minibatches of ``batch_size`` rows."""
    macs = batch_size * max(a * b for a, b in zip(layers[:-1], layers[1:]))
    return 1, max(1, min(threads, macs // MACS_PER_BLAS_THREAD))


def _offsets_array(layers):
    return np.asarray(layer_offsets(layers), dtype=np.int64).reshape(-1, 4)


# ---------------------------------------------------------------- one part of a minibatch

@njit(cache=True, nogil=True)
def _part_forward_backward(flat, offs, act, head, X, y, Y, rows, scale, acts, dz, grad, lr,
                           decay, blas):
    """Forward, loss and backward for the sample indices ``rows``.

    Gradients go into ``grad``; when ``grad`` is empty the plain SGD step with rate ``lr`` and
    weight decay ``decay`` is applied to ``flat`` during backward instead.
    ``acts`` holds every layer's activations for these rows back to back (input first), ``dz``
    two (rows, max width) scratch buffers. Returns (summed loss, correct count); when the loss
    is not finite nothing is changed.
    """
    n = rows.shape[0]
    L = offs.shape[0]
    starts = np.empty(L + 1, dtype=np.int64)    # where each layer's activations begin in acts
    starts[0] = 0
    for l in range(L):
        starts[l + 1] = starts[l] + n * offs[l, 2]
    x = acts[:n * offs[0, 2]].reshape((n, offs[0, 2]))
    for i in range(n):                          # gather the minibatch: X is never copied whole
        x[i, :] = X[rows[i], :]
    for l in range(L):                          # forward: a_{l+1} = act(a_l @ W_l + b_l)
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        a_prev = acts[starts[l]:starts[l + 1]].reshape((n, n_in))
        out = acts[starts[l + 1]:starts[l + 1] + n * n_out].reshape((n, n_out))
        dense_forward(out, a_prev, flat[w0:b0].reshape((n_in, n_out)), flat[b0:b0 + n_out],
                      act if l < L - 1 else 0, blas)
    n_last = offs[L - 1, 3]
    z = acts[starts[L]:starts[L] + n * n_last].reshape((n, n_last))
    yr = np.empty(n if head != HEAD_IDENTITY else 0, dtype=y.dtype)
    Yr = np.empty((n if head == HEAD_IDENTITY else 0, n_last), dtype=Y.dtype)
    for i in range(yr.shape[0]):
        yr[i] = y[rows[i]]
    for i in range(Yr.shape[0]):
        Yr[i, :] = Y[rows[i], :]
    cur = 0
    loss, correct = head_backward(dz[cur, :n * n_last].reshape((n, n_last)), z, yr, Yr, head, scale)
    if not np.isfinite(loss):
        return loss, correct
    fused = grad.shape[0] == 0
    for l in range(L - 1, -1, -1):              # backward, last layer first
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        W = flat[w0:b0].reshape((n_in, n_out))
        a_prev = acts[starts[l]:starts[l + 1]].reshape((n, n_in))
        dinp = dz[1 - cur, :n * n_in].reshape((n, n_in))
        dout = dz[cur, :n * n_out].reshape((n, n_out))
        if fused:
            dense_backward_sgd(dinp, W, flat[b0:b0 + n_out], a_prev, dout, lr, decay, l > 0, blas)
        else:
            dense_backward(dinp, grad[w0:b0].reshape((n_in, n_out)), grad[b0:b0 + n_out], a_prev,
                           W, dout, l > 0, blas)
        if l > 0:
            activation_backward(dinp, a_prev, act)
            cur = 1 - cur
    return loss, correct


# ---------------------------------------------------------------- the training loop

@njit(cache=True, nogil=True)
def _train_loop(flat, offs, act, head, X, y, Y, order, batch_size, opt, lr, momentum, nesterov,
                weight_decay, decay, beta1, beta2, eps, state1, state2, step, blas, stats):
    """All minibatches of ``order``; see :func:`train_batches`.

    Plain SGD takes the fused path (the step happens inside backward, no gradient buffer);
    momentum and Adam write the gradient to ``grad`` and update in one pass.
    """
    P = flat.shape[0]
    L = offs.shape[0]
    width_sum = offs[0, 2]
    max_width = offs[0, 2]
    for l in range(L):
        width_sum += offs[l, 3]
        max_width = max(max_width, offs[l, 3])
    fused = opt != OPT_ADAM and momentum == 0.0
    acts = np.empty(batch_size * width_sum, dtype=flat.dtype)
    dz = np.empty((2, batch_size * max_width), dtype=flat.dtype)
    grad = np.empty(0 if fused else P, dtype=flat.dtype)
    n = order.shape[0]
    T = flat.dtype.type
    for k in range((n + batch_size - 1) // batch_size):
        start = k * batch_size
        stop = min(start + batch_size, n)
        B = stop - start
        loss, correct = _part_forward_backward(flat, offs, act, head, X, y, Y, order[start:stop],
                                               T(1.0 / B), acts, dz, grad, lr, weight_decay,
                                               blas)
        if not np.isfinite(loss):
            stats[4] = k
            stats[5] = loss / B
            return
        if not fused:
            optimizer_update(flat, grad, decay, state1, state2, opt, lr, momentum, nesterov,
                             beta1, beta2, eps, step + k + 1)
        stats[0] += loss
        stats[1] += correct
        stats[2] += B
        stats[3] += 1


def train_batches(flat, layers, act, head, X, y, Y, order, batch_size, opt, lr, momentum,
                  nesterov, weight_decay, beta1, beta2, eps, state1, state2, step):
    """The compiled twin of :func:`fastmlp.reference.train_batches` (same arguments and stats)."""
    offs = _offsets_array(layers)
    decay = (weight_mask(layers) * weight_decay).astype(flat.dtype) if weight_decay else flat[:0]
    if opt != OPT_ADAM:
        state2 = flat[:0] if state2.shape[0] == 0 else state2
    stats = np.zeros(6)
    stats[4] = -1
    _train_loop(flat, offs, act, head, X, y, Y, order, batch_size, opt, float(lr), float(momentum),
                bool(nesterov), float(weight_decay), decay, float(beta1), float(beta2), float(eps),
                state1, state2, int(step), blas_handle(), stats)
    return stats


def loss_and_grad(flat, layers, act, head, X, y, Y, grad):
    """Mean loss of all rows of X and its gradient, written into the flat buffer ``grad``
    (same layout as ``flat``); the parameters are not changed. Returns (loss, correct count)."""
    if grad.shape != flat.shape or grad.dtype != flat.dtype:
        raise ValueError(f"grad must be a {flat.dtype} buffer of shape {flat.shape}; got {grad.dtype} {grad.shape}.")
    X = np.ascontiguousarray(X, dtype=flat.dtype)
    n = X.shape[0]
    offs = _offsets_array(layers)
    width_sum = int(layers[0]) + int(np.sum(layers[1:]))
    acts = np.empty(n * width_sum, dtype=flat.dtype)
    dz = np.empty((2, n * int(np.max(layers))), dtype=flat.dtype)
    loss, correct = _part_forward_backward(flat, offs, act, head, X, y, Y, np.arange(n),
                                           flat.dtype.type(1.0 / n), acts, dz, grad, 0.0, 0.0,
                                           blas_handle())
    return loss / n, correct


# ---------------------------------------------------------------- inference

@njit(cache=True, nogil=True)
def _infer(flat, offs, act, head, X, y, Y, chunk, out, want_loss, blas):
    """Forward over X, ``chunk`` rows at a time (only one chunk's activations exist at once):
    head outputs into ``out`` (when it has rows) and (summed loss, correct) when ``want_loss``."""
    n = X.shape[0]
    L = offs.shape[0]
    max_width = offs[0, 2]
    for l in range(L):
        max_width = max(max_width, offs[l, 3])
    buf = np.empty((2, chunk * max_width), dtype=flat.dtype)
    loss = 0.0
    correct = 0
    for r0 in range(0, n, chunk):
        r1 = min(r0 + chunk, n)
        m = r1 - r0
        a = X[r0:r1]
        cur = 0
        for l in range(L):
            w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
            z = buf[cur, :m * n_out].reshape((m, n_out))
            dense_forward(z, a, flat[w0:b0].reshape((n_in, n_out)), flat[b0:b0 + n_out],
                          act if l < L - 1 else 0, blas)
            a = z
            cur = 1 - cur
        if want_loss:
            part_loss, part_correct = head_loss(a, y[r0:r1] if y.shape[0] else y,
                                                Y[r0:r1] if Y.shape[0] else Y, head)
            loss += part_loss
            correct += part_correct
        if out.shape[0]:
            head_forward(out[r0:r1], a, head)
    return loss, correct


def predict_batches(flat, layers, act, head, X, chunk=4096):
    """Head outputs (n, n_out) for all rows of X; the compiled twin of the reference's."""
    X = np.ascontiguousarray(X, dtype=flat.dtype)
    out = np.empty((X.shape[0], layers[-1]), dtype=flat.dtype)
    _infer(flat, _offsets_array(layers), act, head, X, np.zeros(0, np.int64),
           np.zeros((0, layers[-1]), flat.dtype), chunk, out, False, blas_handle())
    return out


def evaluate_batches(flat, layers, act, head, X, y, Y, chunk=4096):
    """(summed loss, correct count) over all rows; the compiled twin of the reference's."""
    X = np.ascontiguousarray(X, dtype=flat.dtype)
    empty = np.empty((0, layers[-1]), dtype=flat.dtype)
    loss, correct = _infer(flat, _offsets_array(layers), act, head, X, y, Y, chunk, empty, True,
                           blas_handle())
    return float(loss), float(correct)
