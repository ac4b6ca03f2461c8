"""The compiled engine: whole runs of minibatches, forward + backward + update, inside Numba.

It implements the engine contract of :mod:`fastmlp.reference` (``train_batches``,
``evaluate_batches``, ``predict_batches``, ``thread_plan``) with the kernels of
:mod:`fastmlp.kernels`: one compiled call runs every minibatch it is given, with no Python in
between.

Two parallel schemes; :func:`scheme` picks one from the rows each thread would get.
- "parts" (large minibatches), per minibatch of B rows and ``n_parts`` threads, in two
  ``prange`` loops:
  1. rows: each thread takes a fixed, contiguous part of the rows and runs gather, forward, loss
     and the hidden layers' dz for them (rows are independent);
  2. parameters: each thread takes a fixed slice of every layer (rows s0:s1 of W, biases j0:j1)
     and computes its gradient from the whole minibatch, ``a_prev[:, s0:s1].T @ dz``, with the
     optimizer step folded in (plain SGD: one GEMM with alpha = -lr, beta = 1).
- "units" (small minibatches, one thread too): one compiled worker per thread for the whole
  call, each owning a fixed run of the units of every hidden layer, multiplying them with the
  register-tiled kernels of :mod:`fastmlp.tiles` and meeting at spin barriers; see the comment
  above :func:`_units_worker`.
No thread ever adds into memory another thread writes, and sums over threads are taken in a
fixed order, so the same seed, data and thread count give bitwise identical weights. Each thread
calls BLAS with one thread.
"""

import types

import numpy as np
from numba import njit, prange

from .blas import blas_handle, gemm, gemm_few_rows
from .codes import ACT_IDENTITY, ACT_RELU, OPT_ADAM
from .fpenv import flush_denormals, restore_fpenv
from .kernels import (FALSE, ONE, TRUE, ZERO, activation_backward, activation_backward_rows,
                      bias_activation_rows, dense_forward, head_backward, head_forward, head_loss,
                      head_takes_Y, optimizer_update)
from .params import layer_offsets, weight_mask
from .sync import aligned_empty, barrier, new_sync, per_thread, whole_lines, yield_address
from .threads import run_on_threads
from .tiles import (EPI_BIAS, EPI_BIAS_RELU, EPI_RELU_MASK, matmul_rows, matmul_rows_epilogue,
                    rank_update, row_addresses, row_stride)

# Measured on 2 cores, float32, 60000 samples, s/epoch (see the engine issue's closing notes):
# - a second thread pays only from MIN_MACS_PER_THREAD multiply-adds per minibatch and thread
#   (1 thread | 2 threads, units: 64-32-10 at batch 32, 76K: 0.020 | 0.023; 100-64-64-10 at
#   batch 32, 356K: 0.061 | 0.063; 784-32-10 at batch 32, 812K: 0.087 | 0.061);
# - parts (BLAS on the gathered minibatch) win once a minibatch has MIN_MACS_PER_PART
#   multiply-adds per thread and, with more than one thread, MIN_ROWS_PER_PART rows per thread
#   too (their two parallel launches and split gather per minibatch cost more than the units'
#   barriers); units below that. parts | units, 2 threads: 784-128-10 at batch 32: 0.26 |
#   0.117, 128: 0.129 | 0.111, 512 (26M per thread): 0.135 | 0.123; 784-512-256-10 at 32:
#   1.50 | 0.67, 128 (34M): 0.75 | 0.65, 256: 0.64 | 0.67, 512 (137M): 0.59 | 0.66. 1 thread:
#   784-128-10 at 32: 0.233 | 0.175, 128: 0.219 | 0.175, 256 (26M): 0.239 | 0.204, 512 (51M):
#   0.233 | 0.246; 784-512-256-10 at 32 (17M): 1.49 | 1.32, 64 (34M): 1.32 | 1.42, 128: 1.28 |
#   1.45. BLAS threads never won once units existed. Parts reading X's rows where they lie,
#   through the tiles (forward and the first layer's step) instead of the gather and BLAS, were
#   slower (784-128-10 at batch 512, against units in the same process: 1 thread 1.43x vs 1.26x;
#   784-512-256-10 at 512, 2 threads: 0.68 vs 0.59): the tiles walk all of W per group of 16
#   rows. A split by rows with a gradient buffer per thread can at best match two processes of
#   one thread on half the rows each: 784-128-10 at batch 512, 0.086 vs units' 0.091-0.096,
#   before it moves 400 KB of gradients and weights across the cores per minibatch.
MIN_MACS_PER_THREAD = 250_000
MIN_ROWS_PER_PART = 256
MIN_MACS_PER_PART = 32_000_000
# - but with 64 rows or more per thread and under MIN_MACS_PER_UNIT multiply-adds, a minibatch
#   has too little work for the units' fixed costs per minibatch (barriers, the head computed on
#   every thread): parts | units, 2 threads: 64-100-10 at batch 200 (0.74M per thread): 0.030 |
#   0.038; 100-64-64-10 at 256 (1.4M): 0.038 | 0.052; 784-32-10 at 128 (1.6M): 0.074 | 0.069;
#   784-64-10 at 128 (3.3M): 0.090 | 0.075.
MIN_MACS_PER_UNIT = 1_500_000
# - units set up per call (buffers, each thread's weights copied into its block and back, the
#   threads woken): 50-110 us, which a call of one minibatch never wins back (scikit-learn's
#   loop calls once per minibatch: digits, 100 hidden units, 20 epochs at batch 32 took 0.184 s
#   with units vs 0.081 with parts), so calls of fewer than MIN_BATCHES_FOR_UNITS minibatches
#   take parts
MIN_BATCHES_FOR_UNITS = 8
# - the units scheme runs a minibatch of more than CHUNK_ROWS rows in pieces of CHUNK_ROWS (the
#   gradients add up, the optimizer steps once): the step then reads the piece's rows of X
#   from cache, not back from memory after the whole minibatch's forward pass (784-128-10 at
#   batch 512, 2 threads: 0.112-0.118 whole, 0.104-0.108 in pieces of 128, 0.103 of 64 and 0.114
#   of 256; pieces of 64 slowed 784-512-256-10 at batch 128 from 0.65 to 0.68-0.70)
CHUNK_ROWS = 128
FORCE_SCHEME = None   # "parts" or "units" instead of :func:`scheme`'s choice: for tests and measurements


def _macs_per_row(layers):
    """Multiply-adds of the forward pass of one sample through a net of ``layers`` units."""
    return int(sum(int(a) * int(b) for a, b in zip(layers[:-1], layers[1:])))


def thread_plan(threads, batch_size, layers):
    """(Numba threads, BLAS threads) for a call on minibatches of ``batch_size`` rows: up to
    ``threads`` compiled threads, fewer when a minibatch has too little work to share."""
    macs = batch_size * _macs_per_row(layers)
    return max(1, min(threads, macs // MIN_MACS_PER_THREAD)), 1


def scheme(n_threads, batch_size, layers, n_samples):
    """How ``n_threads`` threads share minibatches of ``batch_size`` rows of a net of ``layers``
    units in a call on ``n_samples`` samples: "parts" (of rows) or "units" (of every hidden
    layer; a net without one has only parts)."""
    if len(layers) < 3:
        return "parts"
    if FORCE_SCHEME is not None:
        return FORCE_SCHEME
    if n_samples < MIN_BATCHES_FOR_UNITS * batch_size:
        return "parts"
    macs = batch_size * _macs_per_row(layers)
    enough_work = macs >= MIN_MACS_PER_PART * n_threads
    enough_rows = n_threads == 1 or batch_size >= MIN_ROWS_PER_PART * n_threads
    too_little = (n_threads > 1 and batch_size >= 64 * n_threads
                  and macs < MIN_MACS_PER_UNIT * n_threads)
    return "parts" if (enough_work and enough_rows) or too_little else "units"


def _offsets_array(layers):
    return np.asarray(layer_offsets(layers), dtype=np.int64).reshape(-1, 4)


# ---------------------------------------------------------------- the two phases of a minibatch
#
# ``acts`` holds the activations of the whole minibatch back to back: a_0 (the gathered input,
# B x n_0), a_1, ..., a_L (the logits); ``dzs`` holds dz_1 ... dz_L (gradients of the
# pre-activations) at the same offsets less B * n_0. ``starts[l]`` is where a_l begins.

@njit(cache=True, nogil=True, inline="always")
def _layer(buf, starts, l, B, width):
    """Rows 0..B-1 of layer l's (B, width) block in ``buf``."""
    return buf[starts[l]:starts[l] + B * width].reshape((B, width))


# An explicit loop instead of Numba's array assignment, which compiles a general broadcasting
# kernel at each use: measured, those made up about 6 s of a 15.5 s first compile.

@njit(cache=True, nogil=True)
def _exchange(a, b, to_b):
    """b[:, :] = a (``to_b``) or a[:, :] = b, for 2-D arrays of one shape: one function for both
    directions, compiled once for a pair of layouts."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if to_b:
                b[i, j] = a[i, j]
            else:
                a[i, j] = b[i, j]


@njit(cache=True, nogil=True)
def _gather(dst, src, rows):
    """dst[i, :] = src[rows[i], :] for every row i of dst."""
    for i in range(dst.shape[0]):
        row = src[rows[i]]
        for j in range(dst.shape[1]):
            dst[i, j] = row[j]


@njit(cache=True, nogil=True)
def _gather_targets(yr, Yr, wr, y, Y, w, rows):
    """The head's targets and weights of the samples ``rows``: class indices into yr, target
    rows into Yr, weights into wr (each buffer empty when the head or the data has none)."""
    for i in range(yr.shape[0]):
        yr[i] = y[rows[i]]
    _gather(Yr, Y, rows)
    for i in range(wr.shape[0]):
        wr[i] = w[rows[i]]


@njit(cache=True, nogil=True)
def _minibatch_weight(w, rows, dtype_of):
    """(weight total in float64, gradient scale 1 / total in the model's dtype) of the samples
    ``rows``: their count when ``w`` is empty."""
    weight = float(rows.shape[0])
    if w.shape[0]:
        weight = 0.0
        for i in range(rows.shape[0]):
            weight += w[rows[i]]
    T = dtype_of.dtype.type
    return weight, T(1.0 / weight) if weight > 0 else T(0)


@njit(cache=True, nogil=True)
def _count_minibatch(stats, k, B, loss, correct, weight):
    """Add minibatch k to ``stats`` (see train_batches); a non-finite loss records the
    divergence instead. Returns whether the loss was finite."""
    if not np.isfinite(loss):
        stats[4] = k
        stats[5] = loss / weight if weight > 0 else loss
        return False
    stats[0] += loss
    stats[1] += correct
    stats[2] += B
    stats[3] += 1
    stats[6] += weight
    return True


@njit(cache=True, nogil=True)
def _rows_forward_backward(flat, offs, act, head, X, y, Y, w, rows, r0, B, scale, acts, dzs,
                           starts, blas):
    """Phase 1 for minibatch rows r0 : r0 + len(rows) (sample indices ``rows``): gather, forward,
    the head's loss and dz, then dz of every hidden layer. Rows are independent, so parts of a
    minibatch can run on different threads. ``w`` holds every sample's weight (empty: all 1),
    gathered by ``rows`` like X. Returns (summed weighted loss, correct count); a non-finite
    loss returns at once."""
    fpenv = flush_denormals()
    m = rows.shape[0]
    L = offs.shape[0]
    r1 = r0 + m
    dz_starts = starts - starts[1]
    x = _layer(acts, starts, 0, B, offs[0, 2])[r0:r1]
    _gather(x, X, rows)                         # gather the minibatch: X is never copied whole
    for l in range(L):                          # forward: a_{l+1} = act(a_l @ W_l + b_l)
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        dense_forward(_layer(acts, starts, l + 1, B, n_out)[r0:r1],
                      _layer(acts, starts, l, B, n_in)[r0:r1],
                      flat[w0:b0].reshape((n_in, n_out)), flat[b0:b0 + n_out],
                      act if l < L - 1 else 0, blas)
    n_last = offs[L - 1, 3]
    takes_Y = head_takes_Y(head)               # gather the head's targets: Y rows or class indices
    yr = np.empty(0 if takes_Y else m, dtype=y.dtype)
    Yr = np.empty((m if takes_Y else 0, n_last), dtype=Y.dtype)
    wr = np.empty(m if w.shape[0] else 0, dtype=w.dtype)
    _gather_targets(yr, Yr, wr, y, Y, w, rows)
    loss, correct = head_backward(_layer(dzs, dz_starts, L, B, n_last)[r0:r1],
                                  _layer(acts, starts, L, B, n_last)[r0:r1], yr, Yr, wr, head,
                                  scale)
    if not np.isfinite(loss):
        restore_fpenv(fpenv)
        return loss, correct
    for l in range(L - 1, 0, -1):               # dz_l = (dz_{l+1} @ W_l.T) * act'(a_l)
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        dz_l = _layer(dzs, dz_starts, l, B, n_in)[r0:r1]
        gemm(blas, False, True, 1.0, _layer(dzs, dz_starts, l + 1, B, n_out)[r0:r1],
             flat[w0:b0].reshape((n_in, n_out)), 0.0, dz_l)
        activation_backward(dz_l, _layer(acts, starts, l, B, n_in)[r0:r1], act)
    restore_fpenv(fpenv)
    return loss, correct


@njit(cache=True, nogil=True, error_model="numpy")
def _momentum_step(p, v, lr, decay):
    """After the GEMM made v = momentum * v + dW: v += decay * p (L2, weights only), p -= lr * v."""
    for i in range(p.shape[0]):
        v[i] += decay * p[i]
        p[i] -= lr * v[i]


@njit(cache=True, nogil=True)
def _update_block(flat, w0, b0, n_in, n_out, s0, s1, j0, j1, c0, c1, a_prev, a_rows, dz, grad,
                  accumulate, lr, weight_decay, decay, state1, state2, opt, momentum, nesterov,
                  beta1, beta2, eps, step, blas):
    """The step for one block of one layer, from the whole minibatch: weights W[s0:s1, j0:j1]
    (dW = a_prev[:, s0:s1].T @ dz[:, j0:j1]) and biases b[c0:c1] (db_j = sum over rows of
    dz[:, j]). The layer's W starts at w0 and its b at b0 in the flat buffer. Blocks that do not
    overlap can be stepped on different threads. With ``a_rows`` not empty, row i of a_prev is
    read at that address instead (:func:`fastmlp.tiles.rank_update`) and ``a_prev`` is unused.

    With ``grad`` empty the step is folded into the product: plain SGD as
    W <- (1 - lr * decay) * W - lr * dW; momentum (without Nesterov) as v <- momentum * v + dW
    (the product writes the velocity), then v += decay * W and W -= lr * v in one pass.
    Otherwise dW goes to ``grad`` (added to what it holds with ``accumulate``: a minibatch taken
    in pieces) and, unless ``opt`` is negative (gradient only), the optimizer steps over the
    block's ranges of the flat buffer.
    """
    T = flat.dtype.type
    fused = grad.shape[0] == 0
    d = dz[:, j0:j1]
    # the product C = alpha * dW + beta * C into W, the velocity or the gradient
    if fused and momentum == 0.0:
        target, alpha, beta = flat, -lr, 1.0 - lr * weight_decay
    elif fused:
        target, alpha, beta = state1, 1.0, momentum
    else:
        target, alpha, beta = grad, 1.0, 1.0 if accumulate else 0.0
    C = target[w0:b0].reshape((n_in, n_out))[s0:s1, j0:j1]
    if a_rows.shape[0]:
        rank_update(C, a_rows, s0, d, alpha, beta)
    else:
        gemm(blas, True, False, alpha, a_prev[:, s0:s1], d, beta, C)
    # the block's contiguous ranges of the flat buffer: one when it spans whole rows, else a row each
    whole = j0 == 0 and j1 == n_out
    for q in range(1 if whole else s1 - s0):
        lo = w0 + (s0 + q) * n_out + j0
        hi = w0 + s1 * n_out if whole else lo + (j1 - j0)
        if fused and momentum != 0.0:
            _momentum_step(flat[lo:hi], state1[lo:hi], T(lr), T(weight_decay))
        elif not fused and opt >= 0:
            optimizer_update(flat[lo:hi], grad[lo:hi], decay[lo:hi] if decay.shape[0] else decay,
                             state1[lo:hi], state2[lo:hi] if state2.shape[0] else state2, opt,
                             lr, momentum, nesterov, beta1, beta2, eps, step)
    for j in range(c0, c1):
        total = T(0)
        for i in range(dz.shape[0]):
            total += dz[i, j]
        if fused and momentum == 0.0:
            flat[b0 + j] -= T(lr) * total
        elif fused:
            state1[b0 + j] = T(momentum) * state1[b0 + j] + total
            flat[b0 + j] -= T(lr) * state1[b0 + j]
        else:
            grad[b0 + j] = grad[b0 + j] + total if accumulate else total
    if not fused and opt >= 0:
        optimizer_update(flat[b0 + c0:b0 + c1], grad[b0 + c0:b0 + c1], decay[:0], state1[b0 + c0:b0 + c1],
                         state2[b0 + c0:b0 + c1] if state2.shape[0] else state2, opt, lr, momentum,
                         nesterov, beta1, beta2, eps, step)


@njit(cache=True, nogil=True, inline="always")
def _span(n, part, n_parts):
    """Part ``part`` of ``n_parts`` near-equal contiguous parts of range(n)."""
    return n * part // n_parts, n * (part + 1) // n_parts


@njit(cache=True, nogil=True)
def _update_slice(flat, offs, acts, dzs, starts, B, part, n_parts, grad, lr, weight_decay, decay,
                  state1, state2, opt, momentum, nesterov, beta1, beta2, eps, step, blas):
    """Phase 2 of the "parts" scheme for one of ``n_parts`` slices of every layer: rows s0:s1 of
    W and biases j0:j1, stepped by :func:`_update_block`. Slices never overlap, so parts can run
    on different threads."""
    fpenv = flush_denormals()
    L = offs.shape[0]
    dz_starts = starts - starts[1]
    for l in range(L):
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        s0, s1 = _span(n_in, part, n_parts)
        j0, j1 = _span(n_out, part, n_parts)
        # ZERO and the [:, :n] slices: the argument types of the units scheme's calls (one
        # compile)
        _update_block(flat, w0, b0, n_in, n_out, s0, s1, ZERO, n_out, j0, j1,
                      _layer(acts, starts, l, B, n_in)[:, :n_in], offs[0, :0],
                      _layer(dzs, dz_starts, l + 1, B, n_out)[:, :n_out],
                      grad, FALSE, lr, weight_decay, decay, state1, state2, opt, momentum, nesterov,
                      beta1, beta2, eps, step, blas)
    restore_fpenv(fpenv)


@njit(cache=True, nogil=True, inline="always")
def _minibatch_buffers(offs, batch_size, dtype_of):
    L = offs.shape[0]
    starts = np.zeros(L + 2, dtype=np.int64)
    starts[1] = batch_size * offs[0, 2]
    for l in range(L):
        starts[l + 2] = starts[l + 1] + batch_size * offs[l, 3]
    acts = np.empty(starts[L + 1], dtype=dtype_of.dtype)
    dzs = np.empty(starts[L + 1] - starts[1], dtype=dtype_of.dtype)
    return starts, acts, dzs


# ---------------------------------------------------------------- the training loop

def _train_loop(flat, offs, act, head, X, y, Y, w, order, batch_size, opt, lr, momentum, nesterov,
                weight_decay, decay, beta1, beta2, eps, state1, state2, step, grad, n_parts, blas,
                stats):
    """All minibatches of ``order``; see :func:`train_batches`. Each minibatch is two loops over
    ``n_parts`` independent parts (rows, then parameter slices); compiled serial and parallel."""
    starts, acts, dzs = _minibatch_buffers(offs, batch_size, flat)
    part_loss = np.zeros(n_parts)
    part_correct = np.zeros(n_parts, dtype=np.int64)
    n = order.shape[0]
    for k in range((n + batch_size - 1) // batch_size):
        start = k * batch_size
        B = min(batch_size, n - start)
        part_rows = (B + n_parts - 1) // n_parts
        weight, scale = _minibatch_weight(w, order[start:start + B], flat)
        for t in prange(n_parts):
            r0 = min(t * part_rows, B)
            r1 = min(r0 + part_rows, B)
            part_loss[t] = 0.0
            part_correct[t] = 0
            if r1 > r0:
                part_loss[t], part_correct[t] = _rows_forward_backward(
                    flat, offs, act, head, X, y, Y, w, order[start + r0:start + r1], r0, B,
                    scale, acts, dzs, starts, blas)
        loss = 0.0
        correct = ZERO                          # not the literal 0 (see kernels.ZERO)
        for t in range(n_parts):                # fixed order: deterministic
            loss += part_loss[t]
            correct += part_correct[t]
        if not _count_minibatch(stats, k, B, loss, correct, weight):
            return
        for t in prange(n_parts):               # (prange's index is unsigned: one compile)
            _update_slice(flat, offs, acts, dzs, starts, B, np.int64(t), n_parts, grad, lr,
                          weight_decay, decay, state1, state2, opt, momentum, nesterov, beta1,
                          beta2, eps, step + k + 1, blas)


def _twin(fn, name):
    """``fn`` under another name. Numba names its cache files after the function's qualified
    name and line, not its compile flags: compiled twice under one name, the serial and the
    parallel build shared one cache entry, and whichever was compiled first was loaded for both
    (the parallel loop then ran on one thread)."""
    twin = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    twin.__qualname__ = name
    twin.__doc__ = fn.__doc__
    return twin


_train_serial = njit(cache=True, nogil=True)(_twin(_train_loop, "_train_loop_serial"))
_train_parallel = njit(cache=True, nogil=True, parallel=True)(_twin(_train_loop, "_train_loop_parallel"))


# ---------------------------------------------------------------- the "units" scheme
#
# One compiled worker per thread runs every minibatch; thread t owns a fixed run of the units
# (columns) of every hidden layer, so each thread keeps its share of the weights in its own cache
# and the workers meet at a spin barrier (:mod:`fastmlp.sync`) a few times per minibatch:
#   hidden l    a_{l+1}[:, own] = act(a_l @ W_l[:, own] + b_l[own])                | barrier
#               (none after the last hidden layer: the next step reads own columns only)
#   output      P_t = a_{L-1}[:, own] @ W_out[own, :] (+ b_out on thread 0)        | barrier
#   head        z = P_0 + P_1 + ... in that order, on every thread (small and private), loss, dz
#   backward    dz_{L-1}[:, own] = dz @ W_out[own, :].T * act'; step W_out[own, :];
#               per hidden layer l, from the top: Q_t = dz_{l+1}[:, own] @ W_l[:, own].T,
#               step W_l[:, own] and b_l[own] (dW = a_l.T @ dz_{l+1}[:, own])          | barrier
#               dz_l[:, own] = (Q_0 + Q_1 + ...)[:, own] * act'(a_l[:, own])
# A minibatch of more than CHUNK_ROWS rows runs through all of this in pieces of CHUNK_ROWS, with
# the weight gradients added up over the pieces and the optimizer stepping after the last one.
# The hidden layers' products go through :mod:`fastmlp.tiles`, which reads the minibatch's rows
# of X where they lie (no gathered copy) and each thread's weights from its own contiguous block.
# Every weight is read and written by its owner only, every sum is taken in a fixed order, and
# the P_t alternate between two buffers (a thread may write the next piece's P_t while
# another still sums this one's), so the result is bitwise the same for a seed, data and thread
# count.
#
# Where the time goes beyond the products, 784-128-10 at batch 32, 2 threads (s/epoch, medians of
# 5-21 epochs, most with the variants interleaved in one process), before W_out's rows were kept
# transposed: 0.109-0.113 as it is; 0.100 without the phases after the barrier (head, dz of the
# hidden layer, the output layer's step), 0.121 with them run twice; 0.089-0.093 without the P_t,
# the barrier and those phases. Tried and no faster (A/B against that code): per-thread flags
# instead of the barrier (0.109 vs 0.110), P and the step of W_out[own, :] (10 columns: masked
# vectors) both through the tiles instead of BLAS (0.111 vs 0.110), prefetching the next piece's
# rows of X while waiting at the barrier (0.110-0.119 vs 0.109), or the small buffers of the
# phases after it before P (paired ratio 0.999-1.017), workers pinned to cores. Much slower: thread
# 1 running its forward's blocks of X's columns in reverse, so that the threads fetch different
# lines at a time (0.144 vs 0.104): both fetching the same rows at the same moment is what the
# forward wants. Per minibatch and thread, by cycle counter, as the code is now (batch 32, three
# epochs): forward 23.8-26.1 us, weight step 20.3-21.5, and about 8 us for the rest (P 1.2-1.8,
# barrier 0.3-2.1 (5.7 in one epoch), sum of the P_t 0.6-1.2, targets 0.4, head 1.5-1.7, dz of
# the hidden layer 1.3-2.0, output step 0.8-1.3).

@njit(cache=True, nogil=True)
def _units_worker(t, n_threads, flat, offs, act, head, X, y, Y, w, order, batch_size, chunk, opt,
                  lr, momentum, nesterov, weight_decay, decay, beta1, beta2, eps, state1, state2,
                  step, grad, hid, hdz, hstarts, hld, part, pstarts, local, loffs, addr, z_own,
                  dz_own, y_own, Y_own, w_own, sync, yield_fn, blas, stats):
    """Thread ``t`` of ``n_threads`` of the units scheme over all minibatches of ``order`` (see the
    comment above), each in pieces of up to ``chunk`` rows (all buffers hold a piece); thread 0
    writes ``stats``. Shared buffers: hid / hdz: a_l and dz_l of the hidden layers, block l at
    hstarts[l], its rows hld[l] apart (see tiles.row_stride); part: per thread and layer, the
    partial sums Q_t (blocks 1 .. L-2, thread t's at pstarts[l] + t * chunk * n_l) and, twice over
    for pieces even and odd, P_t (block L). ``local`` (5, size) and the other arguments are this
    thread's own buffers: local holds its columns of the hidden layers and its rows of the output
    layer's W, transposed (rows: parameters, gradient, state1, state2, decay; see _own_columns),
    layer l's W block at loffs[l, 0] and b at loffs[l, 1]; addr[l] the row addresses of a_l
    (l = 0: the piece's rows of X) and addr[L - 1] those of dz (in dz_own)."""
    fpenv = flush_denormals()
    L = offs.shape[0]
    lflat = local[0]
    lgrad = local[1, :local.shape[1] if grad.shape[0] else 0]
    lstate1 = local[2, :local.shape[1] if state1.shape[0] else 0]
    lstate2 = local[3, :local.shape[1] if state2.shape[0] else 0]
    ldecay = local[4, :local.shape[1] if decay.shape[0] else 0]
    for g, lg in ((flat, lflat), (state1, lstate1), (state2, lstate2), (decay, ldecay)):
        if lg.shape[0]:
            _own_columns(lg, loffs, g, offs, t, n_threads, TRUE)    # to the blocks
    for l in range(1, L - 1):
        row_addresses(addr[l], _layer(hid, hstarts, l, chunk, hld[l]), order[:0])
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
        weight, scale = _minibatch_weight(w, order[start:start + B_k], flat)
        loss_k = 0.0
        correct_k = ZERO
        # the minibatch in pieces of up to ``chunk`` rows, each run through forward and backward
        # while its rows of X are still in cache; their gradients add up in ``grad`` and the
        # optimizer steps once, after the last piece
        for r0 in range(0, B_k, chunk):
            B = min(chunk, B_k - r0)
            rows = order[start + r0:start + r0 + B]
            accumulate = r0 > 0
            opt_k = opt if r0 + B == B_k else -ONE
            # the rows of X are read where they lie; software prefetch of the coming rows did
            # not pay once the shared buffers were cache-line aligned (784-128-10 at batch 32:
            # 0.12-0.14 s/epoch prefetching every line, 0.109-0.116 prefetching one line per
            # row or none). Fetching them costs: drawn from all 60000 rows instead of 2000 (in
            # cache), they took 784-128-10 from 0.096-0.102 s/epoch to 0.108-0.131 at batches
            # 32-512. A core here reads such rows at 10-12 GB/s, and a prefetch holds a fill
            # buffer as long as a load does. Prefetching a piece's rows spread over the weight
            # step before it (1 line per row every 16 to 112 features) was slower than none: 32
            # rows, forward and step, 2 threads: 49.2 -> 50.9-53.0 us. Measured again on a C
            # model of this forward (2 threads, 32 random rows per minibatch): 21.8-24.7 us,
            # rows in cache 19.8-21.3; prefetching the next group's rows (one depth block
            # ahead, row after row, or only where each row's hardware stream starts: its first
            # lines and the first past a 4 KiB boundary; prefetcht0 or t1) took 21.9-26.3 us,
            # never more than 1 us faster than none in the same run.
            row_addresses(addr[0], X, rows)
            for l in range(L - 1):              # hidden layers, own columns
                n_in, n_out = offs[l, 2], offs[l, 3]
                j0, j1 = _span(n_out, t, n_threads)
                a_next = _layer(hid, hstarts, l + 1, B, hld[l + 1])[:, j0:j1]
                lw0, lb0 = loffs[l, 0], loffs[l, 1]
                W_own = lflat[lw0:lb0].reshape((n_in, j1 - j0))
                if act == ACT_RELU or act == ACT_IDENTITY:  # bias and relu in the tiles' registers
                    matmul_rows_epilogue(a_next, addr[l], W_own,
                                         EPI_BIAS_RELU if act == ACT_RELU else EPI_BIAS,
                                         np.int64(lflat[lb0:].ctypes.data))
                else:
                    matmul_rows(a_next, addr[l], W_own, 1.0, 0.0)
                    bias_activation_rows(hid, hstarts[l + 1], hld[l + 1], B, j0, j1,
                                         lflat[lb0:lb0 + j1 - j0], act)
                if l < L - 2:
                    barrier(sync, n_threads, yield_fn)
            a = _layer(hid, hstarts, L - 1, B, hld[L - 1])[:, :offs[L - 1, 2]]
            n_in, n_out = offs[L - 1, 2], offs[L - 1, 3]
            i0, i1 = _span(n_in, t, n_threads)
            lw0, lb0 = loffs[L - 1, 0], loffs[L - 1, 1]
            W_t = lflat[lw0:lb0].reshape((n_out, i1 - i0))     # W_out[own, :].T, this thread's
            parts_out = part[pstarts[L] + piece % 2 * n_threads * chunk * n_out:]
            piece += 1
            P = parts_out[t * B * n_out:(t + 1) * B * n_out].reshape((B, n_out))
            for i in range(B):
                for j in range(n_out):
                    P[i, j] = lflat[lb0 + j] if t == 0 else T(0)
            gemm(blas, False, True, 1.0, a[:, i0:i1], W_t, 1.0, P)
            barrier(sync, n_threads, yield_fn)
            z = z_own[:B * n_out].reshape((B, n_out))
            # the same z on every thread
            _sum_parts(z_own, ZERO, n_out, parts_out, B, n_out, ZERO, n_out, n_threads)
            yr = y_own[:0 if takes_Y else B]
            Yr = Y_own[:B if takes_Y else 0]
            wr = w_own[:B if w.shape[0] else 0]
            _gather_targets(yr, Yr, wr, y, Y, w, rows)
            dz = dz_own[:B * n_out].reshape((B, n_out))
            loss, correct = head_backward(dz, z, yr, Yr, wr, head, scale)
            loss_k += loss
            correct_k += correct
            if not np.isfinite(loss):           # every thread sees the same loss and stops here
                diverged = True
                break
            # dz of the last hidden layer, own columns: dz @ W_out[own, :].T (BLAS took 7 us for
            # these 32x10 @ 10x64 at batch 32, the tiles 1 us)
            dz_a = _layer(hdz, hstarts, L - 1, B, hld[L - 1])[:, i0:i1]
            if act == ACT_RELU:                 # times relu'(a) in the tiles' registers
                matmul_rows_epilogue(dz_a, addr[L - 1, :B], W_t, EPI_RELU_MASK, a_from_dz)
            else:
                matmul_rows(dz_a, addr[L - 1, :B], W_t, 1.0, 0.0)
                activation_backward_rows(hdz, hid, hstarts[L - 1], hld[L - 1], B, i0, i1, act)
            # the step of W_out[own, :].T: dW.T = dz.T @ a[:, own], through the tiles with dz's
            # rows as A and whole vectors of a's own columns (W_out[own, :] through BLAS, and
            # copying its transpose for the product above, took 784-128-10 at batch 32 3-4%
            # longer per epoch). The same argument types as the hidden layers' call below, so
            # that _update_block is compiled once for all (2.4 s of the first compile)
            _update_block(lflat, lw0, lb0, n_out, i1 - i0, ZERO, n_out, ZERO, i1 - i0, ZERO, ZERO,
                          a, addr[L - 1, :B], a[:, i0:i1], lgrad, accumulate, lr, weight_decay,
                          ldecay, lstate1, lstate2, opt_k, momentum, nesterov, beta1, beta2, eps,
                          step + k + 1, blas)
            if t == 0:                          # the output bias, from the sums of dz's columns
                _update_block(lflat, lw0, lb0, i1 - i0, n_out, ZERO, ZERO, ZERO, n_out, ZERO,
                              n_out, a, addr[0, :0], dz[:, :n_out], lgrad, accumulate, lr,
                              weight_decay, ldecay, lstate1, lstate2, opt_k, momentum, nesterov,
                              beta1, beta2, eps, step + k + 1, blas)
            for l in range(L - 2, -1, -1):      # hidden layers, own columns, from the top
                n_in, n_out = offs[l, 2], offs[l, 3]
                j0, j1 = _span(n_out, t, n_threads)
                lw0, lb0 = loffs[l, 0], loffs[l, 1]
                dz_out = _layer(hdz, hstarts, l + 1, B, hld[l + 1])[:, j0:j1]
                # Q_t = dz_{l+1}[:, own] @ W_l[:, own].T, before the step. One thread, in cache,
                # 784-512-256-10 (32x128 @ (512x128).T at batch 32): OpenBLAS 40-46 us, 91-106
                # GFLOP/s, against 146-163 for its 2048^3 sgemm. The tiles need B's rows
                # contiguous, so they would compute Q_t.T = W_l[:, own] @ dz_{l+1}[:, own].T from
                # a transposed copy of dz: 33 us, 35 with a plain copy loop (at batch 128: 102 and
                # 137 us, OpenBLAS 133-140), before the transposed sum into dz_l. Not built.
                # The sum below reads half of the other thread's Q_t across cores; having the
                # writer push its lines to the shared L3 (cldemote, C model, 32 KiB) made that
                # read 1.7 -> 0.95 us but the writes 3.1 -> 5.7 us.
                if l > 0:
                    q0 = pstarts[l] + t * B * n_in
                    Q = part[q0:q0 + B * n_in].reshape((B, n_in))
                    if j1 > j0:
                        W_own = lflat[lw0:lb0].reshape((n_in, j1 - j0))
                        gemm_few_rows(blas, True, dz_out, W_own, Q)
                    else:
                        Q[:, :] = T(0)
                _update_block(lflat, lw0, lb0, n_in, j1 - j0, ZERO, n_in, ZERO, j1 - j0, ZERO,
                              j1 - j0, a, addr[l, :B], dz_out, lgrad, accumulate, lr,
                              weight_decay, ldecay, lstate1, lstate2, opt_k, momentum, nesterov,
                              beta1, beta2, eps, step + k + 1, blas)
                if l > 0:
                    barrier(sync, n_threads, yield_fn)
                    s0, s1 = _span(n_in, t, n_threads)
                    _sum_parts(hdz, hstarts[l], hld[l], part[pstarts[l]:], B, n_in, s0, s1,
                               n_threads)
                    activation_backward_rows(hdz, hid, hstarts[l], hld[l], B, s0, s1, act)
        if t == 0:
            _count_minibatch(stats, k, B_k, loss_k, correct_k, weight)
        if diverged:
            break
    for g, lg in ((flat, lflat), (state1, lstate1), (state2, lstate2)):
        if lg.shape[0]:
            _own_columns(lg, loffs, g, offs, t, n_threads, FALSE)   # back
    restore_fpenv(fpenv)


@njit(cache=True, nogil=True)
def _sum_parts(dst, d0, ld, parts, B, width, c0, c1, n_threads):
    """Columns c0:c1 of P_0 + P_1 + ... + P_{n_threads-1}, in that order (the same result on
    every thread), where P_u is the row-major (B, width) block u of the flat ``parts``, into
    the same columns of the B rows, ``ld`` apart, of the block at d0 of the flat ``dst``. Row
    slices of the flat buffers, as in kernels.bias_activation_rows, so that the loops
    vectorise."""
    for i in range(B):
        row = dst[d0 + i * ld + c0:d0 + i * ld + c1]
        first = parts[i * width + c0:i * width + c1]
        for j in range(c1 - c0):
            row[j] = first[j]
        for u in range(1, n_threads):
            part = parts[(u * B + i) * width + c0:(u * B + i) * width + c1]
            for j in range(c1 - c0):
                row[j] += part[j]


@njit(cache=True, nogil=True)
def _own_columns(local, loffs, glob, offs, t, n_threads, to_local):
    """Copy thread t's columns of every hidden layer, W[:, own] and b[own], from the flat layout
    ``glob`` into the thread's contiguous blocks ``local`` (``to_local``) or back; and its rows
    of the output layer's W, transposed (W[own, :].T), with the output bias on thread 0 (the
    others copy it in but never back). Measured: two threads stepping the interleaved column
    halves of one W ran at 98 us per minibatch, in blocks of their own at 63 us (one thread, all
    columns: 105 us); W stays (n_in, n_out) for users."""
    L = offs.shape[0]
    for l in range(L):
        w0, b0, n_in, n_out = offs[l, 0], offs[l, 1], offs[l, 2], offs[l, 3]
        lw0, lb0 = loffs[l, 0], loffs[l, 1]
        if l == L - 1:
            i0, i1 = _span(n_in, t, n_threads)
            _exchange(glob[w0:b0].reshape((n_in, n_out)).T[:, i0:i1],
                      local[lw0:lb0].reshape((n_out, i1 - i0)), to_local)
            j0, j1 = 0, n_out if to_local or t == 0 else 0
        else:
            j0, j1 = _span(n_out, t, n_threads)
            _exchange(glob[w0:b0].reshape((n_in, n_out))[:, j0:j1],
                      local[lw0:lb0].reshape((n_in, j1 - j0)), to_local)
        _exchange(glob[b0:b0 + n_out].reshape((1, n_out))[:, j0:j1],
                  local[lb0:lb0 + j1 - j0].reshape((1, j1 - j0)), to_local)


def _train_units(n_threads, flat, offs, act, head, X, y, Y, w, order, batch_size, chunk, opt, lr,
                 momentum, nesterov, weight_decay, decay, beta1, beta2, eps, state1, state2, step,
                 grad, blas, stats):
    """Run :func:`_units_worker` on ``n_threads`` pool threads (:func:`run_on_threads`; a single
    worker runs in the calling thread), minibatches in pieces of ``chunk`` rows, with every
    buffer allocated here, before any worker starts: a worker that failed alone would leave the
    others waiting at a barrier."""
    L = offs.shape[0]
    widths = [int(offs[0, 2])] + [int(v) for v in offs[:, 3]]
    dtype = flat.dtype
    hstarts = np.zeros(L + 1, dtype=np.int64)
    hld = np.zeros(L + 1, dtype=np.int64)
    pstarts = np.zeros(L + 1, dtype=np.int64)
    for l in range(1, L):                       # hidden layer l's block, then the next
        # rows padded where dz_l's rows would share few L1 sets in the weight step
        # (784-512-256-10 at batch 128, 2 threads: 0.628-0.648 s/epoch, padded 0.596-0.606)
        hld[l] = row_stride(widths[l], dtype.itemsize)
        hstarts[l + 1] = hstarts[l] + chunk * hld[l]
        # Q_t blocks for the hidden layers' weights above the first (1 .. L-2); the output
        # layer's input gradient needs none (each thread computes its own columns of it)
        q_width = widths[l] if l < L - 1 else 0
        pstarts[l + 1] = pstarts[l] + n_threads * chunk * q_width
    # shared buffers on cache lines of their own (see aligned_empty), private ones per thread
    part = aligned_empty(int(pstarts[L]) + 2 * n_threads * chunk * widths[L], dtype)
    hid = aligned_empty(int(hstarts[L]), dtype)
    hdz = aligned_empty(int(hstarts[L]), dtype)
    addr = per_thread(n_threads, (L, chunk), np.int64)
    n_last = widths[L]
    z_own = per_thread(n_threads, chunk * n_last, dtype)
    dz_own = per_thread(n_threads, chunk * n_last, dtype)
    y_own = per_thread(n_threads, chunk, y.dtype)
    Y_own = per_thread(n_threads, (chunk, n_last), Y.dtype)
    w_own = per_thread(n_threads, chunk, w.dtype)
    # each thread's blocks of the hidden layers' columns and of the output layer's rows (see
    # _own_columns), each block starting on a cache line
    loffs = np.zeros((n_threads, L, 2), dtype=np.int64)
    size = 0
    for t in range(n_threads):
        at = 0
        for l in range(L - 1):
            j0, j1 = _span.py_func(widths[l + 1], t, n_threads)
            own = j1 - j0
            loffs[t, l] = at, at + widths[l] * own
            at += whole_lines((widths[l] + 1) * own, dtype)
        i0, i1 = _span.py_func(widths[L - 1], t, n_threads)
        own = i1 - i0
        loffs[t, L - 1] = at, at + own * n_last
        at += whole_lines((own + 1) * n_last, dtype)
        size = max(size, at)
    local = per_thread(n_threads, (5, size), dtype)
    sync = new_sync()
    yield_fn = yield_address()

    def work(t):
        _units_worker(t, n_threads, flat, offs, act, head, X, y, Y, w, order, batch_size, chunk,
                      opt, lr, momentum, nesterov, weight_decay, decay, beta1, beta2, eps, state1,
                      state2, step, grad, hid, hdz, hstarts, hld, part, pstarts, local[t], loffs[t],
                      addr[t], z_own[t], dz_own[t], y_own[t], Y_own[t], w_own[t], sync,
                      yield_fn, blas, stats)

    run_on_threads(work, n_threads)


def train_batches(flat, layers, act, head, X, y, Y, order, batch_size, opt, lr, momentum,
                  nesterov, weight_decay, beta1, beta2, eps, state1, state2, step, w=None):
    """The compiled twin of :func:`fastmlp.reference.train_batches` (same arguments and stats).

    The Numba thread count in force (see :func:`thread_plan` and
    :func:`fastmlp.threads.thread_limits`) is how many threads share each minibatch, by rows or
    by units as :func:`scheme` decides. ``w`` (per-sample weights) is used in the model's dtype:
    pass it so to avoid a copy per call.
    """
    import numba

    w = _weights(w, flat, X.shape[0])
    offs = _offsets_array(layers)
    n_threads = numba.get_num_threads()
    units = scheme(n_threads, batch_size, layers, order.shape[0]) == "units"
    # plain SGD and momentum SGD update inside the weight-gradient GEMM, which takes the weight
    # decay as a scalar; Nesterov and Adam need dW and a per-parameter decay (0 on biases), and
    # so does a minibatch the units scheme takes in pieces (dW adds up over the pieces)
    chunk = min(batch_size, CHUNK_ROWS)
    in_pieces = units and chunk < batch_size
    fused = opt != OPT_ADAM and (momentum == 0.0 or not nesterov) and not in_pieces
    grad = flat[:0] if fused else np.empty_like(flat)
    decay = flat[:0]
    if weight_decay and not fused:
        decay = (weight_mask(layers) * weight_decay).astype(flat.dtype)
    if opt != OPT_ADAM:
        state2 = flat[:0] if state2.shape[0] == 0 else state2
        if momentum == 0.0:
            state1 = flat[:0]                   # plain SGD keeps no state: nothing to copy or pass
    stats = np.zeros(7)
    stats[4] = -1
    if X.dtype != flat.dtype or X.strides[1] != X.itemsize:
        # the units scheme reads X's rows by address, as the model's dtype (callers that
        # validate X pass it so already: no copy)
        X = np.ascontiguousarray(X, dtype=flat.dtype)
    if units:
        _train_units(n_threads, flat, offs, act, head, X, y, Y, w, order, batch_size, chunk, opt,
                     float(lr), float(momentum), bool(nesterov), float(weight_decay), decay,
                     float(beta1), float(beta2), float(eps), state1, state2, int(step), grad,
                     blas_handle(), stats)
        return stats
    kernel = _train_parallel if n_threads > 1 else _train_serial
    kernel(flat, offs, act, head, X, y, Y, w, order, batch_size, opt, float(lr), float(momentum),
           bool(nesterov), float(weight_decay), decay, float(beta1), float(beta2), float(eps),
           state1, state2, int(step), grad, n_threads, blas_handle(), stats)
    return stats


def _weights(w, flat, n):
    """Per-sample weights as the compiled code takes them: a contiguous array of the model's
    dtype, empty for uniform weights (None or empty); otherwise one per row of X (n), checked
    because the compiled code indexes it without bounds checks."""
    if w is None or len(w) == 0:
        return flat[:0]
    w = np.ascontiguousarray(w, dtype=flat.dtype).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"w must hold one weight per row of X ({n}); got {w.shape[0]}.")
    return w


@njit(cache=True, nogil=True)
def _loss_and_grad(flat, offs, act, head, X, y, Y, w, scale, grad, blas):
    n = X.shape[0]
    starts, acts, dzs = _minibatch_buffers(offs, n, flat)
    # ZERO, ONE, FALSE: not literals, so that the training loop's compiled versions serve here
    loss, correct = _rows_forward_backward(flat, offs, act, head, X, y, Y, w, np.arange(n), ZERO,
                                           n, flat.dtype.type(scale), acts, dzs, starts, blas)
    if np.isfinite(loss):
        _update_slice(flat, offs, acts, dzs, starts, n, ZERO, ONE, grad, 0.0, 0.0, flat[:0],
                      flat[:0], flat[:0], -ONE, 0.0, FALSE, 0.9, 0.999, 1e-8, ONE, blas)
    return loss, correct


def loss_and_grad(flat, layers, act, head, X, y, Y, grad, w=None):
    """Mean loss of all rows of X and its gradient, written into the flat buffer ``grad``
    (same layout as ``flat``); the parameters are not changed. Returns (loss, correct count).
    With per-sample weights ``w`` it is the weighted mean sum_i w_i loss_i / sum_i w_i."""
    if grad.shape != flat.shape or grad.dtype != flat.dtype:
        raise ValueError(f"grad must be a {flat.dtype} buffer of shape {flat.shape}; got {grad.dtype} {grad.shape}.")
    X = np.ascontiguousarray(X, dtype=flat.dtype)
    w = _weights(w, flat, X.shape[0])
    total = float(X.shape[0]) if w.shape[0] == 0 else float(w.sum(dtype=np.float64))
    scale = 1.0 / total if total > 0 else 0.0
    loss, correct = _loss_and_grad(flat, _offsets_array(layers), act, head, X, y, Y, w, scale,
                                   grad, blas_handle())
    return (loss / X.shape[0] if w.shape[0] == 0 else loss * scale), correct


# ---------------------------------------------------------------- inference

@njit(cache=True, nogil=True, parallel=True)
def _infer(flat, offs, act, head, X, y, Y, w, chunk, out, part_loss, part_correct, want_loss,
           blas):
    """Forward over X, ``chunk`` rows at a time (only one chunk's activations per thread exist at
    once), thread t taking a fixed run of chunks: head outputs into ``out`` (when it has rows)
    and per-thread (summed loss, correct) when ``want_loss``."""
    n = X.shape[0]
    L = offs.shape[0]
    n_threads = part_loss.shape[0]
    max_width = offs[0, 2]
    for l in range(L):
        max_width = max(max_width, offs[l, 3])
    n_chunks = (n + chunk - 1) // chunk
    per_thread = (n_chunks + n_threads - 1) // n_threads
    for t in prange(n_threads):
        fpenv = flush_denormals()
        buf = np.empty((2, chunk * max_width), dtype=flat.dtype)
        for c in range(t * per_thread, min((t + 1) * per_thread, n_chunks)):
            r0 = c * chunk
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
                takes_Y = head_takes_Y(head)
                loss, correct = head_loss(a, y if takes_Y else y[r0:r1],
                                          Y[r0:r1] if takes_Y else Y,
                                          w[r0:r1] if w.shape[0] else w, head)
                part_loss[t] += loss
                part_correct[t] += correct
            if out.shape[0]:
                head_forward(out[r0:r1], a, head)
        restore_fpenv(fpenv)


def _run_infer(flat, layers, act, head, X, y, Y, chunk, out, want_loss, w=None):
    """Run :func:`_infer` on the Numba threads in force; returns (summed loss, correct)."""
    import numba

    X = np.ascontiguousarray(X, dtype=flat.dtype)
    n_threads = numba.get_num_threads()
    # equal chunks, a whole number of them per thread, none longer than ``chunk``
    per_thread = max(1, -(-X.shape[0] // (n_threads * chunk)))
    chunk = max(1, -(-X.shape[0] // (n_threads * per_thread)))
    part_loss = np.zeros(n_threads)
    part_correct = np.zeros(n_threads, dtype=np.int64)
    w = _weights(w, flat, X.shape[0])
    _infer(flat, _offsets_array(layers), act, head, X, y, Y, w, chunk, out, part_loss,
           part_correct, want_loss, blas_handle())
    return float(part_loss.sum()), float(part_correct.sum())


def predict_batches(flat, layers, act, head, X, chunk=4096):
    """Head outputs (n, n_out) for all rows of X; the compiled twin of the reference's."""
    out = np.empty((X.shape[0], layers[-1]), dtype=flat.dtype)
    _run_infer(flat, layers, act, head, X, np.zeros(0, np.int64),
               np.zeros((0, layers[-1]), flat.dtype), chunk, out, False)
    return out


def evaluate_batches(flat, layers, act, head, X, y, Y, chunk=4096, w=None):
    """(summed loss, correct count) over all rows, the loss weighted by ``w`` when given; the
    compiled twin of the reference's."""
    empty = np.empty((0, layers[-1]), dtype=flat.dtype)
    return _run_infer(flat, layers, act, head, X, y, Y, chunk, empty, True, w)
