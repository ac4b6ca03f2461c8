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

Each thread runs :func:`rows_worker` over all minibatches of the call; the threads meet at a
spin barrier after the blocks and after the step (a parallel region per minibatch cost more
than a 256-row step's blocks: docs/performance.md, "Workers that stay, not a region per
minibatch"). Layers of few units on a long reduction (:func:`.lowlevel.dots.dots_pay`) take the
dot products of :mod:`.lowlevel.dots`. For the whole call such a layer's W, its gradient and
its optimizer state are kept transposed, (n_out, n_in), in buffers of their own (``dots``): the
step works there, element by element as on the flat layout, and the call copies them back into
the parameters at its end.

Each row of X is read from memory once per step (the parts scheme gathers the minibatch and
reads it again for the weight gradient, after it has left the cache); a full batch's rows in
X's order, whatever order they were drawn in (:func:`full_batches`).
"""

import numpy as np
from numba import njit

from ..codes import ACT_IDENTITY, ACT_RELU, OPT_ADAM
from . import plan
from .kernels import ZERO, activation_backward, bias_activation_forward
from .lowlevel.blas import gemm
from .lowlevel.dots import (RANK_ADD, RANK_STEP, RANK_WRITE, dot_rank_update,
                             dot_rows_epilogue, dots_pay)
from .lowlevel.fpenv import flush_denormals, restore_fpenv
from .lowlevel.sparse import sparse_column_sums, sparse_rows_epilogue
from .lowlevel.sync import aligned_empty, barrier, new_sync, whole_lines, yield_address
from .lowlevel.threads import run_on_threads
from .lowlevel.tiles import (EPI_BIAS, EPI_BIAS_RELU, EPI_NONE, VECTOR_BYTES, matmul_rows,
                             matmul_rows_epilogue, rank_update, row_addresses)
from .minibatch import (BAD_LOSS, CORRECT, DIVERGED_AT, LOSS, count_minibatch, minibatch_weight,
                        new_stats, rows_head_backward, span, target_buffers)
from .optimizer import Hyper, Slots, optimizer_update


@njit(cache=True, nogil=True)
def block_gradient(net, data, rows, scale, bufs, grad, accumulate, blas, dots, step, ahead,
                   sparse):
    """(summed weighted loss, correct count) of the samples ``rows``, whose gradient times ``scale``
    goes into the flat ``grad`` (added to what it holds with ``accumulate``). ``bufs`` = (acts, dzs,
    addr, targets): a_1 .. a_L and dz_1 .. dz_L back to back, each (m, width) for the m rows
    (:func:`_block_start`); L + 1 rows of row addresses: of each layer's input (see below), and of
    the rows of ``ahead``; one copy of :func:`.minibatch.target_buffers`. Nothing is allocated here.
    A non-finite loss returns at once, with ``grad`` as it was. ``step`` = (fused, lr): with
    ``fused``, the layers on dot products take their plain SGD step W_l -= lr * dW_l here, in their
    transposed W (see below), and their part of ``grad`` is left alone (the rows are the whole
    minibatch). ``ahead``: the samples of the block that comes next (at most as many as ``rows``, or
    none); when the first layer takes dot products, its weight gradient fetches their rows of X into
    the cache while it runs, so that the next block's forward pass does not wait for memory.

    Products through the register tiles (:mod:`.lowlevel.tiles`): the forward pass and the
    weight gradients read X's rows where they lie, the hidden layers' rows by address too;
    dz_l = dz_{l+1} @ W_l.T goes through BLAS (W_l.T has no unit-stride rows). ``dots`` =
    (use, wt): a layer l with use[l] takes the dot products of :mod:`.lowlevel.dots` instead,
    from W_l transposed, (n_out, n_in) at W_l's offsets in ``wt`` (its copy in ``flat`` is
    stale during the call), and its part of ``grad`` holds dW_l transposed the same way.

    ``sparse`` = (csr, dz_all, w_pad), all empty unless the first layer takes X's non-zeros
    (:mod:`.lowlevel.sparse`; the rows are a full batch): its forward pass then reads X's rows
    in ``csr`` and W_0 from ``w_pad``, its copy in rows of whole vectors (:func:`train_rows`),
    and its dz rows go to dz_all[rows[i]] for the weight gradient of all rows that
    :func:`_sum_and_step` takes from X's columns; its part of ``grad`` is left alone but for
    the bias."""
    flat, offs, act, head = net
    use, wt = dots
    fused, lr = step
    X = data.X
    acts, dzs, addr, targets = bufs
    csr, dz_all, w_pad = sparse
    on_nonzeros = csr[0].shape[0] > 0
    fpenv = flush_denormals()
    m = rows.shape[0]
    L = offs.shape[0]
    T = flat.dtype.type
    row_addresses(addr[0], X, rows)
    fetch = addr[L, :ahead.shape[0]]
    if ahead.shape[0]:                          # (no rows means every row to row_addresses)
        row_addresses(fetch, X, ahead)
    for l in range(L):                          # a_{l+1} = act(a_l @ W_l + b_l)
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        a_at = _block_start(offs, m, l + 1)
        a_next = acts[a_at:a_at + m * n_out].reshape((m, n_out))
        W = flat[w0:b0].reshape((n_in, n_out))
        f = act if l < L - 1 else ACT_IDENTITY
        # bias and relu in the registers; other activations in a pass of their own
        epi = EPI_BIAS_RELU if f == ACT_RELU else EPI_BIAS if f == ACT_IDENTITY else EPI_NONE
        if l == 0 and on_nonzeros:
            sparse_rows_epilogue(a_next, rows, csr, w_pad, epi, np.int64(flat[b0:].ctypes.data))
        elif use[l]:
            dot_rows_epilogue(a_next, addr[l, :m], wt[w0:b0].reshape((n_out, n_in)), epi,
                              np.int64(flat[b0:].ctypes.data))
        elif epi != EPI_NONE:
            matmul_rows_epilogue(a_next, addr[l, :m], W, epi, np.int64(flat[b0:].ctypes.data))
        else:
            matmul_rows(a_next, addr[l, :m], W, 1.0, 0.0)
        if epi == EPI_NONE:
            bias_activation_forward(a_next, flat[b0:b0 + n_out], f)
        if l < L - 1:
            row_addresses(addr[l + 1], a_next, rows[:0])
    n_last = offs[L - 1, 3]
    top = _block_start(offs, m, L)
    loss, correct = rows_head_backward(dzs[top:top + m * n_last].reshape((m, n_last)),
                                       acts[top:top + m * n_last].reshape((m, n_last)), data,
                                       rows, head, scale, targets)
    if not np.isfinite(loss):
        restore_fpenv(fpenv)
        return loss, correct
    for l in range(L - 1, -1, -1):              # from the top: dz_l, then dW_l and db_l
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        a_at, dz_at = _block_start(offs, m, l), _block_start(offs, m, l + 1)
        dz = dzs[dz_at:dz_at + m * n_out].reshape((m, n_out))
        if l > 0:                               # dz_l = (dz_{l+1} @ W_l.T) * act'(a_l)
            dz_l = dzs[a_at:a_at + m * n_in].reshape((m, n_in))
            if use[l]:
                gemm(blas, False, False, 1.0, dz, wt[w0:b0].reshape((n_out, n_in)), 0.0, dz_l)
            else:
                gemm(blas, False, True, 1.0, dz, flat[w0:b0].reshape((n_in, n_out)), 0.0, dz_l)
            activation_backward(dz_l, acts[a_at:a_at + m * n_in].reshape((m, n_in)), act)
        if l == 0 and on_nonzeros:              # dW_0 from X's columns, after all blocks
            for i in range(m):
                for j in range(n_out):
                    dz_all[rows[i], j] = dz[i, j]
        elif use[l]:                            # W_l stepped only after dz_l has read it
            into = wt if fused else grad
            mode = RANK_STEP if fused else RANK_ADD if accumulate else RANK_WRITE
            dot_rank_update(into[w0:b0].reshape((n_out, n_in)), addr[l, :m], ZERO, dz, mode, lr,
                            fetch if l == 0 else fetch[:0])
        else:
            rank_update(grad[w0:b0].reshape((n_in, n_out)), addr[l, :m], ZERO, dz, 1.0,
                        1.0 if accumulate else 0.0)
        for j in range(n_out):
            total = grad[b0 + j] if accumulate else T(0)
            for i in range(m):
                total += dz[i, j]
            grad[b0 + j] = total
    restore_fpenv(fpenv)
    return loss, correct


@njit(cache=True, nogil=True, inline="always")
def _block_start(offs, m, l):
    """Where a_l of ``m`` rows starts in :func:`block_gradient`'s ``acts`` (l >= 1), and dz_l
    in its ``dzs``: after the blocks of layers 1 .. l - 1."""
    start = 0
    for q in range(l - 1):
        start += m * offs[q, 3]
    return start


@njit(cache=True, nogil=True)
def rows_worker(team, net, data, batch_size, slots, hyper, step, sizes, work, blas, dots,
                sparse, stats, out):
    """Thread t of ``team`` = (t, n_threads, sync, yield_fn) over all minibatches of ``data.order``
    in the rows scheme (module doc); the threads meet at the barrier ``sync`` twice a minibatch.
    ``sizes`` = (block_rows, n_groups); ``work`` = (grads, acts, dzs, addr, group_loss,
    group_correct, targets): group g's gradient buffer, :func:`block_gradient`'s buffers and results
    in row g; ``dots`` = (use, wt, st1, st2): the layers with use[l] have their W and optimizer
    state transposed in wt, st1 and st2 for the call (at their offsets in ``flat``; a state's buffer
    empty when the optimizer has none). ``sparse`` = (csr, csc, dz_all, w_pad): X compressed by rows
    and by columns, a buffer of dz_1 for all rows and W_0's padded copy (:func:`train_rows`), when
    the first layer takes X's non-zeros (each minibatch is all of X), else empty. Thread 0 writes
    ``stats``.
    ``out``:
    empty to step; else each minibatch's summed gradient is written there (flat layout), and
    nothing is stepped or written back into ``flat`` (:func:`loss_and_grad_rows`).

    A plain SGD step (no momentum, no weight decay) on minibatches of one block is made by the
    dot products of the weight gradient themselves (:func:`block_gradient`'s ``step``), with
    the bits of the step from a stored gradient: the dot-product layers' dW is never stored."""
    t, n_threads, sync, yield_fn = team
    flat, offs = net.flat, net.offs
    use, wt, st1, st2 = dots
    state1, state2 = slots.state1, slots.state2
    transposed = Slots(st1, st2, slots.grad, slots.decay)   # the step's, on the transposed layout
    w, order = data.w, data.order
    csr, csc, dz_all, w_pad = sparse
    block_rows, n_groups = sizes
    grads, acts_g, dzs_g, addr_g, group_loss, group_correct, targets = work
    n = order.shape[0]
    fused = (out.shape[0] == 0 and batch_size <= block_rows and hyper.opt != OPT_ADAM
             and hyper.momentum == 0.0 and hyper.weight_decay == 0.0)
    lr = flat.dtype.type(hyper.lr)
    for src, dst in ((flat, wt), (state1, st1), (state2, st2)):
        _transpose_own(src, dst, offs, use, t, n_threads, True)
    barrier(sync, n_threads, yield_fn)
    for k in range((n + batch_size - 1) // batch_size):
        start = k * batch_size
        B = min(batch_size, n - start)
        n_blocks = (B + block_rows - 1) // block_rows
        G = min(n_groups, n_blocks)
        weight, scale = minibatch_weight(w, order[start:start + B], flat)
        g0, g1 = span(G, t, n_threads)
        folds = g0 == 0 and g1 > 1               # this thread holds groups 0 .. g1 - 1
        for g in range(g0, g1):
            # the thread holding group 0 adds each of its later groups into G_0 as soon as it
            # is complete (the first terms of the sum, in its order), through one scratch
            # buffer: two gradient buffers in its cache, not one per group
            own = grads[1] if folds and g > 0 else grads[g]
            b0, b1 = span(n_blocks, g, G)
            loss_g = 0.0
            correct_g = ZERO
            for b in range(b0, b1):
                r0 = start + b * block_rows
                r1 = min(r0 + block_rows, start + B)
                # the next block this thread takes: the group's next, or with one group the
                # next minibatch's first
                ahead = order[r1:min(r1 + r1 - r0, n) if b + 1 < b1 or G == 1 else r1]
                loss_b, correct_b = block_gradient(net, data, order[r0:r1], scale,
                                                   (acts_g[g], dzs_g[g], addr_g[g],
                                                    (targets[0][g], targets[1][g],
                                                     targets[2][g])), own,
                                                   b > b0, blas, (use, wt), (fused, lr), ahead,
                                                   (csr, dz_all, w_pad))
                loss_g += loss_b
                correct_g += correct_b
                if not np.isfinite(loss_b):
                    break
            group_loss[g] = loss_g
            group_correct[g] = correct_g
            if folds and g > 0:
                _add_group(grads[0], own, flat.shape[0])
        barrier(sync, n_threads, yield_fn)
        loss = 0.0
        correct = ZERO
        for g in range(G):                       # fixed order: deterministic
            loss += group_loss[g]
            correct += group_correct[g]
        if t == 0:
            count_minibatch(stats, k, B, loss, correct, weight)
        if not np.isfinite(loss):               # every thread stops at the same minibatch
            break
        _sum_and_step(flat, grads, (_folded(G, n_threads), G), offs, (use, wt, fused),
                      (csc, dz_all, w_pad), slots, transposed, hyper, step + k + 1, t, n_threads,
                      out)
        barrier(sync, n_threads, yield_fn)
    if out.shape[0] == 0:                       # stepped: W and the state back into place
        for src, dst in ((flat, wt), (state1, st1), (state2, st2)):
            _transpose_own(dst, src, offs, use, t, n_threads, False)


@njit(cache=True, nogil=True)
def _transpose_inputs(src, dst, w0, n_in, n_out, i0, i1, to_units):
    """Inputs i0 .. i1 of a layer's (n_in, n_out) matrix at offset w0, between its row-major
    layout and its transposed one (n_out, n_in) at the same offset: ``to_units`` writes the
    transposed one into ``dst`` from the row-major one in ``src``, else the other way."""
    for i in range(i0, i1):
        for j in range(n_out):
            if to_units:
                dst[w0 + j * n_in + i] = src[w0 + i * n_out + j]
            else:
                dst[w0 + i * n_out + j] = src[w0 + j * n_in + i]


@njit(cache=True, nogil=True)
def _transpose_own(src, dst, offs, use, t, n_threads, to_units):
    """The W_l block of each layer that uses dot products, for thread t's share of its inputs
    i, from ``src`` into ``dst``: transposed to (n_out, n_in) with ``to_units``, else back to
    (n_in, n_out). Nothing for empty buffers (an optimizer state that is not kept)."""
    if src.shape[0] == 0:
        return
    for l in range(offs.shape[0]):
        if use[l]:
            w0, n_in, n_out = offs[l, 0], offs[l, 2], offs[l, 3]
            i0, i1 = span(n_in, t, n_threads)
            _transpose_inputs(src, dst, w0, n_in, n_out, i0, i1, to_units)


@njit(cache=True, nogil=True, inline="always")
def _add_group(total, part, n):
    """total[:n] += part[:n], element by element."""
    for i in range(n):
        total[i] += part[i]


@njit(cache=True, nogil=True)
def _folded(G, n_threads):
    """How many of the G groups the thread holding group 0 has added into grads[0] itself
    (all of its own; :func:`rows_worker`): the first thread whose span of groups is not
    empty (with fewer groups than threads, the first threads have none)."""
    for t in range(n_threads):
        g0, g1 = span(G, t, n_threads)
        if g1 > g0:
            return g1
    return 1


@njit(cache=True, nogil=True)
def _add_groups(grads, groups, p0, p1):
    """grads[0, p0:p1] = G_0 + G_1 + ... + G_{G-1} there, added in group order, where
    ``groups`` = (first, G): grads[0] holds G_0 + ... + G_{first-1} already."""
    first, G = groups
    for g in range(first, G):
        _add_group(grads[0, p0:p1], grads[g, p0:p1], p1 - p0)


@njit(cache=True, nogil=True)
def _step_span(params, total, p0, p1, slots, hyper, step):
    """The optimizer's step on parameters p0 .. p1 of ``params`` from their summed gradient
    ``total``, with the optimizer state of ``slots`` at the same offsets."""
    state1, state2, _, decay = slots
    optimizer_update(params[p0:p1], total, decay[p0:p1] if decay.shape[0] else decay,
                     state1[p0:p1] if state1.shape[0] else state1,
                     state2[p0:p1] if state2.shape[0] else state2, hyper, step)


@njit(cache=True, nogil=True)
def _step_or_copy(params, total, p0, p1, slots, hyper, step, out):
    """:func:`_step_span`, or with ``out`` not empty, ``total`` copied to out[p0:p1]."""
    if out.shape[0] == 0:
        _step_span(params, total, p0, p1, slots, hyper, step)
        return
    for i in range(p1 - p0):
        out[p0 + i] = total[i]


@njit(cache=True, nogil=True)
def _sum_and_step(flat, grads, groups, offs, dots, sparse, slots, transposed, hyper, step, t,
                  n_threads, out):
    """Thread t's share of the sum G = G_0 + G_1 + ... (``groups`` as for :func:`_add_groups`)
    and the step: of every layer, the rows of W for its share of the inputs and its share of
    the biases (any number of threads gives the same bits: every sum runs in group order). A
    layer that uses dot products, ``dots`` = (use, wt), has its W, gradient and state
    transposed (in wt, ``grads`` and the slots ``transposed``): its share there is the columns
    i0 .. i1 of each of its n_out rows (the step reads the weight decay at those offsets too: it
    is the same for every weight), and nothing when ``dots`` = (use, wt, fused) says its step
    was fused into the product. ``sparse`` = (csc, dz_all, w_pad), not empty when the first layer
    takes X's non-zeros: its weight gradient is not in the groups' buffers, and the thread's
    share of it, rows i0 .. i1 of dW_0 = X.T @ dz_1, is summed from X's columns i0 .. i1 into
    grads[0] there (each column's sum in the order of X's rows: the same bits on any thread);
    the stepped rows go into the forward pass's copy of W_0, w_pad, too. With
    ``out`` not empty, the sums go there instead, in the flat layout, and nothing is stepped."""
    use, wt, fused = dots
    csc, dz_all, w_pad = sparse
    for l in range(offs.shape[0]):
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        i0, i1 = span(n_in, t, n_threads)
        p0, p1 = w0 + i0 * n_out, w0 + i1 * n_out
        if use[l] and fused:
            pass                                # stepped by block_gradient
        elif use[l]:
            # W_l.T[j, i0:i1] for each j; one span when the thread has all the inputs
            spans, width = (1, n_out * n_in) if i1 - i0 == n_in else (n_out, i1 - i0)
            for j in range(spans):
                q0 = w0 + j * n_in + i0
                _add_groups(grads, groups, q0, q0 + width)
                if out.shape[0] == 0:
                    _step_span(wt, grads[0, q0:q0 + width], q0, q0 + width, transposed, hyper,
                               step)
            if out.shape[0]:
                _transpose_inputs(grads[0], out, w0, n_in, n_out, i0, i1, False)
        else:
            if l == 0 and csc[0].shape[0]:
                sparse_column_sums(grads[0, p0:p1].reshape((i1 - i0, n_out)), csc, dz_all, i0)
            else:
                _add_groups(grads, groups, p0, p1)
            _step_or_copy(flat, grads[0, p0:p1], p0, p1, slots, hyper, step, out)
            if l == 0 and csc[0].shape[0]:
                w_pad[i0:i1, :n_out] = flat[p0:p1].reshape((i1 - i0, n_out))
        c0, c1 = span(n_out, t, n_threads)
        _add_groups(grads, groups, b0 + c0, b0 + c1)
        _step_or_copy(flat, grads[0, b0 + c0:b0 + c1], b0 + c0, b0 + c1, slots, hyper, step,
                      out)


def groups_for(batch_size, block_rows, n_params, itemsize):
    """Groups of a minibatch of ``batch_size`` rows: up to MAX_GROUPS, one per block at most,
    and no more gradient buffers than GRADIENT_BYTES hold."""
    n_blocks = -(-batch_size // block_rows)
    by_memory = max(1, plan.GRADIENT_BYTES // max(1, n_params * itemsize))
    return int(max(1, min(plan.MAX_GROUPS, n_blocks, by_memory)))


def full_batches(X, order, batch_size):
    """Whether every minibatch of ``order`` is all of X, each row once (full-batch gradient
    descent)."""
    n = X.shape[0]
    if min(batch_size, order.shape[0]) != n or order.shape[0] % n:
        return False
    epochs = order.shape[0] // n
    if (order.reshape(epochs, n) == np.arange(n)).all():    # in X's order: nothing to count
        return True
    # each minibatch's rows, counted apart
    counts = np.bincount((order.reshape(epochs, n) + n * np.arange(epochs)[:, None]).ravel(),
                         minlength=epochs * n)
    return bool((counts == 1).all())


def takes_nonzeros(inputs, X, order, batch_size):
    """Whether the first layer takes X's non-zeros (:mod:`.lowlevel.sparse`): every minibatch
    is all of X, each row once (:func:`full_batches`), and at most SPARSE_MAX_DENSITY of X's
    elements are not zero. ``inputs``: the call's :class:`.lowlevel.sparse.CompressedX` (None:
    never)."""
    return full_batches(X, order, batch_size) and _mostly_zeros(inputs, X)


def _mostly_zeros(inputs, X):
    """:meth:`.lowlevel.sparse.CompressedX.mostly_zeros` at SPARSE_MAX_DENSITY (``inputs``
    None: never)."""
    return inputs is not None and inputs.mostly_zeros(X, plan.SPARSE_MAX_DENSITY)


def train_rows(how, net, data, batch_size, slots, hyper, step, blas, stats, out=None,
               inputs=None):
    """Run all minibatches in the rows scheme on ``how.threads`` threads (:func:`rows_worker`
    on pool threads, or in the calling thread alone), in blocks of ``how.chunk`` rows (``how``:
    the call's :class:`.plan.Plan`), with every buffer allocated here, before any worker
    starts. ``out``: see :func:`rows_worker` (None: step). ``inputs``: a
    :class:`.lowlevel.sparse.CompressedX` for X, when the first layer may take its non-zeros
    (:func:`takes_nonzeros`)."""
    flat = net.flat
    out = flat[:0] if out is None else out
    block_rows = int(how.chunk)
    n_groups = groups_for(batch_size, block_rows, flat.shape[0], flat.itemsize)
    offs = net.offs
    L = offs.shape[0]
    size = block_rows * int(offs[:, 3].sum())
    # each group's gradient on cache lines of its own: groups on two threads share no line
    work = (aligned_empty((n_groups, whole_lines(flat.shape[0], flat.dtype)), flat.dtype),
            np.empty((n_groups, size), flat.dtype), np.empty((n_groups, size), flat.dtype),
            np.empty((n_groups, L + 1, block_rows), np.int64), np.zeros(n_groups),
            np.zeros(n_groups, dtype=np.int64),
            target_buffers(data.y, data.Y, data.w, net.head, n_groups, block_rows))
    use = np.array([dots_pay(n_in, n_out, flat.itemsize) for n_in, n_out in offs[:, 2:4]],
                   dtype=np.bool_)
    X = data.X
    full = full_batches(X, data.order, batch_size)
    if full:
        # each minibatch in X's order: a full batch's gradient is a sum over all rows in any
        # order, and X's rows (or its compressed rows) are then read as they lie, not from all
        # over memory (docs/performance.md, "Full batches in X's order"); the weights then do
        # not depend on the order drawn either
        n = X.shape[0]
        data = data._replace(order=np.tile(np.arange(n, dtype=np.int64), data.order.shape[0] // n))
    if full and _mostly_zeros(inputs, X):     # takes_nonzeros, its order counted once
        dz_all = np.empty((X.shape[0], offs[0, 3]), flat.dtype)
        # W_0 for the forward pass in rows of whole vectors on cache lines of their own: a row
        # of 10 float32 read as one masked vector crossed a line in most rows
        # (docs/performance.md, "W_0 in rows of whole vectors")
        n_in, n_out, lanes = int(offs[0, 2]), int(offs[0, 3]), VECTOR_BYTES // flat.itemsize
        w_pad = aligned_empty((n_in, -(-n_out // lanes) * lanes), flat.dtype)
        w_pad[:, n_out:] = 0
        w_pad[:, :n_out] = flat[offs[0, 0]:offs[0, 1]].reshape((n_in, n_out))
        sparse = (inputs.rows(X), inputs.columns(X), dz_all, w_pad)
        use[0] = False                          # its W row-major, as the sparse products read it
    else:
        none = (np.zeros(0, np.int64), np.zeros(0, np.int32), flat[:0])
        sparse = (none, none, np.empty((0, 0), flat.dtype), np.empty((0, 0), flat.dtype))
    n_dots = flat.shape[0] if use.any() else 0
    state1, state2 = slots.state1, slots.state2
    dots = (use, np.empty(n_dots, flat.dtype), np.empty(min(n_dots, state1.shape[0]), flat.dtype),
            np.empty(min(n_dots, state2.shape[0]), flat.dtype))
    sizes = (np.int64(block_rows), np.int64(n_groups))
    sync, yield_fn = new_sync(), yield_address()
    n_threads = int(how.threads)

    def work_of(t):
        rows_worker((np.int64(t), np.int64(n_threads), sync, np.int64(yield_fn)), net, data,
                    batch_size, slots, hyper, step, sizes, work, blas, dots, sparse, stats, out)

    run_on_threads(work_of, n_threads)


def loss_and_grad_rows(how, net, data, grad, blas):
    """(summed weighted loss, correct count) of all rows of ``data.X`` in the rows scheme, as
    one minibatch, and the gradient of their (weighted) mean loss into the flat ``grad``; the
    parameters do not change. A non-finite loss leaves ``grad`` as it was and is returned as
    the minibatch's mean loss."""
    flat = net.flat
    n = data.X.shape[0]
    empty = flat[:0]
    stats = new_stats()
    out = np.empty_like(grad)
    train_rows(how, net, data._replace(order=np.arange(n, dtype=np.int64)), n,
               Slots(empty, empty, empty, empty), Hyper.of("sgd", 0.0), 0, blas, stats, out)
    if stats[DIVERGED_AT] >= 0:
        return float(stats[BAD_LOSS]), float(stats[CORRECT])
    grad[...] = out
    return float(stats[LOSS]), float(stats[CORRECT])
