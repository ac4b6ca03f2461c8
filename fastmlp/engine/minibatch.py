"""Compiled pieces every scheme shares: where a layer's block lies in a buffer, gathering a
minibatch's rows and targets, its weight, and the run's statistics.

A minibatch's activations lie back to back in one flat buffer ``acts``: a_0 (the gathered
input, B x n_0), a_1, ..., a_L (the logits); ``dzs`` holds dz_1 ... dz_L (gradients of the
pre-activations) at the same offsets less B * n_0. ``starts[l]`` is where a_l begins.
"""

import types
from typing import NamedTuple

import numpy as np
from numba import njit

from ..params import layer_offsets
from .kernels import head_backward, head_takes_Y

# The run's statistics, a float64 array the compiled loops write (see :class:`fastmlp.engine.Stats`):
# FIELDS running values, then optionally a trace of TRACE values per minibatch (the loss times
# the weight, correct predictions, samples, weight of minibatch s at FIELDS + TRACE * s)
LOSS, CORRECT, SAMPLES, STEPS, DIVERGED_AT, BAD_LOSS, WEIGHT = range(7)
FIELDS, TRACE = 7, 4


class Net(NamedTuple):
    """The model as compiled code takes it: the flat parameters, each layer's (w_start, b_start,
    n_in, n_out) in them (:func:`offsets`), and the activation and head codes."""
    flat: np.ndarray
    offs: np.ndarray
    act: int
    head: int


class Data(NamedTuple):
    """Rows X, class indices y or target rows Y (the other empty), per-sample weights w (empty:
    all 1) and the order in which the rows are visited."""
    X: np.ndarray
    y: np.ndarray
    Y: np.ndarray
    w: np.ndarray
    order: np.ndarray


def offsets(layers):
    """layer_offsets as an (L, 4) int64 array."""
    return np.asarray(layer_offsets(layers), dtype=np.int64).reshape(-1, 4)


def new_stats(traced_steps=0):
    """Statistics of a run not started, with room to trace its first ``traced_steps``
    minibatches."""
    stats = np.zeros(FIELDS + TRACE * traced_steps)
    stats[DIVERGED_AT] = -1
    return stats


@njit(cache=True, nogil=True, inline="always")
def block(buf, starts, l, B, width):
    """Rows 0..B-1 of layer l's (B, width) block in ``buf``."""
    return buf[starts[l]:starts[l] + B * width].reshape((B, width))


@njit(cache=True, nogil=True, inline="always")
def span(n, part, n_parts):
    """Part ``part`` of ``n_parts`` near-equal contiguous parts of range(n)."""
    return n * part // n_parts, n * (part + 1) // n_parts


@njit(cache=True, nogil=True, inline="always")
def minibatch_buffers(offs, batch_size, dtype_of):
    """(starts, acts, dzs, dz_starts) for minibatches of up to ``batch_size`` rows (see the
    module doc); dz_l's block in dzs starts at dz_starts[l] = starts[l] - starts[1]."""
    L = offs.shape[0]
    starts = np.zeros(L + 2, dtype=np.int64)
    starts[1] = batch_size * offs[0, 2]
    for l in range(L):
        starts[l + 2] = starts[l + 1] + batch_size * offs[l, 3]
    acts = np.empty(starts[L + 1], dtype=dtype_of.dtype)
    dzs = np.empty(starts[L + 1] - starts[1], dtype=dtype_of.dtype)
    return starts, acts, dzs, starts - starts[1]


# Explicit loops instead of Numba's array assignment, which compiles a general broadcasting
# kernel at each use (docs/performance.md, "Explicit copy loops").

@njit(cache=True, nogil=True)
def exchange(a, b, to_b):
    """b[:, :] = a (``to_b``) or a[:, :] = b, for 2-D arrays of one shape: one function for both
    directions, compiled once for a pair of layouts."""
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            if to_b:
                b[i, j] = a[i, j]
            else:
                a[i, j] = b[i, j]


@njit(cache=True, nogil=True)
def gather(dst, src, rows):
    """dst[i, :] = src[rows[i], :] for every row i of dst."""
    for i in range(dst.shape[0]):
        row = src[rows[i]]
        for j in range(dst.shape[1]):
            dst[i, j] = row[j]


@njit(cache=True, nogil=True)
def gather_targets(yr, Yr, wr, y, Y, w, rows):
    """The head's targets and weights of the samples ``rows``: class indices into yr, target
    rows into Yr, weights into wr (each buffer empty when the head or the data has none)."""
    for i in range(yr.shape[0]):
        yr[i] = y[rows[i]]
    gather(Yr, Y, rows)
    for i in range(wr.shape[0]):
        wr[i] = w[rows[i]]


@njit(cache=True, nogil=True)
def rows_head_backward(dz, z, data, rows, head, scale, targets):
    """The head's (summed weighted loss, correct count) of the logits z of the samples ``rows``,
    and its dz (see :func:`.kernels.head_backward`), with their targets and weights gathered from
    ``data`` into ``targets``, one copy of :func:`target_buffers` (at least as many rows as
    ``rows``, where not empty)."""
    _, y, Y, w, _ = data
    m = rows.shape[0]
    yb, Yb, wb = targets
    yr, Yr, wr = yb[:m], Yb[:m], wb[:m]         # an empty buffer stays empty
    gather_targets(yr, Yr, wr, y, Y, w, rows)
    return head_backward(dz, z, yr, Yr, wr, head, scale)


@njit(cache=True, nogil=True)
def target_buffers(y, Y, w, head, copies, rows):
    """``copies`` buffers for the head's targets and weights of up to ``rows`` samples, as
    :func:`gather_targets` fills them: (class indices (copies, rows), target rows (copies,
    rows, Y's width), weights (copies, rows)), each empty where the head or the data has none.
    Allocated once per call: a step allocates nothing."""
    takes_Y = head_takes_Y(head)
    return (np.empty((copies, 0 if takes_Y else rows), y.dtype),
            np.empty((copies, rows if takes_Y else 0, Y.shape[1]), Y.dtype),
            np.empty((copies, rows if w.shape[0] else 0), w.dtype))


@njit(cache=True, nogil=True)
def minibatch_weight(w, rows, dtype_of):
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
def count_minibatch(stats, k, B, loss, correct, weight):
    """Add minibatch k to ``stats`` (and to its trace, where it has room); a non-finite loss
    records the divergence instead. Returns whether the loss was finite."""
    if not np.isfinite(loss):
        stats[DIVERGED_AT] = k
        stats[BAD_LOSS] = loss / weight if weight > 0 else loss
        return False
    at = FIELDS + TRACE * int(stats[STEPS])     # the run's minibatch count, over calls too
    if at + TRACE <= stats.shape[0]:
        stats[at] = loss
        stats[at + 1] = correct
        stats[at + 2] = B
        stats[at + 3] = weight
    stats[LOSS] += loss
    stats[CORRECT] += correct
    stats[SAMPLES] += B
    stats[STEPS] += 1
    stats[WEIGHT] += weight
    return True


def twin(fn, name):
    """``fn`` under another name. Numba names its cache files after the function's qualified
    name and line, not its compile flags: compiled twice under one name, the serial and the
    parallel build shared one cache entry, and whichever was compiled first was loaded for both
    (the parallel loop then ran on one thread)."""
    renamed = types.FunctionType(fn.__code__, fn.__globals__, name, fn.__defaults__,
                                 fn.__closure__)
    renamed.__qualname__ = name
    renamed.__doc__ = fn.__doc__
    return renamed
