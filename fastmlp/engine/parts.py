"""The "parts" scheme: each minibatch in two parallel loops over ``n_parts`` parts.

1. rows: each part is a fixed, contiguous run of the minibatch's rows, through gather,
   forward, the head's loss and dz, and the hidden layers' dz (rows are independent);
2. parameters: each part is a fixed slice of every layer (rows s0:s1 of W, biases j0:j1),
   whose gradient comes from the whole minibatch, ``a_prev[:, s0:s1].T @ dz``, with the
   optimizer step folded in where it can be (:func:`.optimizer.update_block`).
The parts are planned for the machine's cores (:func:`.plan.plan_training`) and run on any
number of threads up to ``n_parts``. BLAS picks its kernels by shape, so the parts' shapes,
not the threads, fix the arithmetic: the parts' losses are summed in part order, and no part
writes what another writes, so a seed and data give bitwise identical weights on any number of
threads. Also the whole-data loss and
gradient (:func:`loss_and_grad`), which is phase 1 and phase 2 on one part without a step.
"""

import numpy as np
from numba import njit, prange

from .kernels import FALSE, ONE, ZERO, activation_backward, dense_forward
from .lowlevel.blas import gemm
from .lowlevel.fpenv import flush_denormals, restore_fpenv
from .minibatch import (Data, block, count_minibatch, gather, minibatch_buffers, minibatch_weight,
                        rows_head_backward, span, target_buffers, twin)
from .optimizer import Hyper, Slots, update_block


@njit(cache=True, nogil=True)
def rows_forward_backward(net, data, rows, r0, B, scale, bufs, targets, blas):
    """Phase 1 for minibatch rows r0 : r0 + len(rows) (sample indices ``rows``): gather, forward,
    the head's loss and dz, then dz of every hidden layer, into ``bufs`` = (starts, acts, dzs,
    dz_starts) of the whole minibatch of B rows (see :mod:`.minibatch`); the targets of those
    rows go to rows r0 : r0 + len(rows) of ``targets`` (:func:`.minibatch.target_buffers`, one
    copy). ``scale``: the gradient's factor, 1 / the minibatch's weight. Returns (summed
    weighted loss, correct count); a non-finite loss returns at once."""
    flat, offs, act, head = net
    X = data.X
    starts, acts, dzs, dz_starts = bufs
    yb, Yb, wb = targets
    fpenv = flush_denormals()
    m = rows.shape[0]
    L = offs.shape[0]
    r1 = r0 + m
    x = block(acts, starts, 0, B, offs[0, 2])[r0:r1]
    gather(x, X, rows)                          # gather the minibatch: X is never copied whole
    for l in range(L):                          # forward: a_{l+1} = act(a_l @ W_l + b_l)
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        dense_forward(block(acts, starts, l + 1, B, n_out)[r0:r1],
                      block(acts, starts, l, B, n_in)[r0:r1],
                      flat[w0:b0].reshape((n_in, n_out)), flat[b0:b0 + n_out],
                      act if l < L - 1 else 0, blas)
    n_last = offs[L - 1, 3]
    loss, correct = rows_head_backward(block(dzs, dz_starts, L, B, n_last)[r0:r1],
                                       block(acts, starts, L, B, n_last)[r0:r1], data, rows,
                                       head, scale, (yb[r0:], Yb[r0:], wb[r0:]))
    if not np.isfinite(loss):
        restore_fpenv(fpenv)
        return loss, correct
    for l in range(L - 1, 0, -1):               # dz_l = (dz_{l+1} @ W_l.T) * act'(a_l)
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        dz_l = block(dzs, dz_starts, l, B, n_in)[r0:r1]
        gemm(blas, False, True, 1.0, block(dzs, dz_starts, l + 1, B, n_out)[r0:r1],
             flat[w0:b0].reshape((n_in, n_out)), 0.0, dz_l)
        activation_backward(dz_l, block(acts, starts, l, B, n_in)[r0:r1], act)
    restore_fpenv(fpenv)
    return loss, correct


@njit(cache=True, nogil=True)
def update_slice(net, bufs, B, part, n_parts, slots, hyper, opt, step, blas):
    """Phase 2 for one of ``n_parts`` slices of every layer: rows s0:s1 of W and biases j0:j1,
    stepped by :func:`.optimizer.update_block` (``opt`` negative: the gradient only). Slices
    never overlap, so parts can run on different threads."""
    flat, offs, _, _ = net
    starts, acts, dzs, dz_starts = bufs
    fpenv = flush_denormals()
    L = offs.shape[0]
    for l in range(L):
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        s0, s1 = span(n_in, part, n_parts)
        j0, j1 = span(n_out, part, n_parts)
        # ZERO and the [:, :n] slices: the argument types of the units scheme's calls (one
        # compile)
        update_block(flat, slots, (w0, b0, n_in, n_out, s0, s1, ZERO, n_out, j0, j1),
                     block(acts, starts, l, B, n_in)[:, :n_in], offs[0, :0],
                     block(dzs, dz_starts, l + 1, B, n_out)[:, :n_out], FALSE, hyper, opt, step,
                     blas)
    restore_fpenv(fpenv)


def _train_loop(net, data, batch_size, slots, hyper, step, n_parts, blas, stats):
    """All minibatches of ``data.order``, each as two loops over ``n_parts`` independent parts
    (rows, then parameter slices); compiled serial and parallel (see minibatch.twin)."""
    flat, offs = net.flat, net.offs
    w, order = data.w, data.order
    bufs = minibatch_buffers(offs, batch_size, flat)
    ys, Ys, ws = target_buffers(data.y, data.Y, data.w, net.head, ONE, batch_size)
    targets = (ys[0], Ys[0], ws[0])
    part_loss = np.zeros(n_parts)
    part_correct = np.zeros(n_parts, dtype=np.int64)
    n = order.shape[0]
    for k in range((n + batch_size - 1) // batch_size):
        start = k * batch_size
        B = min(batch_size, n - start)
        part_rows = (B + n_parts - 1) // n_parts
        weight, scale = minibatch_weight(w, order[start:start + B], flat)
        for t in prange(n_parts):
            r0 = min(t * part_rows, B)
            r1 = min(r0 + part_rows, B)
            part_loss[t] = 0.0
            part_correct[t] = 0
            if r1 > r0:
                part_loss[t], part_correct[t] = rows_forward_backward(
                    net, data, order[start + r0:start + r1], r0, B, scale, bufs, targets, blas)
        loss = 0.0
        correct = ZERO                          # not the literal 0 (see kernels.ZERO)
        for t in range(n_parts):                # fixed order: deterministic
            loss += part_loss[t]
            correct += part_correct[t]
        if not count_minibatch(stats, k, B, loss, correct, weight):
            return
        for t in prange(n_parts):               # (prange's index is unsigned: one compile)
            update_slice(net, bufs, B, np.int64(t), n_parts, slots, hyper, hyper.opt,
                         step + k + 1, blas)


train_serial = njit(cache=True, nogil=True)(twin(_train_loop, "train_loop_serial"))
train_parallel = njit(cache=True, nogil=True, parallel=True)(
    twin(_train_loop, "train_loop_parallel"))


def train_parts(plan, net, data, batch_size, slots, hyper, step, blas, stats):
    """Run all minibatches in ``plan.parts`` parts on ``plan.threads`` threads."""
    kernel = train_parallel if plan.threads > 1 else train_serial
    kernel(net, data, batch_size, slots, hyper, step, plan.parts, blas, stats)


@njit(cache=True, nogil=True)
def loss_and_grad_all(net, data, scale, grad, blas):
    """(summed loss, correct count) of all rows of ``data.X`` (``data.order`` unused), and the
    gradient of the loss times ``scale`` into the flat ``grad``; the parameters do not change."""
    flat = net.flat
    n = data.X.shape[0]
    bufs = minibatch_buffers(net.offs, n, flat)
    ys, Ys, ws = target_buffers(data.y, data.Y, data.w, net.head, ONE, n)
    # ZERO, ONE, FALSE: not literals, so that the training loop's compiled versions serve here
    loss, correct = rows_forward_backward(net, data, np.arange(n), ZERO, n, flat.dtype.type(scale),
                                          bufs, (ys[0], Ys[0], ws[0]), blas)
    if np.isfinite(loss):
        no_step = Hyper(ZERO, 0.0, 0.0, FALSE, 0.0, 0.9, 0.999, 1e-8)
        update_slice(net, bufs, n, ZERO, ONE,
                     Slots(flat[:0], flat[:0], grad, flat[:0]), no_step, -ONE, ONE, blas)
    return loss, correct


__all__ = ["Data", "rows_forward_backward", "update_slice", "train_parts", "loss_and_grad_all"]
