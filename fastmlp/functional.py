"""A functional API on plain NumPy arrays, for code that writes its training loop by hand.

``params`` is a list of ``(W, b)`` pairs, one per layer: W is (n_in, n_out), row-major, and
b is (n_out,). X is (n_samples, n_features), one sample per row. Class labels ``y`` are class
indices 0..n_out-1; regression targets (``output="identity"``) are (n_samples, n_out) or
(n_samples,) for one output; multilabel targets (``output="logistic"``) are a 0/1 matrix
(n_samples, n_out).

    >>> from fastmlp import functional as F
    >>> params = F.init([64, 32, 10], seed=0)                      # doctest: +SKIP
    >>> for epoch in range(10):                                     # doctest: +SKIP
    ...     F.train_epoch(params, X, y, lr=0.1, batch_size=64, rng=epoch)
    >>> F.predict(params, X_test)                                   # doctest: +SKIP

or step by step, as a from-scratch notebook does::

    fwd = F.forward(params, X)                    # activations of every layer + output
    grads = F.backward(params, fwd, y)            # [(dW, db), ...], mean over the rows
    F.step(params, grads, lr=0.1)                 # W -= lr * dW, in place

Every function runs the compiled code of :class:`fastmlp.MLP`: ``forward`` and ``backward`` call
its Numba kernels layer by layer (``engine.kernels.dense_forward`` / ``dense_backward`` /
``head_backward``), ``loss_and_grad``, ``train_epoch`` and ``predict`` call the engine
(``engine.loss_and_grad`` / ``train`` / ``predict``), one compiled call each. On a first run, a
kernel missing from Numba's cache is compiled in the background while its NumPy twin runs
(:mod:`fastmlp.engine.background`).

Copies, honestly:
- ``init`` returns views into one flat buffer (fastmlp's layout). Given such params,
  ``train_epoch``, ``loss_and_grad`` and ``predict`` hand that buffer to the engine: no copy.
- Any other list of arrays (say, converted from a notebook) is packed into a temporary flat
  buffer on each of those calls (one copy of the parameters, which is small next to the data);
  ``train_epoch`` then writes the trained values back into your arrays, in place, so your
  references stay valid either way.
- ``forward`` and ``backward`` read your W and b where they are (a non-C-contiguous array,
  e.g. a transposed view, is copied for the call). ``step`` updates your arrays in place.
- X is used as it is when it is a C-contiguous array of the parameters' dtype; otherwise it is
  converted once per call (as ``MLP.fit`` does). Labels and targets are converted likewise.
"""

from typing import List, NamedTuple

import numpy as np

from . import engine
from .codes import ACT_IDENTITY, ACTIVATIONS, HEAD_IDENTITY, HEAD_LOGISTIC, HEADS, Y_HEADS, code_of
from .engine import background, kernels
from .engine.lowlevel.blas import blas_handle
from .engine.lowlevel.threads import available_cores, thread_limits
from .model import BATCH_SIZE, TrainingDiverged
from .params import init_params, layer_offsets, layer_views, param_count
from .reference import twins
from .validation import (check_batch_size, check_features, check_label_matrix, check_labels,
                         check_layers, check_number, check_same_length, check_targets)

__all__ = ["Forward", "init", "forward", "backward", "loss_and_grad", "step", "train_epoch",
           "predict"]


class Forward(NamedTuple):
    """What :func:`forward` computed and :func:`backward` needs.

    ``activations`` is [X, a_1, ..., a_{L-1}, z_L]: the input, each hidden layer's output and
    the last layer's pre-activation (logits); ``output`` is the head applied to z_L
    (softmax probabilities, sigmoids, or z_L itself for ``output="identity"``).
    """

    activations: List[np.ndarray]
    output: np.ndarray


def init(layers, init="he", seed=0, dtype="float32"):
    """New parameters for layer widths ``layers`` (input first, e.g. [784, 128, 10]).

    ``init``: "he" (W ~ N(0, 2/n_in), b = 0), "glorot", "uniform" (U(-0.5, 0.5) for W and b, as
    classic notebooks do) or "normal". Returns a list of (W, b) that are views into one flat
    buffer, which the engine then trains without copying.
    """
    layers = check_layers(layers)
    dtype = _dtype_name(dtype)
    check_number(seed, "seed", low=0, integer=True)
    init_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])  # as MLP(seed=)
    flat = init_params(layers, init, init_rng, dtype)
    return [(W, b) for W, b in layer_views(flat, layers)]


def forward(params, X, activation="relu", output="softmax", threads=None):
    """Run the network on X and keep every layer's activations: returns :class:`Forward`."""
    layers, dtype = _check_params(params)
    act, head = _codes(activation, output, layers)
    X = check_features(X, "X", layers[0], dtype)
    blas = blas_handle()

    def run(k):
        acts = [X]
        for l, (W, b) in enumerate(params):
            out = np.empty((X.shape[0], W.shape[1]), dtype=dtype)
            k.dense_forward(out, acts[-1], np.ascontiguousarray(W), np.ascontiguousarray(b),
                            act if l < len(params) - 1 else ACT_IDENTITY, blas)
            acts.append(out)
        result = np.empty_like(acts[-1])
        k.head_forward(result, acts[-1], head)
        return Forward(acts, result)

    with thread_limits(1, threads or available_cores()):
        return _compiled_or_twins("forward", run)


def backward(params, fwd, y, activation="relu", output="softmax", threads=None):
    """Gradients of the mean loss over the rows of ``fwd`` (from :func:`forward` with the same
    params): a list of (dW, db) shaped like ``params``. The loss is the head's: cross-entropy
    for "softmax", half squared error for "sigmoid" (on one-hot targets) and "identity", binary
    cross-entropy summed over the labels for "logistic"."""
    layers, dtype = _check_params(params)
    act, head = _codes(activation, output, layers)
    acts = _check_forward(fwd, layers, dtype)
    z = acts[-1]
    n = z.shape[0]
    y_idx, Y = _targets(y, layers, head, dtype)
    check_same_length(z, Y if head in Y_HEADS else y_idx, "X", "y")
    blas = blas_handle()

    def run(k):
        grads = [None] * len(params)
        dout = np.empty_like(z)
        k.head_backward(dout, z, y_idx, Y, np.zeros(0, dtype), head, dtype.type(1.0 / n))
        for l in range(len(params) - 1, -1, -1):
            W, b = params[l]
            dW = np.empty(W.shape, dtype=dtype)
            db = np.empty(b.shape, dtype=dtype)
            dinp = np.empty(acts[l].shape if l > 0 else (0, W.shape[0]), dtype=dtype)
            k.dense_backward(dinp, dW, db, acts[l], np.ascontiguousarray(W), dout, l > 0, blas)
            if l > 0:
                k.activation_backward(dinp, acts[l], act)   # dz of layer l - 1, in place
            grads[l] = (dW, db)
            dout = dinp
        return grads

    with thread_limits(1, threads or available_cores()):
        return _compiled_or_twins("backward", run)


# the compiled kernels forward and backward call, layer by layer
_LAYER_KERNELS = frozenset((kernels.dense_forward, kernels.head_forward, kernels.head_backward,
                            kernels.dense_backward, kernels.activation_backward))


def _compiled_or_twins(site, run):
    """``run(kernels)``; while one of the kernels is missing from Numba's cache and being
    compiled in the background (:mod:`fastmlp.engine.background`), ``run`` again with each
    kernel call compiled or, if that kernel is not ready, its NumPy twin (the same math), so
    that every missing kernel is asked for at once. ``run`` only writes arrays it allocates,
    so a run stopped before a kernel can start again."""
    ran, result = background.attempt(site, lambda: run(kernels), _LAYER_KERNELS)
    return result if ran else run(_KernelOrTwin())


class _KernelOrTwin:
    """The layer kernels one call at a time: compiled, or the twin while it compiles."""

    def __getattr__(self, name):
        compiled, twin = getattr(kernels, name), getattr(twins, name)

        def call(*args):
            ran, result = background.attempt(name, lambda: compiled(*args), _LAYER_KERNELS)
            return result if ran else twin(*args)
        return call


def loss_and_grad(params, X, y, activation="relu", output="softmax", threads=None):
    """(mean loss over the rows of X, [(dW, db), ...]) in one compiled call of the engine."""
    layers, dtype = _check_params(params)
    act, head = _codes(activation, output, layers)
    X = check_features(X, "X", layers[0], dtype)
    y_idx, Y = _targets(y, layers, head, dtype)
    check_same_length(X, Y if head in Y_HEADS else y_idx)
    flat = _shared_flat(params, layers, dtype)
    flat = _pack(params, layers, dtype) if flat is None else flat
    grad = np.empty_like(flat)
    loss, _ = engine.loss_and_grad(engine.Network(flat, tuple(layers), act, head), X, y_idx, Y,
                                   grad, threads=threads)
    return float(loss), [(dW, db) for dW, db in layer_views(grad, layers)]


def step(params, grads, lr, weight_decay=0.0):
    """One SGD step, in place: W -= lr * (dW + weight_decay * W), b -= lr * db.

    An elementwise NumPy update on your arrays (the same formula as the engine's SGD step).
    """
    layers, dtype = _check_params(params)
    lr = check_number(lr, "lr", low=0, low_open=True)
    weight_decay = check_number(weight_decay, "weight_decay", low=0)
    if not hasattr(grads, "__len__") or len(grads) != len(params):
        raise ValueError(f"grads needs one (dW, db) pair per layer ({len(params)}); got "
                         f"{len(grads) if hasattr(grads, '__len__') else type(grads).__name__}.")
    for l, ((W, b), pair) in enumerate(zip(params, grads)):
        if len(pair) != 2 or np.shape(pair[0]) != W.shape or np.shape(pair[1]) != b.shape:
            raise ValueError(f"grads[{l}] must be (dW, db) of shapes {W.shape} and {b.shape}.")
    for (W, b), (dW, db) in zip(params, grads):
        if weight_decay:
            W *= dtype.type(1 - lr * weight_decay)
        W -= dtype.type(lr) * np.asarray(dW, dtype=dtype)
        b -= dtype.type(lr) * np.asarray(db, dtype=dtype)


def train_epoch(params, X, y, lr, batch_size=BATCH_SIZE, *, activation="relu", output="softmax",
                rng=None, shuffle=True, weight_decay=0.0, threads=None):
    """One epoch of minibatch SGD through the compiled engine, updating ``params`` in place.

    The rows are visited in a permutation drawn from ``rng`` (a seed or a
    ``numpy.random.Generator``) unless ``shuffle=False``; ``batch_size=None`` is one
    full-batch step. ``weight_decay`` is L2 on the weights (not the biases), added to the
    gradient. Returns {"loss": mean training loss, "accuracy": ...} (no accuracy for
    ``output="identity"``; subset accuracy for "logistic"), measured on each minibatch before its
    update, as ``MLP.fit`` logs.
    Raises :class:`fastmlp.TrainingDiverged` when the loss stops being finite or an update
    overflows the weights; params then hold the weights before the bad minibatch, or those from
    before the epoch if an update overflowed.
    """
    layers, dtype = _check_params(params)
    act, head = _codes(activation, output, layers)
    X = check_features(X, "X", layers[0], dtype)
    y_idx, Y = _targets(y, layers, head, dtype)
    check_same_length(X, Y if head in Y_HEADS else y_idx)
    lr = check_number(lr, "lr", low=0, low_open=True)
    weight_decay = check_number(weight_decay, "weight_decay", low=0)
    n = X.shape[0]
    batch = check_batch_size(batch_size, n)
    for l, (W, b) in enumerate(params):
        if not (W.flags.writeable and b.flags.writeable):
            raise ValueError(f"params[{l}] is read-only; train_epoch updates the arrays in place.")
    if shuffle:
        order = np.random.default_rng(rng).permutation(n).astype(np.int64)
    else:
        order = np.arange(n, dtype=np.int64)
    shared = _shared_flat(params, layers, dtype)
    flat = _pack(params, layers, dtype) if shared is None else shared
    # plain SGD keeps no optimizer state; an update that overflows puts the epoch's weights back
    stats = engine.train(engine.Network(flat, tuple(layers), act, head),
                         engine.OptimizerState("sgd", 0, dtype),
                         engine.Batches(X, y_idx, Y, order, batch),
                         engine.Hyper.of("sgd", lr, weight_decay=weight_decay), threads)
    if shared is None:
        for (W, b), (W_new, b_new) in zip(params, layer_views(flat, layers)):
            W[...] = W_new
            b[...] = b_new
    if stats.diverged_at is not None:
        raise TrainingDiverged(f"training diverged at step {stats.diverged_at + 1}: "
                               f"loss={stats.bad_loss}; lower the learning rate (now {lr}).")
    if stats.overflowed:
        raise TrainingDiverged(f"training diverged at step {stats.steps}: {stats.why} "
                               f"(loss={stats.loss_sum / stats.samples}); lower the "
                               f"learning rate (now {lr}). The weights from before the epoch are "
                               f"kept.")
    result = {"loss": stats.loss_sum / stats.samples}
    if head != HEAD_IDENTITY:
        result["accuracy"] = stats.accuracy
    return result


def predict(params, X, activation="relu", output="softmax", threads=None):
    """Class indices (n,) for "softmax" / "sigmoid" heads; values (n, n_out) for "identity"; the
    0/1 label matrix (n, n_out), 1 where the logit is above 0, for "logistic"."""
    layers, dtype = _check_params(params)
    act, head = _codes(activation, output, layers)
    X = check_features(X, "X", layers[0], dtype)
    flat = _shared_flat(params, layers, dtype)
    flat = _pack(params, layers, dtype) if flat is None else flat
    out = engine.predict(engine.Network(flat, tuple(layers), act,
                                        HEAD_IDENTITY if head == HEAD_LOGISTIC else head), X, threads)
    if head == HEAD_LOGISTIC:
        return (out > 0).astype(np.int64)
    return out if head == HEAD_IDENTITY else out.argmax(axis=1)


# ---------------------------------------------------------------- checks and packing

def _dtype_name(dtype):
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = str(dtype)
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype={dtype!r} is not supported; choose 'float32' or 'float64'.")
    return name


def _check_params(params):
    """(layer widths, dtype) of a list of (W, b) pairs, checked as MLP.params checks them."""
    if isinstance(params, np.ndarray) or not isinstance(params, (list, tuple)) or not params:
        raise TypeError("params must be a non-empty list of (W, b) pairs, one per layer, "
                        "e.g. fastmlp.functional.init([64, 32, 10]).")
    dtype = None
    widths = []
    for l, pair in enumerate(params):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"params[{l}] must be a (W, b) pair.")
        W, b = pair
        if not isinstance(W, np.ndarray) or not isinstance(b, np.ndarray):
            raise TypeError(f"params[{l}] must hold NumPy arrays; got {type(W).__name__}, {type(b).__name__}.")
        if W.ndim != 2:
            raise ValueError(f"params[{l}] W must be 2-D (n_in, n_out); got shape {W.shape}.")
        if l and W.shape[0] != widths[-1]:
            hint = (" W is (n_in, n_out) here: a column-major W of shape (n_out, n_in) becomes W.T."
                    if W.shape[1] == widths[-1] else "")
            raise ValueError(f"params[{l}] W has {W.shape[0]} inputs but layer {l - 1} has "
                             f"{widths[-1]} outputs.{hint}")
        if b.shape != (W.shape[1],):
            hint = (" A column vector b of shape (n_out, 1), as in column-major notebooks, "
                    "becomes b.ravel()." if b.ndim == 2 else "")
            raise ValueError(f"params[{l}] b has shape {b.shape}; W is {W.shape}, so b must be "
                             f"({W.shape[1]},).{hint}")
        for name, a in (("W", W), ("b", b)):
            if a.dtype.name not in ("float32", "float64"):
                raise TypeError(f"params[{l}] {name} has dtype {a.dtype}; use float32 or float64.")
            if not np.isfinite(a).all():
                raise ValueError(f"params[{l}] {name} holds NaN or Inf; training diverged or the "
                                 f"arrays are damaged: reinitialise them (init) or use earlier ones.")
            if dtype is None:
                dtype = a.dtype
            elif a.dtype != dtype:
                raise TypeError(f"params mix {dtype} and {a.dtype}; use one dtype for every array.")
        if not l:
            widths.append(W.shape[0])
        widths.append(W.shape[1])
    return check_layers(widths), dtype


def _check_forward(fwd, layers, dtype):
    """The activations of ``fwd``, checked against the params' widths and dtype: the compiled
    backward reads them without bounds checks. Returns them C-contiguous."""
    if not isinstance(fwd, Forward) or not isinstance(fwd.activations, (list, tuple)) \
            or len(fwd.activations) != len(layers):
        raise TypeError("fwd must be the Forward that forward(params, X, ...) returned for these "
                        "params.")
    if np.shape(fwd.activations[0])[:1] == (0,):
        raise ValueError("fwd has no rows: run forward on at least one sample.")
    acts = []
    for l, (a, width) in enumerate(zip(fwd.activations, layers)):
        if not isinstance(a, np.ndarray) or a.ndim != 2 or a.shape[1] != width \
                or a.shape[0] != fwd.activations[0].shape[0]:
            raise ValueError(f"fwd.activations[{l}] has shape {np.shape(a)}; these params need "
                             f"(n, {width}) with the same n in every layer. Pass the Forward "
                             f"that forward(params, X) returned.")
        if a.dtype != dtype:
            raise TypeError(f"fwd.activations[{l}] is {a.dtype} but the params are {dtype}; "
                            f"run forward with the same params.")
        if not np.isfinite(a).all():
            raise ValueError(f"fwd.activations[{l}] holds NaN or Inf.")
        acts.append(np.ascontiguousarray(a))
    return acts


def _codes(activation, output, layers):
    act = code_of(ACTIVATIONS, activation, "activation")
    head = code_of(HEADS, output, "output")
    if HEADS[head] == "softmax" and layers[-1] < 2:
        raise ValueError("output='softmax' needs at least 2 output units; use output='sigmoid'.")
    return act, head


def _targets(y, layers, head, dtype):
    """(class indices, targets): the one the head uses, the other empty."""
    n_out = layers[-1]
    if head == HEAD_IDENTITY:
        return np.zeros(0, dtype=np.int64), check_targets(y, n_out, "y", dtype)
    if head == HEAD_LOGISTIC:
        return np.zeros(0, dtype=np.int64), check_label_matrix(y, n_out, "y", dtype)
    labels = check_labels(y, "y")
    if labels.dtype.kind not in "biu" or labels.min() < 0 or labels.max() >= n_out:
        raise ValueError(f"y must hold class indices 0..{n_out - 1} (one per output unit); got "
                         f"labels from {labels.min()!r} to {labels.max()!r}. Map your labels to "
                         f"indices first, e.g. np.unique(y, return_inverse=True)[1].")
    return np.ascontiguousarray(labels, dtype=np.int64), np.zeros((0, n_out), dtype=dtype)


def _shared_flat(params, layers, dtype):
    """The flat buffer the params are views of, in fastmlp's layout, or None."""
    base = params[0][0].base
    if (not isinstance(base, np.ndarray) or base.ndim != 1 or base.dtype != dtype
            or not base.flags.c_contiguous or not base.flags.writeable
            or base.shape[0] != param_count(layers)):
        return None
    start, size = base.ctypes.data, base.itemsize
    for (W, b), (w0, b0, _, _) in zip(params, layer_offsets(layers)):
        if (W.base is not base or b.base is not base or not W.flags.c_contiguous
                or W.ctypes.data != start + w0 * size or b.ctypes.data != start + b0 * size):
            return None
    return base


def _pack(params, layers, dtype):
    """A new flat buffer holding a copy of the params, in fastmlp's layout."""
    flat = np.empty(param_count(layers), dtype=dtype)
    for (W, b), (W_dst, b_dst) in zip(params, layer_views(flat, layers)):
        W_dst[...] = W
        b_dst[...] = b
    return flat
