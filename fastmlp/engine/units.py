"""The "units" scheme: one compiled worker per thread runs every minibatch of the call.

The units (columns) of every hidden layer are cut into ``n_blocks`` fixed blocks, planned for
the machine's cores (:func:`.plan.plan_training`); thread t owns a run of whole blocks, keeps
its share of the weights in a block of its own (cache-resident), and the workers meet at a
spin barrier (:mod:`.lowlevel.sync`) a few times per minibatch:

    hidden l   a_{l+1}[:, own] = act(a_l @ W_l[:, own] + b_l[own])                  | barrier
               (none after the last hidden layer: the next step reads own columns only)
    output     P_b = a_{L-1}[:, blk] @ W_out[blk, :] (+ b_out in block 0), per own block b
                                                                                    | barrier
    head       z = P_0 + P_1 + ... in block order, on every thread (small and private); loss, dz
    backward   dz_{L-1}[:, own] = dz @ W_out[own, :].T * act'(a_{L-1}); step W_out[own, :];
               per hidden layer l from the top: Q_b = dz_{l+1}[:, blk] @ W_l[:, blk].T per own
               block b, step W_l[:, own], b_l[own] (dW = a_l.T @ dz_{l+1}[:, own])  | barrier
               dz_l[:, own] = (Q_0 + Q_1 + ...)[:, own] * act'(a_l[:, own])

A minibatch of more than ``chunk`` rows runs through all of this in pieces of ``chunk`` rows:
the weight gradients add up over the pieces and the optimizer steps after the last one. The
hidden layers' products go through :mod:`.lowlevel.tiles`, which reads the piece's rows of X
where they lie (no gathered copy). Every weight is read and written by its owner only, every
sum is taken in a fixed order, and the P_b alternate between two buffers (a thread may write
the next piece's P_b while another still sums this one's). A unit's products do not depend on
which thread computes it, and the partial sums are per block, not per thread, so a seed and
data give bitwise identical weights on any number of threads up to ``n_blocks``.
"""

from typing import NamedTuple

import numpy as np
from numba import njit

from ..codes import ACT_IDENTITY, ACT_RELU
from . import plan
from .kernels import (FALSE, ONE, TRUE, ZERO, activation_backward_rows, bias_activation_rows,
                      head_backward, head_takes_Y)
from .lowlevel.blas import gemm, gemm_few_rows
from .lowlevel.fpenv import flush_denormals, restore_fpenv
from .lowlevel.sparse import sparse_rows_epilogue
from .lowlevel.sync import aligned_empty, barrier, new_sync, per_thread, whole_lines, yield_address
from .lowlevel.threads import run_on_threads
from .lowlevel.tiles import (EPI_BIAS, EPI_BIAS_RELU, EPI_NONE, EPI_RELU_MASK, VECTOR_BYTES,
                             matmul_rows, matmul_rows_epilogue, row_addresses, row_stride)
from .minibatch import block, count_minibatch, exchange, gather_targets, minibatch_weight, span
from .optimizer import Slots, update_block, update_block_nonzeros


class Team(NamedTuple):
    """Which thread this is (t of n), the number of blocks of units, and the barrier the team
    meets at."""
    t: int
    n: int
    n_blocks: int
    sync: np.ndarray
    yield_fn: int


class Shared(NamedTuple):
    """Buffers every thread reads: hid / hdz hold a_l and dz_l of the hidden layers, layer l's
    block at hstarts[l] with rows hld[l] apart (:func:`.lowlevel.tiles.row_stride`); ``part``
    holds the partial sums Q_b (layers 1 .. L-2, block b's at pstarts[l] + b * chunk * n_l) and,
    twice over for pieces even and odd, P_b (block L)."""
    hid: np.ndarray
    hdz: np.ndarray
    hstarts: np.ndarray
    hld: np.ndarray
    part: np.ndarray
    pstarts: np.ndarray


class Own(NamedTuple):
    """One thread's own buffers. ``local`` (5, size): its columns of the hidden layers and its
    rows of the output layer's W, transposed (rows: parameters, gradient, state1, state2,
    decay; see own_columns), layer l's region from loffs[l, 0] to loffs[l, 1] (the output
    layer's bias at loffs[L - 1, 1]; see :func:`unit_block`); addr[l] the
    row addresses of a_l (l = 0: the piece's rows of X) and addr[L - 1] those of dz (dz_own);
    z_own, y_own, Y_own, w_own: the logits, targets and weights of the piece."""
    local: np.ndarray
    loffs: np.ndarray
    addr: np.ndarray
    z_own: np.ndarray
    dz_own: np.ndarray
    y_own: np.ndarray
    Y_own: np.ndarray
    w_own: np.ndarray


@njit(cache=True, nogil=True)
def units_worker(team, net, data, sizes, slots, hyper, step, shared, own, sparse, blas, stats):
    """Thread ``team.t`` of the units scheme over all minibatches of ``data.order`` (see the
    module doc); ``sizes`` = (batch_size, chunk): each minibatch in pieces of up to ``chunk``
    rows (all buffers hold a piece). ``sparse`` = (csr, scratch): X's rows compressed and this
    thread's scratch sum (at least (n_in, own units)), when the first layer takes X's non-zeros
    (:func:`takes_nonzeros`), else empty. Thread 0 writes ``stats``."""
    t, n_threads, n_blocks, sync, yield_fn = team
    flat, offs, act, head = net
    X, y, Y, w, order = data
    batch_size, chunk = sizes
    state1, state2, grad, decay = slots
    hid, hdz, hstarts, hld, part, pstarts = shared
    local, loffs, addr, z_own, dz_own, y_own, Y_own, w_own = own
    csr, scratch = sparse
    on_nonzeros = csr[0].shape[0] > 0
    b0, b1 = own_blocks(team)
    fpenv = flush_denormals()
    L = offs.shape[0]
    lflat = local[0]
    lslots = Slots(local[2, :local.shape[1] if state1.shape[0] else 0],
                   local[3, :local.shape[1] if state2.shape[0] else 0],
                   local[1, :local.shape[1] if grad.shape[0] else 0],
                   local[4, :local.shape[1] if decay.shape[0] else 0])
    for g, lg in ((flat, lflat), (state1, lslots.state1), (state2, lslots.state2),
                  (decay, lslots.decay)):
        if lg.shape[0]:
            own_columns(lg, loffs, g, offs, team, TRUE)     # to the blocks
    for l in range(1, L - 1):
        row_addresses(addr[l], block(hid, hstarts, l, chunk, hld[l]), order[:0])
    row_addresses(addr[L - 1], dz_own.reshape((chunk, offs[L - 1, 3])), order[:0])
    # bytes from an element of dz_l to a_l's (hid and hdz: one layout), for the relu mask; in
    # int64: Numba's uint64 difference of two addresses wraps
    a_from_dz = np.int64(hid.ctypes.data) - np.int64(hdz.ctypes.data)
    n = order.shape[0]
    T = flat.dtype.type
    takes_Y = head_takes_Y(head)
    piece = 0
    diverged = False
    for k in range((n + batch_size - 1) // batch_size):
        start = k * batch_size
        B_k = min(batch_size, n - start)
        weight, scale = minibatch_weight(w, order[start:start + B_k], flat)
        loss_k = 0.0
        correct_k = ZERO
        # the minibatch in pieces of up to ``chunk`` rows, each run through forward and backward
        # while its rows of X are still in cache; their gradients add up in ``grad`` and the
        # optimizer steps once, after the last piece
        for r0 in range(0, B_k, chunk):
            B = min(chunk, B_k - r0)
            rows = order[start + r0:start + r0 + B]
            accumulate = r0 > 0
            opt_k = hyper.opt if r0 + B == B_k else -ONE
            # the rows of X are read where they lie, without software prefetch
            # (docs/performance.md, "Reading X's rows")
            row_addresses(addr[0], X, rows)
            for l in range(L - 1):              # hidden layers, own columns
                n_in, n_out = offs[l, 2], offs[l, 3]
                j0 = own_units(n_out, team)[0]
                for b in range(b0, b1):
                    u0, u1 = span(n_out, b, n_blocks)
                    a_next = block(hid, hstarts, l + 1, B, hld[l + 1])[:, u0:u1]
                    bw0, bb0 = unit_block(loffs[l, 0], n_in, u0 - j0, u1 - j0, TRUE)
                    W_b = lflat[bw0:bb0].reshape((n_in, u1 - u0))
                    fused_act = act == ACT_RELU or act == ACT_IDENTITY
                    epi = (EPI_BIAS_RELU if act == ACT_RELU else EPI_BIAS if fused_act
                           else EPI_NONE)      # bias, relu in the registers
                    if l == 0 and on_nonzeros:
                        sparse_rows_epilogue(a_next, rows, csr, W_b, epi,
                                             np.int64(lflat[bb0:].ctypes.data))
                    elif fused_act:
                        matmul_rows_epilogue(a_next, addr[l], W_b, epi,
                                             np.int64(lflat[bb0:].ctypes.data))
                    else:
                        matmul_rows(a_next, addr[l], W_b, 1.0, 0.0)
                    if not fused_act:
                        bias_activation_rows(hid, hstarts[l + 1], hld[l + 1], B, u0, u1,
                                             lflat[bb0:bb0 + u1 - u0], act)
                if l < L - 2:
                    barrier(sync, n_threads, yield_fn)
            a = block(hid, hstarts, L - 1, B, hld[L - 1])[:, :offs[L - 1, 2]]
            n_in, n_out = offs[L - 1, 2], offs[L - 1, 3]
            i0, i1 = own_units(n_in, team)
            lw0, lb0 = loffs[L - 1, 0], loffs[L - 1, 1]
            parts_out = part[pstarts[L] + piece % 2 * n_blocks * chunk * n_out:]
            piece += 1
            for b in range(b0, b1):             # P_b, one per own block
                u0, u1 = span(n_in, b, n_blocks)
                P = parts_out[b * B * n_out:(b + 1) * B * n_out].reshape((B, n_out))
                for i in range(B):
                    for j in range(n_out):
                        P[i, j] = lflat[lb0 + j] if b == 0 else T(0)
                bw0, bb0 = unit_block(lw0, n_out, u0 - i0, u1 - i0, FALSE)
                gemm(blas, False, True, 1.0, a[:, u0:u1],         # W_out[blk, :].T, block b's
                     lflat[bw0:bb0].reshape((n_out, u1 - u0)), 1.0, P)
            barrier(sync, n_threads, yield_fn)
            z = z_own[:B * n_out].reshape((B, n_out))
            # the same z on every thread
            sum_parts(z_own, ZERO, n_out, parts_out, B, n_out, ZERO, n_out, n_blocks)
            yr = y_own[:0 if takes_Y else B]
            Yr = Y_own[:B if takes_Y else 0]
            wr = w_own[:B if w.shape[0] else 0]
            gather_targets(yr, Yr, wr, y, Y, w, rows)
            dz = dz_own[:B * n_out].reshape((B, n_out))
            loss, correct = head_backward(dz, z, yr, Yr, wr, head, scale)
            loss_k += loss
            correct_k += correct
            if not np.isfinite(loss):           # every thread sees the same loss and stops here
                diverged = True
                break
            for b in range(b0, b1):
                u0, u1 = span(n_in, b, n_blocks)
                bw0, bb0 = unit_block(lw0, n_out, u0 - i0, u1 - i0, FALSE)
                W_t = lflat[bw0:bb0].reshape((n_out, u1 - u0))
                # dz of the last hidden layer, block b's columns: dz @ W_out[blk, :].T, through
                # the tiles
                dz_a = block(hdz, hstarts, L - 1, B, hld[L - 1])[:, u0:u1]
                if act == ACT_RELU:             # times relu'(a) in the tiles' registers
                    matmul_rows_epilogue(dz_a, addr[L - 1, :B], W_t, EPI_RELU_MASK, a_from_dz)
                else:
                    matmul_rows(dz_a, addr[L - 1, :B], W_t, 1.0, 0.0)
                    activation_backward_rows(hdz, hid, hstarts[L - 1], hld[L - 1], B, u0, u1, act)
                # the step of W_out[blk, :].T: dW.T = dz.T @ a[:, blk], through the tiles with
                # dz's rows as A and whole vectors of a's block columns. The same argument types
                # as the hidden layers' call below, so that update_block is compiled once for all
                update_block(lflat, lslots, (bw0, bb0, n_out, u1 - u0, ZERO, n_out, ZERO, u1 - u0,
                                             ZERO, ZERO),
                             a, addr[L - 1, :B], a[:, u0:u1], accumulate, hyper, opt_k,
                             step + k + 1, blas)
            if t == 0:                          # the output bias, from the sums of dz's columns
                update_block(lflat, lslots, (lw0, lb0, i1 - i0, n_out, ZERO, ZERO, ZERO, n_out,
                                             ZERO, n_out),
                             a, addr[0, :0], dz[:, :n_out], accumulate, hyper, opt_k,
                             step + k + 1, blas)
            for l in range(L - 2, -1, -1):      # hidden layers, own columns, from the top
                n_in, n_out = offs[l, 2], offs[l, 3]
                j0 = own_units(n_out, team)[0]
                for b in range(b0, b1):
                    u0, u1 = span(n_out, b, n_blocks)
                    bw0, bb0 = unit_block(loffs[l, 0], n_in, u0 - j0, u1 - j0, TRUE)
                    dz_out = block(hdz, hstarts, l + 1, B, hld[l + 1])[:, u0:u1]
                    # Q_b = dz_{l+1}[:, blk] @ W_l[:, blk].T, before the step (through BLAS:
                    # docs/performance.md, "The Q product")
                    if l > 0:
                        q0 = pstarts[l] + b * B * n_in
                        Q = part[q0:q0 + B * n_in].reshape((B, n_in))
                        if u1 > u0:
                            gemm_few_rows(blas, True, dz_out,
                                          lflat[bw0:bb0].reshape((n_in, u1 - u0)), Q)
                        else:
                            Q[:, :] = T(0)
                    blk = (bw0, bb0, n_in, u1 - u0, ZERO, n_in, ZERO, u1 - u0, ZERO, u1 - u0)
                    if l == 0 and on_nonzeros:
                        update_block_nonzeros(lflat, lslots, blk, rows, csr, dz_out, accumulate,
                                              hyper, opt_k, step + k + 1, scratch)
                    else:
                        update_block(lflat, lslots, blk, a, addr[l, :B], dz_out, accumulate,
                                     hyper, opt_k, step + k + 1, blas)
                if l > 0:
                    barrier(sync, n_threads, yield_fn)
                    s0, s1 = own_units(n_in, team)      # the columns this thread reads next
                    sum_parts(hdz, hstarts[l], hld[l], part[pstarts[l]:], B, n_in, s0, s1,
                              n_blocks)
                    activation_backward_rows(hdz, hid, hstarts[l], hld[l], B, s0, s1, act)
        if t == 0:
            count_minibatch(stats, k, B_k, loss_k, correct_k, weight)
        if diverged:
            break
    for g, lg in ((flat, lflat), (state1, lslots.state1), (state2, lslots.state2)):
        if lg.shape[0]:
            own_columns(lg, loffs, g, offs, team, FALSE)    # back
    restore_fpenv(fpenv)


@njit(cache=True, nogil=True, inline="always")
def own_blocks(team):
    """The run b0:b1 of the ``team.n_blocks`` blocks of units that thread ``team.t`` owns."""
    return span(team.n_blocks, team.t, team.n)


@njit(cache=True, nogil=True, inline="always")
def own_units(n, team):
    """Thread ``team.t``'s units of a layer of ``n``: those of its blocks (:func:`own_blocks`;
    block b is ``span(n, b, team.n_blocks)``), so that a block is never split between threads."""
    b0, b1 = own_blocks(team)
    return n * b0 // team.n_blocks, n * b1 // team.n_blocks


@njit(cache=True, nogil=True, inline="always")
def unit_block(at, rows, c0, c1, biased):
    """(start of W, start of b) of the block of units c0:c1 (counted from the thread's first
    unit) in a thread's region at ``at``, where its blocks lie one after the other: each its
    (rows, c1 - c0) weights, row-major, then (``biased``: a hidden layer) its c1 - c0 biases.
    A block's products see the same row stride on any number of threads (the tiles cut their
    sums by it, :func:`.lowlevel.tiles._depth`)."""
    w0 = at + (rows + 1 if biased else rows) * c0
    return w0, w0 + rows * (c1 - c0)


@njit(cache=True, nogil=True)
def sum_parts(dst, d0, ld, parts, B, width, c0, c1, n_parts):
    """Columns c0:c1 of P_0 + P_1 + ... + P_{n_parts-1}, in that order (the same result on
    every thread), where P_u is the row-major (B, width) block u of the flat ``parts``, into
    the same columns of the B rows, ``ld`` apart, of the block at d0 of the flat ``dst``. Row
    slices of the flat buffers, as in kernels.bias_activation_rows, so that the loops
    vectorise."""
    for i in range(B):
        row = dst[d0 + i * ld + c0:d0 + i * ld + c1]
        first = parts[i * width + c0:i * width + c1]
        for j in range(c1 - c0):
            row[j] = first[j]
        for u in range(1, n_parts):
            p = parts[(u * B + i) * width + c0:(u * B + i) * width + c1]
            for j in range(c1 - c0):
                row[j] += p[j]


@njit(cache=True, nogil=True)
def own_columns(local, loffs, glob, offs, team, to_local):
    """Copy thread ``team.t``'s columns of every hidden layer, W[:, blk] of each own block and
    b[own], from the flat layout ``glob`` into the thread's region ``local`` (``to_local``) or
    back; and its rows of the output layer's W, transposed (W[blk, :].T), with the output bias
    on thread 0 (the others copy it in but never back). Blocks of their own: docs/performance.md,
    "Weights in each thread's own block"; W stays (n_in, n_out) for users."""
    L = offs.shape[0]
    for l in range(L):
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        W = glob[w0:b0].reshape((n_in, n_out))
        b = glob[b0:b0 + n_out].reshape((1, n_out))
        last = l == L - 1
        W_blk = W.T if last else W              # the output layer's blocks are of its rows
        width, rows = (n_in, n_out) if last else (n_out, n_in)
        c0 = own_units(width, team)[0]
        for blk in range(*own_blocks(team)):
            u0, u1 = span(width, blk, team.n_blocks)
            bw0, bb0 = unit_block(loffs[l, 0], rows, u0 - c0, u1 - c0, not last)
            exchange(W_blk[:, u0:u1], local[bw0:bb0].reshape((rows, u1 - u0)), to_local)
            if not last:
                exchange(b[:, u0:u1], local[bb0:bb0 + u1 - u0].reshape((1, u1 - u0)), to_local)
        if last:                                # the output bias: in on all, back from thread 0
            lb0, n_b = loffs[l, 1], n_out if to_local or team.t == 0 else 0
            exchange(b[:, :n_b], local[lb0:lb0 + n_b].reshape((1, n_b)), to_local)


def takes_nonzeros(inputs, X, first_width, n_blocks, piece_rows):
    """Whether the first layer (``first_width`` units in ``n_blocks`` blocks) takes X's non-zeros
    (:mod:`.lowlevel.sparse`): a :class:`.lowlevel.sparse.CompressedX` passed (``inputs``), at
    most SPARSE_MAX_DENSITY of X's elements not zero, pieces of at least SPARSE_MIN_ROWS rows
    (``piece_rows``: the scratch sum's two passes a piece do not pay back over fewer), and
    every block of units a whole number of vectors (the scatter of the weight gradient stores
    no masked vector)."""
    return (inputs is not None and not not_on_nonzeros(first_width, n_blocks, piece_rows,
                                                        X.itemsize)
            and inputs.mostly_zeros(X, plan.SPARSE_MAX_DENSITY))


def not_on_nonzeros(first_width, n_blocks, piece_rows, itemsize):
    """Why a first layer of ``first_width`` units in ``n_blocks`` blocks, in pieces of
    ``piece_rows`` rows, never takes X's non-zeros, whatever X (:func:`takes_nonzeros`), in
    words; "" when it may."""
    lanes = VECTOR_BYTES // itemsize
    if piece_rows < plan.SPARSE_MIN_ROWS:
        return f"pieces of {piece_rows} rows, under SPARSE_MIN_ROWS = {plan.SPARSE_MIN_ROWS}"
    if any((u1 - u0) % lanes for u0, u1 in (span.py_func(first_width, b, n_blocks)
                                            for b in range(n_blocks))):
        return f"blocks of the first layer's units that are not whole vectors of {lanes} lanes"
    return ""


def train_units(plan, net, data, batch_size, slots, hyper, step, blas, stats, inputs=None):
    """Run :func:`units_worker` on ``plan.threads`` pool threads (:func:`run_on_threads`; a
    single worker runs in the calling thread) over ``plan.parts`` blocks of units, minibatches
    in pieces of ``plan.chunk`` rows, with every buffer allocated here, before any worker
    starts: a worker that failed alone would leave the others waiting at a barrier.
    ``inputs``: a :class:`.lowlevel.sparse.CompressedX` for X, when the first layer may take
    its non-zeros (:func:`takes_nonzeros`)."""
    n_threads, n_blocks, chunk = plan.threads, plan.parts, plan.chunk
    offs = net.offs
    L = offs.shape[0]
    widths = [int(offs[0, 2])] + [int(v) for v in offs[:, 3]]
    dtype = net.flat.dtype
    hstarts = np.zeros(L + 1, dtype=np.int64)
    hld = np.zeros(L + 1, dtype=np.int64)
    pstarts = np.zeros(L + 1, dtype=np.int64)
    for l in range(1, L):                       # hidden layer l's block, then the next
        # rows padded where dz_l's rows would share few L1 sets in the weight step
        # (docs/performance.md, "row_stride")
        hld[l] = row_stride(widths[l], dtype.itemsize)
        hstarts[l + 1] = hstarts[l] + chunk * hld[l]
        # Q_b blocks for the hidden layers' weights above the first (1 .. L-2); the output
        # layer's input gradient needs none (each thread computes its own columns of it)
        q_width = widths[l] if l < L - 1 else 0
        pstarts[l + 1] = pstarts[l] + n_blocks * chunk * q_width
    # shared buffers on cache lines of their own (see aligned_empty), private ones per thread
    part = aligned_empty(int(pstarts[L]) + 2 * n_blocks * chunk * widths[L], dtype)
    hid = aligned_empty(int(hstarts[L]), dtype)
    shared = Shared(hid, aligned_empty(int(hstarts[L]), dtype), hstarts, hld, part, pstarts)
    n_last = widths[L]
    y, Y, w = data.y, data.Y, data.w
    sync, yield_fn = new_sync(), yield_address()
    own = [per_thread(n_threads, (L, chunk), np.int64),
           per_thread(n_threads, chunk * n_last, dtype), per_thread(n_threads, chunk * n_last, dtype),
           per_thread(n_threads, chunk, y.dtype), per_thread(n_threads, (chunk, n_last), Y.dtype),
           per_thread(n_threads, chunk, w.dtype)]
    # each thread's blocks of the hidden layers' columns and of the output layer's rows (see
    # own_columns), each block starting on a cache line
    teams = [Team(t, n_threads, n_blocks, sync, yield_fn) for t in range(n_threads)]
    loffs = np.zeros((n_threads, L, 2), dtype=np.int64)
    size = 0
    for t in range(n_threads):
        at = 0
        for l in range(L - 1):
            j0, j1 = own_units.py_func(widths[l + 1], teams[t])
            loffs[t, l] = at, at + (widths[l] + 1) * (j1 - j0)
            at += whole_lines((widths[l] + 1) * (j1 - j0), dtype)
        i0, i1 = own_units.py_func(widths[L - 1], teams[t])
        loffs[t, L - 1] = at, at + (i1 - i0) * n_last
        at += whole_lines((i1 - i0 + 1) * n_last, dtype)
        size = max(size, at)
    local = per_thread(n_threads, (5, size), dtype)
    sizes = (np.int64(batch_size), np.int64(chunk))
    if takes_nonzeros(inputs, data.X, widths[1], n_blocks, min(batch_size, chunk)):
        csr = inputs.rows(data.X)
        sparse = [(csr, np.empty((widths[0], j1 - j0), dtype)) for j0, j1 in
                  (own_units.py_func(widths[1], team) for team in teams)]
    else:
        none = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, dtype))
        sparse = [(none, np.empty((0, 0), dtype))] * n_threads

    def work(t):
        units_worker(teams[t], net, data, sizes, slots, hyper,
                     np.int64(step), shared, Own(local[t], loffs[t], *(a[t] for a in own)),
                     sparse[t], blas, stats)

    run_on_threads(work, n_threads)
