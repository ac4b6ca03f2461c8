"""The plan of a compiled call: how many threads, which parallel scheme, minibatch pieces.

Three schemes share a minibatch between threads:
- "parts" (:mod:`.parts`): each thread takes a part of the minibatch's rows, then a slice of
  every layer's parameters, through BLAS on the gathered minibatch;
- "units" (:mod:`.units`): each thread owns a fixed share of every hidden layer's units for the
  whole call and multiplies them with register tiles straight from X's rows;
- "rows" (:mod:`.rows`): fixed blocks of rows, each from its rows of X to its weight gradient in
  one pass, the blocks' gradients summed in a fixed order (full-batch gradient descent).
Each constant below is a measured crossover; docs/performance.md has a section per constant
with its figures and the command that measures it.

The pieces a call's work is cut into (the scheme, the parts of the minibatch's rows and of the
parameters, the blocks of units, inference's chunks) are planned for the cores this process may
use, never for the ``threads`` a call asks for: ``threads`` only says how many threads run
those pieces, and every sum over pieces is taken in piece order, so the thread count never
changes a bit of the result.
"""

import os
from typing import NamedTuple

from . import tuner
from .lowlevel.threads import available_cores

# a second thread pays only from this many multiply-adds per minibatch and thread
MIN_MACS_PER_THREAD = 250_000
# parts win from this many multiply-adds per thread ...
MIN_MACS_PER_PART = 32_000_000
# ... and, with several threads, this many rows per thread, unless they have at least
# MIN_MACS_PER_PART_ANY_ROWS multiply-adds
MIN_ROWS_PER_PART = 256
MIN_MACS_PER_PART_ANY_ROWS = 64_000_000
# with 64 rows or more per thread but fewer multiply-adds than this, parts win
MIN_MACS_PER_UNIT = 1_500_000
# with several threads, the units scheme needs this many units of every hidden layer per thread
MIN_UNITS_PER_THREAD = 32
# minibatches of at least this many rows (full-batch gradient descent, large minibatches) whose
# hidden layers are at most ROWS_MAX_WIDTH wide take the rows scheme; smaller ones do when a
# layer takes dot products (docs/performance.md, "ROWS_MIN_BATCH = 256 and ROWS_MAX_WIDTH = 64",
# "Small minibatches of narrow nets")
ROWS_MIN_BATCH = 256
ROWS_MAX_WIDTH = 64
# a call passed a CompressedX takes the first layer from X's non-zeros when at most this share
# of X's elements are not zero (docs/performance.md, "SPARSE_MAX_DENSITY = 0.22"): the rows
# scheme for a full batch, the units scheme for pieces of at least SPARSE_MIN_ROWS rows
SPARSE_MAX_DENSITY = 0.22
SPARSE_MIN_ROWS = 32
# calls of fewer minibatches than this take parts: units' set-up per call is not won back
MIN_BATCHES_FOR_UNITS = 8
# the units scheme runs a larger minibatch in pieces of this many rows
CHUNK_ROWS = 128
# the rows scheme takes a minibatch in blocks of this many rows ...
BLOCK_ROWS = 128
# ... and in at most this many groups of blocks, each summing its gradient in a buffer of its
# own, all of them together in at most GRADIENT_BYTES
MAX_GROUPS = 32
GRADIENT_BYTES = 64 << 20
# "parts", "units" or "rows" instead of scheme()'s choice: for tests and measurements
FORCE_SCHEME = None
# the cores pieces are planned for instead of available_cores(): for tests and measurements
PLAN_CORES = None


class Plan(NamedTuple):
    """Numba threads, BLAS threads, and for training the scheme and the rows per piece;
    ``parts``: how many pieces the work is cut into (the parts scheme's parts, the units
    scheme's blocks of units, inference's chunk runs), which ``threads`` <= ``parts`` run."""
    threads: int
    blas_threads: int
    scheme: str = "parts"
    chunk: int = 0
    parts: int = 1


def planned_cores():
    """The cores the pieces of every call are planned for (see the module doc): the environment
    variable FASTMLP_PLAN_CORES when set (a process that runs on 1 thread beside others, as in
    a grid search, plans for 1 and gets the 1-core plan's speed), else the cores this process
    may use."""
    if PLAN_CORES:
        return int(PLAN_CORES)
    given = os.environ.get("FASTMLP_PLAN_CORES", "").strip()
    if given:
        if not given.isdigit() or int(given) < 1:
            raise ValueError(f"FASTMLP_PLAN_CORES must be a whole number of cores >= 1; got "
                             f"{given!r}. Unset it to plan for the cores this process may use.")
        return int(given)
    return available_cores()


def takes_dot_products(layers):
    """Whether a layer into a hidden layer would take the dot products of :mod:`.lowlevel.dots`
    in float32 (a float64 net takes the scheme of its float32 twin)."""
    from .lowlevel.dots import dots_pay

    return any(dots_pay(int(a), int(b), 4) for a, b in zip(layers[:-2], layers[1:-1]))


def macs_per_row(layers):
    """Multiply-adds of the forward pass of one sample through a net of ``layers`` units."""
    return int(sum(int(a) * int(b) for a, b in zip(layers[:-1], layers[1:])))


def thread_plan(threads, batch_size, layers):
    """(Numba threads, BLAS threads) for a call on minibatches of ``batch_size`` rows: up to
    ``threads`` compiled threads, fewer when a minibatch has too little work to share; each
    thread calls BLAS on one thread."""
    macs = batch_size * macs_per_row(layers)
    return max(1, min(threads, macs // MIN_MACS_PER_THREAD)), 1


def scheme(n_parts, batch_size, layers, n_samples):
    """How minibatches of ``batch_size`` rows of a net of ``layers`` units are cut into
    ``n_parts`` parts (one a thread when every planned core runs) in a call on ``n_samples``
    samples: "parts" (of rows), "units" (of every hidden layer; a net without one has only
    parts) or "rows" (blocks of rows, for large minibatches of narrow nets)."""
    return _scheme_and_why(n_parts, batch_size, layers, n_samples)[0]


def _scheme_and_why(n_parts, batch_size, layers, n_samples):
    """:func:`scheme`'s choice and a function that says, in words, the rule that made it (only
    called by :func:`explain_training`: planning runs on every engine call)."""
    if FORCE_SCHEME is not None and (len(layers) >= 3 or FORCE_SCHEME != "units"):
        return FORCE_SCHEME, lambda: "forced (plan.FORCE_SCHEME)"
    hidden = [int(w) for w in layers[1:-1]]
    if batch_size >= ROWS_MIN_BATCH and max(hidden, default=0) <= ROWS_MAX_WIDTH:
        return "rows", lambda: (f"minibatches of at least ROWS_MIN_BATCH = {ROWS_MIN_BATCH} rows, "
                                f"hidden layers at most ROWS_MAX_WIDTH = {ROWS_MAX_WIDTH} wide")
    if not hidden:
        return "parts", lambda: "no hidden layer: only the parts scheme applies"
    if n_samples < MIN_BATCHES_FOR_UNITS * batch_size:
        return "parts", lambda: (f"a call of fewer than MIN_BATCHES_FOR_UNITS = "
                                 f"{MIN_BATCHES_FOR_UNITS} minibatches does not win back the units "
                                 "scheme's set-up")
    if max(hidden) <= ROWS_MAX_WIDTH and takes_dot_products(layers):
        return "rows", lambda: (f"hidden layers at most ROWS_MAX_WIDTH = {ROWS_MAX_WIDTH} wide, "
                                "one of them on dot products (the reduction in the SIMD lanes): "
                                "the rows scheme at any minibatch size")
    if n_parts > 1 and min(hidden) < MIN_UNITS_PER_THREAD * n_parts:
        return "parts", lambda: (f"a hidden layer of {min(hidden)} units has fewer than "
                                 f"MIN_UNITS_PER_THREAD = {MIN_UNITS_PER_THREAD} per part")
    macs = batch_size * macs_per_row(layers)
    enough_work = macs >= MIN_MACS_PER_PART * n_parts
    enough_rows = (n_parts == 1 or batch_size >= MIN_ROWS_PER_PART * n_parts
                   or macs >= MIN_MACS_PER_PART_ANY_ROWS * n_parts)
    too_little = (n_parts > 1 and batch_size >= 64 * n_parts
                  and macs < MIN_MACS_PER_UNIT * n_parts)
    if enough_work and enough_rows:
        return "parts", lambda: (f"{macs:,} multiply-adds a minibatch: at least MIN_MACS_PER_PART "
                                 f"= {MIN_MACS_PER_PART:,} per part, with rows enough "
                                 f"(MIN_ROWS_PER_PART = {MIN_ROWS_PER_PART} per part, or "
                                 "MIN_MACS_PER_PART_ANY_ROWS)")
    if too_little:
        return "parts", lambda: (f"at least 64 rows per part but under MIN_MACS_PER_UNIT = "
                                 f"{MIN_MACS_PER_UNIT:,} multiply-adds per part")
    if not enough_work:
        return "units", lambda: (f"{macs:,} multiply-adds a minibatch: under MIN_MACS_PER_PART = "
                                 f"{MIN_MACS_PER_PART:,} per part")
    return "units", lambda: (f"{batch_size // n_parts} rows per part: under MIN_ROWS_PER_PART = "
                             f"{MIN_ROWS_PER_PART}, and {macs // n_parts:,} multiply-adds per "
                             f"part, under MIN_MACS_PER_PART_ANY_ROWS = "
                             f"{MIN_MACS_PER_PART_ANY_ROWS:,}")


def plan_training(threads, batch_size, layers, n_samples):
    """The :class:`Plan` of a training call of ``n_samples`` samples in minibatches of
    ``batch_size`` rows, on at most ``threads`` threads. The scheme and its parts are those of
    :func:`planned_cores` threads, whatever ``threads`` is."""
    n_parts, blas_threads = thread_plan(planned_cores(), batch_size, layers)
    how = scheme(n_parts, batch_size, layers, n_samples)
    return Plan(max(1, min(int(threads), n_parts)), blas_threads, how, piece_rows(how, batch_size),
                n_parts)


def explain_training(threads, batch_size, layers, n_samples):
    """(:func:`plan_training`'s plan, [why it has its parts, why its scheme]) in words, for
    ``fastmlp info --model``."""
    chosen = plan_training(threads, batch_size, layers, n_samples)
    macs, cores = batch_size * macs_per_row(layers), planned_cores()
    parts_why = (f"{chosen.parts} part{'s' if chosen.parts > 1 else ''} = max(1, min({cores} "
                 f"planned core{'s' if cores > 1 else ''}, {macs:,} multiply-adds a minibatch // "
                 f"MIN_MACS_PER_THREAD = {MIN_MACS_PER_THREAD:,})), run on ")
    if tuner.timing(chosen.threads):
        counts = ", ".join(map(str, tuner.counts_from(chosen.threads)))
        parts_why += (f"the fastest of {counts} threads, timed on the first minibatches "
                      "(FASTMLP_TUNE=off: all of them); any count gives the same result")
    else:
        parts_why += (f"{chosen.threads} thread{'s' if chosen.threads > 1 else ''} (any count "
                      "gives the same result)")
    says = _scheme_and_why(chosen.parts, batch_size, layers, n_samples)[1]
    return chosen, [parts_why, says()]


def piece_rows(how, batch_size):
    """Rows a scheme takes of a minibatch at a time: the rows scheme's blocks, the units scheme's
    pieces (the parts scheme takes it whole, in parts per thread)."""
    return BLOCK_ROWS if how == "rows" else min(batch_size, CHUNK_ROWS)


def plan_inference(threads, chunk, layers):
    """The :class:`Plan` of a forward-only call, ``chunk`` rows at a time, in the chunk runs of
    :func:`planned_cores` threads whatever ``threads`` is."""
    n_parts, blas_threads = thread_plan(planned_cores(), chunk, layers)
    return Plan(max(1, min(int(threads), n_parts)), blas_threads, parts=n_parts)
