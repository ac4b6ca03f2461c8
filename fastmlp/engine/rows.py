"""The "rows" scheme: a large minibatch in fixed blocks of rows, each taken from its rows of X to
its weight gradient in one pass while the rows are in cache.

For full-batch gradient descent and other large minibatches. A minibatch of B rows is cut into
blocks of ``block_rows`` rows, and the blocks into ``n_groups`` runs of consecutive blocks
(both fixed by the minibatch and the model, never by the thread count). Each group, on one
thread, takes its blocks in turn:

    forward from the block's rows of X (read where they lie), the head's loss and dz, then from
    the top G_g += a_l.T @ dz_{l+1} and the next dz for every layer (:func:`block_gradient`)

into a gradient buffer of its own, G_g. The groups' gradients are then summed in group order,
G = G_0 + G_1 + ..., and the optimizer steps once (:func:`.optimizer.optimizer_update`), both
on slices of the parameters in parallel. Every sum has a shape set by the data and the model
alone, so the weights are bitwise identical for any number of threads.

Each row of X is read from memory once per step (the parts scheme gathers the minibatch and
reads it again for the weight gradient, after it has left the cache).
"""

import numpy as np
from numba import njit, prange

from ..codes import ACT_IDENTITY, ACT_RELU
from . import plan
from .kernels import ZERO, activation_backward, bias_activation_forward
from .lowlevel.blas import gemm
from .lowlevel.fpenv import flush_denormals, restore_fpenv
from .lowlevel.tiles import (EPI_BIAS, EPI_BIAS_RELU, matmul_rows, matmul_rows_epilogue,
                             rank_update, row_addresses)
from .minibatch import count_minibatch, minibatch_weight, rows_head_backward, span, twin
from .optimizer import optimizer_update


@njit(cache=True, nogil=True)
def block_gradient(net, data, rows, scale, bufs, grad, accumulate, blas):
    """(summed weighted loss, correct count) of the samples ``rows``, whose gradient times
    ``scale`` goes into the flat ``grad`` (added to what it holds with ``accumulate``). ``bufs``
    = (acts, dzs, addr): a_1 .. a_L and dz_1 .. dz_L back to back, each (m, width) for the m
    rows, and row addresses for L + 1 layers (see below). A non-finite loss returns at once,
    with ``grad`` as it was.

    Products through the register tiles (:mod:`.lowlevel.tiles`): the forward pass and the
    weight gradients read X's rows where they lie, the hidden layers' rows by address too;
    dz_l = dz_{l+1} @ W_l.T goes through BLAS (W_l.T has no unit-stride rows)."""
    flat, offs, act, head = net
    X = data.X
    acts, dzs, addr = bufs
    fpenv = flush_denormals()
    m = rows.shape[0]
    L = offs.shape[0]
    T = flat.dtype.type
    # a_l's block at at[l] (l >= 1) and dz_l's at the same offset of dzs
    at = np.zeros(L + 2, dtype=np.int64)
    for l in range(L):
        at[l + 2] = at[l + 1] + m * offs[l, 3]
    row_addresses(addr[0], X, rows)
    for l in range(L):                          # a_{l+1} = act(a_l @ W_l + b_l)
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        a_next = acts[at[l + 1]:at[l + 2]].reshape((m, n_out))
        W = flat[w0:b0].reshape((n_in, n_out))
        f = act if l < L - 1 else ACT_IDENTITY
        if f == ACT_RELU or f == ACT_IDENTITY:  # bias and relu in the tiles' registers
            matmul_rows_epilogue(a_next, addr[l, :m], W, EPI_BIAS_RELU if f == ACT_RELU
                                 else EPI_BIAS, np.int64(flat[b0:].ctypes.data))
        else:
            matmul_rows(a_next, addr[l, :m], W, 1.0, 0.0)
            bias_activation_forward(a_next, flat[b0:b0 + n_out], f)
        if l < L - 1:
            row_addresses(addr[l + 1], a_next, rows[:0])
    n_last = offs[L - 1, 3]
    loss, correct = rows_head_backward(dzs[at[L]:at[L + 1]].reshape((m, n_last)),
                                       acts[at[L]:at[L + 1]].reshape((m, n_last)), data, rows,
                                       head, scale)
    if not np.isfinite(loss):
        restore_fpenv(fpenv)
        return loss, correct
    for l in range(L - 1, -1, -1):              # from the top: dW_l, db_l, then dz_l
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        dz = dzs[at[l + 1]:at[l + 2]].reshape((m, n_out))
        rank_update(grad[w0:b0].reshape((n_in, n_out)), addr[l, :m], ZERO, dz, 1.0,
                    1.0 if accumulate else 0.0)
        for j in range(n_out):
            total = grad[b0 + j] if accumulate else T(0)
            for i in range(m):
                total += dz[i, j]
            grad[b0 + j] = total
        if l > 0:                               # dz_l = (dz_{l+1} @ W_l.T) * act'(a_l)
            dz_l = dzs[at[l]:at[l + 1]].reshape((m, n_in))
            gemm(blas, False, True, 1.0, dz, flat[w0:b0].reshape((n_in, n_out)), 0.0, dz_l)
            activation_backward(dz_l, acts[at[l]:at[l + 1]].reshape((m, n_in)), act)
    restore_fpenv(fpenv)
    return loss, correct


def _rows_loop(net, data, batch_size, slots, hyper, step, sizes, work, blas, stats):
    """All minibatches of ``data.order`` in the rows scheme (module doc); ``sizes`` =
    (block_rows, n_groups, n_slices): ``n_slices`` parts of the parameters for the sum and the
    step (any number gives the same result). ``work`` = (grads, acts, dzs, addr): group g's
    gradient buffer and :func:`block_gradient`'s buffers in row g. Compiled serial and parallel
    (see minibatch.twin)."""
    flat = net.flat
    w, order = data.w, data.order
    block_rows, n_groups, n_slices = sizes
    grads, acts_g, dzs_g, addr_g = work
    state1, state2, _, decay = slots
    group_loss = np.zeros(n_groups)
    group_correct = np.zeros(n_groups, dtype=np.int64)
    n = order.shape[0]
    P = flat.shape[0]
    for k in range((n + batch_size - 1) // batch_size):
        start = k * batch_size
        B = min(batch_size, n - start)
        n_blocks = (B + block_rows - 1) // block_rows
        G = min(n_groups, n_blocks)
        weight, scale = minibatch_weight(w, order[start:start + B], flat)
        for g in prange(G):
            b0, b1 = span(n_blocks, g, G)
            loss_g = 0.0
            correct_g = ZERO
            for b in range(b0, b1):
                r0 = start + b * block_rows
                r1 = min(r0 + block_rows, start + B)
                loss_b, correct_b = block_gradient(net, data, order[r0:r1], scale,
                                                   (acts_g[g], dzs_g[g], addr_g[g]), grads[g],
                                                   b > b0, blas)
                loss_g += loss_b
                correct_g += correct_b
                if not np.isfinite(loss_b):
                    break
            group_loss[g] = loss_g
            group_correct[g] = correct_g
        loss = 0.0
        correct = ZERO
        for g in range(G):                       # fixed order: deterministic
            loss += group_loss[g]
            correct += group_correct[g]
        if not count_minibatch(stats, k, B, loss, correct, weight):
            return
        for s in prange(n_slices):               # G = G_0 + G_1 + ..., then the step
            p0, p1 = span(P, s, n_slices)
            total = grads[0, p0:p1]
            for g in range(1, G):
                part = grads[g, p0:p1]
                for i in range(p1 - p0):
                    total[i] += part[i]
            optimizer_update(flat[p0:p1], total, decay[p0:p1] if decay.shape[0] else decay,
                             state1[p0:p1] if state1.shape[0] else state1,
                             state2[p0:p1] if state2.shape[0] else state2, hyper, step + k + 1)


train_serial = njit(cache=True, nogil=True)(twin(_rows_loop, "rows_loop_serial"))
train_parallel = njit(cache=True, nogil=True, parallel=True)(twin(_rows_loop, "rows_loop_parallel"))


def groups_for(batch_size, block_rows, n_params, itemsize):
    """Groups of a minibatch of ``batch_size`` rows: up to MAX_GROUPS, one per block at most,
    and no more gradient buffers than GRADIENT_BYTES hold."""
    n_blocks = -(-batch_size // block_rows)
    by_memory = max(1, plan.GRADIENT_BYTES // max(1, n_params * itemsize))
    return int(max(1, min(plan.MAX_GROUPS, n_blocks, by_memory)))


def train_rows(how, net, data, batch_size, slots, hyper, step, blas, stats):
    """Run all minibatches in the rows scheme on ``how.threads`` threads, in blocks of
    ``how.chunk`` rows (``how``: the call's :class:`.plan.Plan`)."""
    flat = net.flat
    block_rows = int(how.chunk)
    n_groups = groups_for(batch_size, block_rows, flat.shape[0], flat.itemsize)
    offs = net.offs
    L = offs.shape[0]
    size = block_rows * int(offs[:, 3].sum())
    work = (np.empty((n_groups, flat.shape[0]), flat.dtype),
            np.empty((n_groups, size), flat.dtype), np.empty((n_groups, size), flat.dtype),
            np.empty((n_groups, L, block_rows), np.int64))
    n_slices = how.threads
    kernel = train_parallel if how.threads > 1 else train_serial
    kernel(net, data, batch_size, slots, hyper, step,
           (np.int64(block_rows), np.int64(n_groups), np.int64(n_slices)), work, blas, stats)
