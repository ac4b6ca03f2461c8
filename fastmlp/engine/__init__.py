"""The engine: one call per job for every front end (``MLP``, the scikit-learn estimators, the
functional API, the benchmark report).

    net = Network(flat, layers, act, head)            # parameters and what they compute
    state = OptimizerState("sgd", flat.size, flat.dtype)
    stats = train(net, state, Batches(X, y, Y, order, batch_size), Hyper.of("sgd", lr=0.1))
    stats.mean_loss, stats.diverged_at, stats.overflowed

Each call plans its threads (:mod:`.plan`) under one process-wide lock
(:func:`.lowlevel.threads.thread_limits`) and runs one compiled call: the "parts"
(:mod:`.parts`) or "units" (:mod:`.units`) scheme for training, :mod:`.infer` for predictions.
``engine="numpy"`` runs :mod:`fastmlp.reference` instead, the same math in plain NumPy; so does
``engine="numba"`` while the call's kernel is missing from Numba's cache and being compiled in
a background process (:mod:`.background`; ``Stats.engine`` says which ran).
Inputs are checked by the front ends (:mod:`fastmlp.validation`) before they get here; this
module only converts what the compiled code needs (dtype, contiguity).
"""

import time
from contextlib import contextmanager
from typing import NamedTuple, Optional

import numpy as np

from .. import reference
from . import background, infer, parts, plan, rows, tuner, units
from .lowlevel.sparse import CompressedX
from .lowlevel.threads import available_cores, max_threads, thread_limits
from .minibatch import (BAD_LOSS, CORRECT, DIVERGED_AT, FIELDS, LOSS, SAMPLES, STEPS, TRACE, WEIGHT,
                        Data, Net, new_stats, offsets)
from .optimizer import Hyper, OptimizerState, can_fuse, slots_for
from .plan import Plan, plan_inference, plan_training

__all__ = ["Network", "Batches", "CompressedX", "Hyper", "OptimizerState", "Stats", "Plan", "train",
           "session",
           "evaluate", "predict", "loss_and_grad", "train_batches", "plan_training"]


class Network(NamedTuple):
    """The model's flat parameters (see :mod:`fastmlp.params`), its layer widths, and the codes
    of its hidden activation and output head (:mod:`fastmlp.codes`)."""
    flat: np.ndarray
    layers: tuple
    act: int
    head: int


class Batches(NamedTuple):
    """The data of a training call and the order of its minibatches: rows ``order[k*B:(k+1)*B]``
    of X form minibatch k. ``y`` holds class indices or ``Y`` target rows (the other empty, by
    head); ``w`` per-sample weights, or None for all 1. ``plan_rows``: the rows the call's plan
    is made for, 0 for ``len(order)``; an epoch cut into several calls passes its whole length,
    so that every call takes the same scheme and the cut does not change a bit. ``compressed``:
    a :class:`CompressedX`, with which calls on a mostly-zero X take the first layer from X's
    non-zeros (full batches in the rows scheme, :func:`.rows.takes_nonzeros`; minibatches in the
    units scheme, :func:`.units.takes_nonzeros`), X compressed once for all the calls that pass
    the same one (``MLP.fit`` passes one per fit); None: the dense products, always. The choice
    depends on the data, the model, the minibatch size and whether one is passed, never on how
    calls are cut."""
    X: np.ndarray
    y: np.ndarray
    Y: np.ndarray
    order: np.ndarray
    batch_size: int
    w: Optional[np.ndarray] = None
    plan_rows: int = 0
    compressed: Optional[CompressedX] = None

    @property
    def planned_rows(self):
        return self.plan_rows or len(self.order)


class Stats(NamedTuple):
    """What a training call did. ``loss_sum``: the minibatches' losses times their weights,
    summed; ``weight``: their total weight (the sample count for uniform weights); ``steps``:
    updates made. ``diverged_at``: the index (in this call) of the minibatch whose loss was
    not finite, where training stopped without its update, else None. ``overflowed``: the
    weights left the finite range or the loss exploded (with ``guard``, they were put back as
    before the call; ``why`` says which). ``engine``: which engine ran, "numba" or "numpy" (the
    NumPy reference, also for engine "numba" while its kernel compiles: see :mod:`.background`),
    joined with "+" over several calls that differ. ``trace``: with ``train(trace=True)``, one
    row per minibatch trained, [loss * weight, correct, samples, weight]; else None."""
    loss_sum: float
    correct: float
    samples: int
    steps: int
    weight: float
    diverged_at: Optional[int] = None
    bad_loss: float = 0.0
    overflowed: bool = False
    why: str = ""
    engine: str = ""
    trace: Optional[np.ndarray] = None

    @property
    def mean_loss(self):
        """The (weighted) mean loss of the minibatches trained."""
        return self.loss_sum / self.weight if self.weight > 0 else self.loss_sum / max(self.samples, 1)

    @property
    def accuracy(self):
        return self.correct / max(self.samples, 1)

    def __add__(self, other):
        """Two calls' statistics, one after the other (the first divergence counts)."""
        return Stats(self.loss_sum + other.loss_sum, self.correct + other.correct,
                     self.samples + other.samples, self.steps + other.steps,
                     self.weight + other.weight,
                     self.diverged_at if self.diverged_at is not None else other.diverged_at,
                     self.bad_loss if self.diverged_at is not None else other.bad_loss,
                     self.overflowed or other.overflowed, self.why or other.why,
                     _joined(self.engine, other.engine),
                     None if self.trace is None or other.trace is None
                     else np.concatenate([self.trace, other.trace]))


def _joined(first, then):
    """The engines of two calls in the order they first ran: "numba", "numpy+numba", ..."""
    ran = [e for e in first.split("+") if e]
    return "+".join(ran + [e for e in then.split("+") if e and e not in ran])


def _stats(raw, overflowed):
    diverged = int(raw[DIVERGED_AT]) if raw[DIVERGED_AT] >= 0 else None
    steps = int(raw[STEPS])
    trace = raw[FIELDS:].reshape(-1, TRACE)[:steps] if raw.shape[0] > FIELDS else None
    return Stats(float(raw[LOSS]), float(raw[CORRECT]), int(raw[SAMPLES]), steps,
                 float(raw[WEIGHT]), diverged, float(raw[BAD_LOSS]), overflowed, trace=trace)


def _threads(threads):
    return int(threads) if threads else available_cores()


# the compiled functions the engine calls from Python (the others are called by these)
ENTRY_KERNELS = frozenset((units.units_worker, parts.train_serial, parts.train_parallel,
                           rows.rows_worker, parts.loss_and_grad_all,
                           infer.infer))


def _run(site, chosen, threads, engine, compiled, in_numpy):
    """``compiled()`` for engine "numba", ``in_numpy()`` (the reference) for "numpy" or while
    the compiled kernel is being compiled in the background; each under its thread limits.
    With ``in_numpy`` None the compiled kernel runs only if it is ready (in memory or in the
    cache), and is not compiled or requested: (None, "") when it is not."""
    if engine != "numpy":
        with _limits(chosen, threads, engine):
            ran, result = background.attempt(site, compiled, ENTRY_KERNELS,
                                             request=in_numpy is not None)
        if ran:
            return result, "numba"
        if in_numpy is None:
            return None, ""
    with _limits(chosen, threads, "numpy"):
        return in_numpy(), "numpy"


def _limits(chosen, threads, engine):
    """The thread counts of a call, set for its duration: the plan's for the compiled engine;
    the NumPy reference parallelises only inside BLAS, on every thread allowed."""
    if engine == "numpy":
        return thread_limits(1, _threads(threads))
    return thread_limits(chosen.threads, chosen.blas_threads)


def _weights(w, flat, n):
    """Per-sample weights as the compiled code takes them: a contiguous array of the model's
    dtype, empty for uniform weights (None or empty); otherwise one per row of X (n)."""
    if w is None or len(w) == 0:
        return flat[:0]
    w = np.ascontiguousarray(w, dtype=flat.dtype).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"w must hold one weight per row of X ({n}); got {w.shape[0]}.")
    return w


# With a guard, weights larger than this in magnitude count as diverged: a model whose weights
# reach it predicts inf or NaN a layer or two later (in float32), and none that learns gets near.
WEIGHT_LIMIT = 1e12


def train(net, state, batches, hyper, threads=None, engine="numba", guard=True, loss_limit=None,
          trace=False):
    """Train ``net`` in place on every minibatch of ``batches`` with the optimizer ``hyper``,
    continuing from ``state`` (advanced in place); returns :class:`Stats`, with each
    minibatch's statistics in ``Stats.trace`` when ``trace``.

    Runs on the fastest count of threads up to ``threads`` (default: all cores), found by
    timing the first minibatches of calls of this kind (:mod:`.tuner`); the count never changes
    the result. A non-finite loss stops training before that minibatch's update
    (``Stats.diverged_at``). With ``guard``, the parameters and the optimizer state are also put
    back as they were before the call when an update left the finite range, or beyond
    :data:`WEIGHT_LIMIT`, or the call's mean loss went above ``loss_limit`` while staying finite
    (``Stats.overflowed``); without it they are left as they are, unchecked.
    """
    saved = (net.flat.copy(), state.copy()) if guard else None
    if batches.batch_size < 1 or len(batches.order) == 0:
        raise ValueError("train needs a batch_size >= 1 and at least one row in order.")
    chosen = plan_training(_threads(threads), batches.batch_size, net.layers, batches.planned_rows)
    search = None if engine == "numpy" else _search(net, batches.batch_size, chosen)
    if search is not None:
        _compress_ahead(batches, net, chosen)
    raw = new_stats(-(-len(batches.order) // batches.batch_size) if trace else 0)
    with np.errstate(over="ignore", invalid="ignore"):
        if search is None:
            _, ran = _run("train", chosen, threads, engine,
                          lambda: train_batches(net, state, batches, hyper, raw),
                          lambda: reference.train_batches(net, state, batches, hyper, raw))
            state.step += int(raw[STEPS])
            stats = _stats(raw, False)._replace(engine=ran)
        else:
            stats = _train_timed(net, state, batches, hyper, chosen, threads, engine, search, raw)
    why = _blown_up(net.flat, stats, loss_limit) if guard else ""
    if why:
        net.flat[...] = saved[0]
        state.restore(saved[1])
    return stats._replace(overflowed=bool(why), why=why)


def _compress_ahead(batches, net, chosen):
    """Compress X for a call whose first layer will take its non-zeros, before any of its
    pieces is timed: a one-off cost of a few steps, not the speed of a thread count. Only an X
    that :func:`train_batches` passes on as it is (the one ``batches.compressed`` then keeps)."""
    X, inputs = batches.X, batches.compressed
    if inputs is None or not _read_as_is(X, net.flat.dtype):
        return
    if chosen.scheme == "rows" and rows.takes_nonzeros(inputs, X, batches.order,
                                                       batches.batch_size):
        inputs.columns(X)                       # and its CSR
    elif chosen.scheme == "units" and units.takes_nonzeros(
            inputs, X, int(net.layers[1]), chosen.parts, min(batches.batch_size, chosen.chunk)):
        inputs.rows(X)


def _read_as_is(X, dtype):
    """Whether the compiled schemes read X as it is: rows of unit stride in the model's dtype
    (callers that validate X pass it so); else :func:`train_batches` copies it."""
    return X.dtype == dtype and X.strides[1] == X.itemsize


def _kind(layers, batch_size, dtype, chosen):
    """(the kind of a training call, whose calls share one timed thread count; the most threads
    it may run on)."""
    most = min(chosen.threads, max_threads())
    return (tuple(layers), int(batch_size), np.dtype(dtype).str, chosen.scheme, chosen.chunk,
            chosen.parts, most), most


def _search(net, batch_size, chosen):
    """The :class:`.tuner.Search` of a training call's thread count, or None (nothing to time)."""
    return tuner.search_for(*_kind(net.layers, batch_size, net.flat.dtype, chosen))


def _train_timed(net, state, batches, hyper, chosen, threads, engine, search, raw):
    """:func:`train`'s work in pieces of whole minibatches, each on the thread count ``search``
    asks for and timed for it. Neither the cut nor the count changes a bit: the pieces add to
    one running sum of statistics ``raw`` (new), as one call would. Returns the call's
    :class:`Stats`."""
    size = batches.batch_size
    n_batches = -(-len(batches.order) // size)
    done, engines, ran = 0, "", "numba"
    while done < n_batches and raw[DIVERGED_AT] < 0:
        if ran == "numba":
            count, steps, timed = search.piece(n_batches - done)
        else:       # the kernel is compiling: the rest on the reference, in one piece
            steps, timed = n_batches - done, False
        piece = batches._replace(order=batches.order[done * size:(done + steps) * size],
                                 plan_rows=batches.planned_rows)
        before = int(raw[STEPS])
        started = time.perf_counter()
        # another count than the best may need a kernel of its own (the serial build): when it
        # is not compiled yet, that count loses, nothing of the piece has run, and nothing is
        # compiled for it (a search is not worth a compile); its own site, so that the throttle
        # of retries (background.RETRY_SECONDS) does not hold back the best count's pieces
        rival = timed and count != search.best
        on_numpy = None if rival else (
            lambda: reference.train_batches(net, state, piece, hyper, raw))
        _, ran = _run(f"train on {count}" if rival else "train", chosen._replace(threads=count),
                      threads, engine, lambda: train_batches(net, state, piece, hyper, raw),
                      on_numpy)
        if not ran:
            search.missing(count)
            ran = "numba"
            continue
        made = int(raw[STEPS]) - before
        if ran == "numba":
            search.record(count, time.perf_counter() - started, made, whole=steps == n_batches)
        state.step += made
        if raw[DIVERGED_AT] >= 0:
            raw[DIVERGED_AT] += done          # counted in the piece: count it in the call
        done += steps
        engines = _joined(engines, ran)
    return _stats(raw, False)._replace(engine=engines)


def _blown_up(flat, stats, loss_limit):
    """Why training left a sane range, or "": weights not finite, weights above WEIGHT_LIMIT,
    or a finite mean loss above ``loss_limit``."""
    if not np.isfinite(flat).all():
        return "the weights overflowed to inf/nan"
    largest = float(np.abs(flat).max(initial=0.0))
    if largest > WEIGHT_LIMIT:
        return f"the weights grew to {largest:.3g}"
    if (loss_limit is not None and stats.diverged_at is None and stats.samples
            and stats.mean_loss > loss_limit):
        return f"the loss exploded to {stats.mean_loss:.3g}"
    return ""


@contextmanager
def session(layers, batch_size, threads=None, dtype=np.float64):
    """Hold the thread settings of training calls on minibatches of ``batch_size`` rows for the
    body: a loop that calls :func:`train` once per minibatch (scikit-learn's) then sets them once,
    to the count timed for such calls (:mod:`.tuner`) once one is found. Yields the
    :class:`Plan`."""
    chosen = plan_training(_threads(threads), batch_size, layers, batch_size)
    timed = tuner.found(_kind(layers, batch_size, dtype, chosen)[0])
    chosen = chosen._replace(threads=timed or chosen.threads)
    with thread_limits(chosen.threads, chosen.blas_threads):
        yield chosen


def train_batches(net, state, batches, hyper, stats=None):
    """The compiled twin of :func:`fastmlp.reference.train_batches`: every minibatch of
    ``batches`` in one compiled call, on the Numba threads in force, in the scheme
    :func:`.plan.plan_training` picks. Returns the raw statistics (see :mod:`.minibatch`): new
    ones, or ``stats`` added to (a running sum over calls, the same bits as one call's); does
    not advance ``state.step``."""
    import numba

    from .lowlevel.blas import blas_handle

    flat, layers = net.flat, net.layers
    X = batches.X
    if not _read_as_is(X, flat.dtype):          # the units scheme reads X's rows by address
        X = np.ascontiguousarray(X, dtype=flat.dtype)
    data = Data(X, batches.y, batches.Y, _weights(batches.w, flat, X.shape[0]), batches.order)
    # the plan's pieces, on at most the Numba threads in force
    how = plan_training(numba.get_num_threads(), batches.batch_size, layers, batches.planned_rows)
    # a minibatch taken in pieces (units) or blocks (rows) adds dW up over them: no fused step
    in_pieces = how.scheme == "rows" or (how.scheme == "units" and how.chunk < batches.batch_size)
    slots = slots_for(flat, layers, hyper, state, can_fuse(hyper) and not in_pieces)
    stats = new_stats() if stats is None else stats
    args = (how, Net(flat, offsets(layers), np.int64(net.act), np.int64(net.head)), data,
            int(batches.batch_size), slots, hyper, int(state.step), blas_handle(), stats)
    if how.scheme == "parts":
        parts.train_parts(*args)
    else:
        (rows.train_rows if how.scheme == "rows" else units.train_units)(
            *args, inputs=batches.compressed)
    return stats


def loss_and_grad(net, X, y, Y, grad, w=None, threads=None, engine="numba"):
    """Mean loss of all rows of X and its gradient, written into the flat buffer ``grad``
    (same layout as ``net.flat``); the parameters are not changed. Returns (loss, correct
    count). With per-sample weights ``w`` it is the weighted mean sum_i w_i loss_i / sum_i w_i."""
    flat = net.flat
    if grad.shape != flat.shape or grad.dtype != flat.dtype:
        raise ValueError(f"grad must be a {flat.dtype} buffer of shape {flat.shape}; got "
                         f"{grad.dtype} {grad.shape}.")
    X = np.ascontiguousarray(X, dtype=flat.dtype)
    w = _weights(w, flat, X.shape[0])
    total = float(X.shape[0]) if w.shape[0] == 0 else float(w.sum(dtype=np.float64))
    scale = 1.0 / total if total > 0 else 0.0
    chosen = plan_training(_threads(threads), X.shape[0], net.layers, X.shape[0])

    def compiled():
        from .lowlevel.blas import blas_handle

        args = (Net(flat, offsets(net.layers), np.int64(net.act), np.int64(net.head)),
                Data(X, y, Y, w, np.zeros(0, np.int64)))
        if chosen.scheme == "rows":     # narrow nets: blocks of rows on every thread
            loss, correct = rows.loss_and_grad_rows(chosen, *args, grad, blas_handle())
        else:
            loss, correct = parts.loss_and_grad_all(*args, scale, grad, blas_handle())
        return (loss / X.shape[0] if w.shape[0] == 0 else loss * scale), correct

    def in_numpy():
        loss_sum, correct = reference.loss_and_grad_all(net, X, y, Y, w, grad)
        return loss_sum * scale, correct

    return _run("loss_and_grad", chosen, threads, engine, compiled, in_numpy)[0]


def _infer(net, X, targets, out, want_loss, threads, engine, chunk):
    chosen = plan_inference(_threads(threads), chunk, net.layers)

    def compiled():
        from .lowlevel.blas import blas_handle

        return infer.run_infer(chosen.parts,
                               Net(net.flat, offsets(net.layers), np.int64(net.act),
                                   np.int64(net.head)),
                               np.ascontiguousarray(X, dtype=net.flat.dtype), targets, chunk, out,
                               want_loss, blas_handle())

    def in_numpy():
        if want_loss:
            return reference.evaluate_batches(net, X, *targets, chunk)
        out[...] = reference.predict_batches(net, X, chunk)
        return 0.0, 0.0

    return _run("infer", chosen, threads, engine, compiled, in_numpy)[0]


PREDICT_CHUNK = 4096   # rows per thread at a time in inference: bounds the activations held


def predict(net, X, threads=None, engine="numba", chunk=PREDICT_CHUNK):
    """The head's output (n, n_out) for every row of X (``net.head`` HEAD_IDENTITY: the logits)."""
    out = np.empty((X.shape[0], net.layers[-1]), dtype=net.flat.dtype)
    _infer(net, X, (np.zeros(0, np.int64), np.zeros((0, net.layers[-1]), net.flat.dtype),
                    net.flat[:0]), out, False, threads, engine, chunk)
    return out


def evaluate(net, X, y, Y, w=None, threads=None, engine="numba", chunk=PREDICT_CHUNK):
    """(summed loss, correct count) over all rows, the loss weighted by ``w`` when given."""
    empty = np.empty((0, net.layers[-1]), dtype=net.flat.dtype)
    w = _weights(w, net.flat, X.shape[0])
    loss, correct = _infer(net, X, (y, Y, w), empty, True, threads, engine, chunk)
    return loss, correct
