"""The plan of a compiled call: how many threads, which parallel scheme, minibatch pieces.

Two schemes share a minibatch between threads:
- "parts" (:mod:`.parts`): each thread takes a part of the minibatch's rows, then a slice of
  every layer's parameters, through BLAS on the gathered minibatch;
- "units" (:mod:`.units`): each thread owns a fixed share of every hidden layer's units for the
  whole call and multiplies them with register tiles straight from X's rows.
Each constant below is a measured crossover; docs/performance.md has a section per constant
with its figures and the command that measures it.
"""

from typing import NamedTuple

# a second thread pays only from this many multiply-adds per minibatch and thread
MIN_MACS_PER_THREAD = 250_000
# parts win from this many multiply-adds per thread ...
MIN_MACS_PER_PART = 32_000_000
# ... and, with several threads, this many rows per thread
MIN_ROWS_PER_PART = 256
# with 64 rows or more per thread but fewer multiply-adds than this, parts win
MIN_MACS_PER_UNIT = 1_500_000
# calls of fewer minibatches than this take parts: units' set-up per call is not won back
MIN_BATCHES_FOR_UNITS = 8
# the units scheme runs a larger minibatch in pieces of this many rows
CHUNK_ROWS = 128
# "parts" or "units" instead of scheme()'s choice: for tests and measurements
FORCE_SCHEME = None


class Plan(NamedTuple):
    """Numba threads, BLAS threads, and for training the scheme and the rows per piece."""
    threads: int
    blas_threads: int
    scheme: str = "parts"
    chunk: int = 0


def macs_per_row(layers):
    """Multiply-adds of the forward pass of one sample through a net of ``layers`` units."""
    return int(sum(int(a) * int(b) for a, b in zip(layers[:-1], layers[1:])))


def thread_plan(threads, batch_size, layers):
    """(Numba threads, BLAS threads) for a call on minibatches of ``batch_size`` rows: up to
    ``threads`` compiled threads, fewer when a minibatch has too little work to share; each
    thread calls BLAS on one thread."""
    macs = batch_size * macs_per_row(layers)
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
    macs = batch_size * macs_per_row(layers)
    enough_work = macs >= MIN_MACS_PER_PART * n_threads
    enough_rows = n_threads == 1 or batch_size >= MIN_ROWS_PER_PART * n_threads
    too_little = (n_threads > 1 and batch_size >= 64 * n_threads
                  and macs < MIN_MACS_PER_UNIT * n_threads)
    return "parts" if (enough_work and enough_rows) or too_little else "units"


def plan_training(threads, batch_size, layers, n_samples):
    """The :class:`Plan` of a training call of ``n_samples`` samples in minibatches of
    ``batch_size`` rows, on at most ``threads`` threads."""
    n_threads, blas_threads = thread_plan(threads, batch_size, layers)
    how = scheme(n_threads, batch_size, layers, n_samples)
    return Plan(n_threads, blas_threads, how, min(batch_size, CHUNK_ROWS))


def plan_inference(threads, chunk, layers):
    """The :class:`Plan` of a forward-only call, ``chunk`` rows at a time."""
    return Plan(*thread_plan(threads, chunk, layers))
