"""Train an :class:`~fastmlp.MLP` on a Dask array spread over a ``dask.distributed`` cluster.

    import dask.array as da
    from dask.distributed import Client
    import fastmlp.dask
    from fastmlp import MLP

    client = Client("scheduler-address:8786")      # a real cluster; Client() starts a local one
    X = da.from_zarr("images.zarr")                 # (n, features), chunked by rows
    y = da.from_zarr("labels.zarr")
    model = MLP([784, 128, 10])
    history = fastmlp.dask.fit(model, X, y, solver="lbfgs", max_iter=100)

As Spark MLlib trains its perceptron: the data stays on the workers, the driver holds the model.
Each chunk of rows is checked and converted once, on the worker that holds it. Then, per
iteration, the driver sends the weights with each chunk's task, each chunk's loss and gradient
summed over its rows are computed there by fastmlp's compiled engine, and the chunks' sums are
added pairwise on the workers in a fixed tree (chunk 0 + chunk 1, chunk 2 + chunk 3, ..., then
those pairs), so only the total comes back and the result does not depend on which worker
finished first. The driver steps with :func:`fastmlp.fullbatch.minimize`:

- ``solver="lbfgs"``: SciPy's L-BFGS-B on the full-batch loss;
- ``solver="gd"``: full-batch gradient descent, ``max_iter`` steps of ``lr``;
- ``solver="averaged-sgd"``: model averaging, not full-batch: in each of ``max_iter`` rounds
  every chunk's worker runs one epoch of minibatch SGD (``MLP.fit`` with ``batch_size``, ``lr``,
  ``weight_decay`` and ``fit_kwargs``) on its chunk from the current weights, and the new
  weights are the chunks' weights averaged, each weighted by its rows (the optimizer's state
  starts afresh each round).

Results depend on the seed, the data and its chunking only: each chunk's work runs on
``threads`` compiled threads (default 1: a worker's threads take chunks side by side).
"""

import copy
import time

import numpy as np

from .fullbatch import (
    SOLVERS,
    Totals,
    check_solver_args,
    chunk_totals,
    minimize,
    network_at,
    record_iteration,
)
from .model import MLP
from .validation import check_features, check_number

DASK_SOLVERS = SOLVERS + ("averaged-sgd",)


def _modules():
    try:
        import dask.array as da
        import distributed
    except ImportError as exc:
        raise ImportError(f"fastmlp.dask needs dask and distributed ({exc}); install them with "
                          f"pip install 'fastmlp[dask]'.") from None
    return da, distributed


def _client(client, distributed):
    if client is not None:
        return client
    try:
        return distributed.default_client()
    except ValueError:
        raise ValueError("fastmlp.dask.fit needs a dask.distributed client: start one first "
                         "(Client() for a cluster on this machine, "
                         "Client('scheduler-address:8786') for a running one) or pass "
                         "client=.") from None


def _template(model, threads):
    """A copy of ``model`` without its history and optimizer state: what the workers get."""
    template = MLP(**model.get_config())
    template.threads = threads
    template.classes_, template.target_ndim_ = model.classes_, model.target_ndim_
    template.fitted_ = True
    return template


def _rows_of(da, X, y):
    """X as a 2-D dask array chunked by rows only, and y as a dask array with X's row chunks."""
    X = X if isinstance(X, da.Array) else da.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    if any(np.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    X = X.rechunk({i: -1 for i in range(1, X.ndim)})
    if X.ndim > 2:
        X = X.reshape((X.shape[0], int(np.prod(X.shape[1:]))))
    if isinstance(y, da.Array):
        if any(np.isnan(c) for c in y.chunks[0]):
            y = y.compute_chunk_sizes()
        if y.shape[0] != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {y.shape[0]}; they must have "
                             f"one label per row.")
        y = y.rechunk({0: X.chunks[0], **{i: -1 for i in range(1, y.ndim)}})
    else:
        y = np.asarray(y)
        if len(y) != X.shape[0]:
            raise ValueError(f"X has {X.shape[0]} samples but y has {len(y)}; they must have "
                             f"one label per row.")
        y = da.from_array(y, chunks=(X.chunks[0],) + y.shape[1:])
    return X, y


def _prepare_chunk(template, X, y):
    """A chunk as the engine takes it, checked and converted on its worker: (X, y_idx, Y, y)."""
    X = check_features(X, "X", template.layers[0], template.dtype)
    y_idx, Y = template._encode_targets(y)
    return X, y_idx, Y, y


def _totals(template, flat, chunk):
    """The chunk's :class:`Totals` at the parameters ``flat``."""
    X, y_idx, Y, _ = chunk
    return chunk_totals(network_at(template, flat), X, y_idx, Y, template.threads,
                        template.engine)


def _local_epoch(template, flat, chunk, round_, index, batch_size, lr, fit_kwargs):
    """One epoch of minibatch training on the chunk from ``flat``: Totals whose "gradient" is
    the new weights times the chunk's rows (for the weighted average), with the epoch's loss."""
    X, _, _, y = chunk
    model = copy.deepcopy(template)
    model._flat = np.array(flat, dtype=model.dtype)
    model._rng = np.random.default_rng([model.seed, round_, index])
    logs = model.fit(X, y, epochs=1, batch_size=batch_size, lr=lr, **fit_kwargs)
    n = X.shape[0]
    return Totals(logs["loss"][-1] * n, model._flat.astype(np.float64) * n,
                  logs.get("accuracy", [0.0])[-1] * n, n)


def _add(a, b):
    return a + b


def tree_sum(client, futures):
    """The sum of ``futures`` added pairwise in a fixed order on the workers: (0+1)+(2+3)..."""
    level = list(futures)
    while len(level) > 1:
        pairs = [client.submit(_add, level[i], level[i + 1], pure=False)
                 for i in range(0, len(level) - 1, 2)]
        level = pairs + level[len(level) - len(level) % 2:]
    return level[0]


def fit(model, X, y, *, solver="lbfgs", max_iter=100, client=None, lr=0.1, tol=1e-5,
        weight_decay=0.0, batch_size=32, fit_kwargs=None, threads=1, verbose=0):
    """Train ``model`` on the Dask arrays (X, y) on the cluster of ``client`` (default: the
    current one); returns the history as ``MLP.fit`` does (one entry per iteration or round) and
    adds it to ``model.history_``. See the module's documentation for the solvers;
    ``lr``/``tol``/``weight_decay`` as in :func:`fastmlp.fullbatch.minimize`, ``batch_size`` and
    ``fit_kwargs`` for "averaged-sgd". X and y may also be NumPy arrays, sent to the cluster
    in ``dask.array.asarray``'s chunks; y takes X's row chunks."""
    da, distributed = _modules()
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a fastmlp.MLP; got {type(model).__name__}.")
    solver, max_iter, lr, tol, weight_decay = check_solver_args(solver, max_iter, lr, tol,
                                                                weight_decay, DASK_SOLVERS)
    threads = check_number(threads, "threads", low=1, integer=True, example=1)
    batch_size = check_number(batch_size, "batch_size", low=1, integer=True, example=32)
    fit_kwargs = dict(fit_kwargs or {})
    taken = {"epochs", "batch_size", "lr", "weight_decay"} & set(fit_kwargs)
    if taken:
        raise ValueError(f"fit_kwargs may not set {sorted(taken)}: averaged-sgd runs one epoch "
                         f"per round; pass batch_size=, lr= and weight_decay= to "
                         f"fastmlp.dask.fit.")
    fit_kwargs["weight_decay"] = weight_decay     # averaged-sgd's local epochs decay as fit's
    client = _client(client, distributed)
    X, y = _rows_of(da, X, y)
    _targets_on_driver(da, model, y)

    template = client.scatter(_template(model, threads), broadcast=True)
    raw = client.compute(list(X.to_delayed().ravel())), client.compute(list(y.to_delayed().ravel()))
    chunks = [client.submit(_prepare_chunk, template, xb, yb) for xb, yb in zip(*raw)]
    distributed.wait(chunks)
    starts = np.r_[0, np.cumsum(X.chunks[0])]
    for i, chunk in enumerate(chunks):
        if chunk.status == "error":
            exc = chunk.exception()
            raise type(exc)(f"chunk {i} (rows {starts[i]} to {starts[i + 1] - 1}): {exc}") from None
    del raw

    def weights(flat):
        # sent inside each chunk's task: one message per task instead of a scatter first (a
        # round trip fewer; docs/performance.md, "fastmlp.dask: one round per iteration")
        return np.ascontiguousarray(flat, dtype=model.dtype)

    if solver != "averaged-sgd":
        def totals_at(flat):
            at = weights(flat)
            return tree_sum(client, [client.submit(_totals, template, at, c, pure=False)
                                     for c in chunks]).result()

        return minimize(model, totals_at, solver, max_iter, lr, tol, weight_decay, verbose)

    history = {}
    model.fitted_ = True
    for round_ in range(max_iter):
        started = time.perf_counter()
        at = weights(model._flat)
        total = tree_sum(client, [
            client.submit(_local_epoch, template, at, c, round_, i, batch_size, lr, fit_kwargs,
                          pure=False)
            for i, c in enumerate(chunks)]).result()
        model._flat[...] = (total.grad_sum / total.samples).astype(model.dtype)
        n = max(total.samples, 1)
        record_iteration(model, history, total.loss_sum / n, total.correct / n, total.samples,
                         time.perf_counter() - started, verbose, lr=lr)
    return history


def _targets_on_driver(da, model, y):
    """Fix the model's classes (or target shape) from y before the workers encode their chunks:
    a classifier's classes from the labels of every chunk."""
    if model.is_classifier and model.output != "logistic":
        if model.classes_ is None:
            model._encode_targets(da.unique(y).compute(), "y", fitting=True)
    elif model.target_ndim_ is None or model.output == "logistic":
        model._encode_targets(y[:1].compute(), "y", fitting=True)
