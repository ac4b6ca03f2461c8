"""Inference: the forward pass over all rows, with the head's output or its loss."""

import numpy as np
from numba import njit, prange

from .kernels import dense_forward, head_forward, head_loss, head_takes_Y
from .lowlevel.fpenv import flush_denormals, restore_fpenv


@njit(cache=True, nogil=True, parallel=True)
def infer(net, X, targets, chunk, out, part_loss, part_correct, want_loss, blas):
    """Forward over X, ``chunk`` rows at a time (only one chunk's activations per thread exist at
    once), part t taking a fixed run of chunks: head outputs into ``out`` (when it has rows)
    and, when ``want_loss``, per-part (summed loss, correct) of ``targets`` = (y, Y, w). The
    parts run on the Numba threads in force, however many."""
    flat, offs, act, head = net
    y, Y, w = targets
    n = X.shape[0]
    L = offs.shape[0]
    n_parts = part_loss.shape[0]
    max_width = offs[0, 2]
    for l in range(L):
        max_width = max(max_width, offs[l, 3])
    n_chunks = (n + chunk - 1) // chunk
    per_part = (n_chunks + n_parts - 1) // n_parts
    for t in prange(n_parts):
        fpenv = flush_denormals()
        buf = np.empty((2, chunk * max_width), dtype=flat.dtype)
        for c in range(t * per_part, min((t + 1) * per_part, n_chunks)):
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


def run_infer(n_parts, net, X, targets, chunk, out, want_loss, blas):
    """Run :func:`infer` in ``n_parts`` parts (a thread count does not change the chunks, so it
    does not change a bit); returns (summed loss, correct)."""
    # equal chunks, a whole number of them per part, none longer than ``chunk``
    per_part = max(1, -(-X.shape[0] // (n_parts * chunk)))
    chunk = max(1, -(-X.shape[0] // (n_parts * per_part)))
    part_loss = np.zeros(n_parts)
    part_correct = np.zeros(n_parts, dtype=np.int64)
    infer(net, X, targets, chunk, out, part_loss, part_correct, want_loss, blas)
    return float(part_loss.sum()), float(part_correct.sum())
