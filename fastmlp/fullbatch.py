"""Full-batch training: gradient descent and SciPy's L-BFGS on the loss of all the data at once.

    from fastmlp import MLP, fullbatch
    history = fullbatch.fit(MLP([784, 128, 10]), X, y, solver="lbfgs", max_iter=200)

The solver sees the data only through ``totals_at(flat)``: the loss and gradient summed over every
row (:class:`Totals`). Here they come from this process, a slice of rows at a time (so ``X`` may
be memory-mapped, :mod:`fastmlp.mapped`); :func:`fastmlp.dask.fit` sums them over the chunks of
a Dask array on the workers that hold them, and steps with the same :func:`minimize`.

The objective is the mean loss over rows plus ``0.5 * weight_decay * ||W||^2`` over the weights
(not the biases), as ``MLP.fit``'s weight decay; gradient descent steps
``flat -= lr * gradient`` once per iteration, which is ``MLP.fit(batch_size=None)`` with plain
SGD (equal to rounding: the sums are taken in another order).
"""

import time
from typing import NamedTuple

import numpy as np

from .mapped import MappedRows
from .model import TrainingDiverged, _engine, _pick
from .params import weight_mask
from .progress import echo
from .validation import check_number, check_rows, check_same_length

SOLVERS = ("lbfgs", "gd")


class Totals(NamedTuple):
    """Sums over rows at one point: the loss, its gradient (float64, the flat layout), the
    number of correct predictions and of rows."""
    loss_sum: float
    grad_sum: np.ndarray
    correct: float
    samples: int

    def __add__(self, other):
        return Totals(self.loss_sum + other.loss_sum, self.grad_sum + other.grad_sum,
                      self.correct + other.correct, self.samples + other.samples)


def network_at(model, flat):
    """The engine's network of ``model`` with the parameters ``flat`` (cast to its dtype)."""
    return model._network()._replace(flat=np.ascontiguousarray(flat, dtype=model.dtype))


def chunk_totals(net, X, y_idx, Y, threads=None, engine="numba"):
    """:class:`Totals` of the rows of X (in memory, or a MappedRows a slice at a time) with
    targets y_idx / Y (the one the head does not use empty)."""
    grad = np.empty_like(net.flat)
    total = Totals(0.0, np.zeros(net.flat.shape, np.float64), 0.0, 0)
    parts = X.blocks(net.flat.dtype, engine=engine) if isinstance(X, MappedRows) else [(0, X)]
    for start, part in parts:
        rows = slice(start, start + part.shape[0])
        m = part.shape[0]
        loss, correct = _engine().loss_and_grad(net, part, _pick(y_idx, rows), _pick(Y, rows),
                                                grad, None, threads, engine)
        # loss_and_grad gives means over the m rows
        total += Totals(float(loss) * m, grad.astype(np.float64) * m, float(correct), m)
    return total


def check_solver_args(solver, max_iter, lr, tol, weight_decay, solvers=SOLVERS):
    """The solver's arguments, checked: (solver, max_iter, lr, tol, weight_decay)."""
    if not isinstance(solver, str) or solver not in solvers:
        raise ValueError(f"solver={solver!r}; pick one of {', '.join(map(repr, solvers))}.")
    return (solver, check_number(max_iter, "max_iter", low=1, integer=True, example=100),
            check_number(lr, "lr", low=0, low_open=True, example=0.1),
            check_number(tol, "tol", low=0, example=1e-5),
            check_number(weight_decay, "weight_decay", low=0, example=1e-4))


def record_iteration(model, history, loss, accuracy, samples, seconds, verbose=0, **extra):
    """Add an iteration's logs to ``history`` and ``model.history_`` (as fit adds an epoch's)."""
    logs = {"epoch": len(model.history_.get("epoch", [])) + 1, "loss": float(loss)}
    if model.is_classifier:
        logs["accuracy"] = float(accuracy)
    logs.update(extra)
    logs["seconds"] = seconds
    logs["samples"] = int(samples)
    model._record(history, logs)
    if verbose:
        echo(f"iteration {logs['epoch']}  loss {loss:.6g}"
             + (f"  accuracy {accuracy:.4f}" if model.is_classifier else ""))


def minimize(model, totals_at, solver="lbfgs", max_iter=100, lr=0.1, tol=1e-5, weight_decay=0.0,
             verbose=0):
    """Train ``model`` in place on the objective that ``totals_at(flat) -> Totals`` sums, with
    ``solver`` "gd" (``max_iter`` steps of ``lr``, or until the gradient's largest entry is
    below ``tol``) or "lbfgs" (SciPy's L-BFGS-B, ``gtol=tol``). Returns the history as
    ``MLP.fit`` does, one entry per iteration: the loss and accuracy at the iteration's start
    (gd) or end (lbfgs)."""
    solver, max_iter, lr, tol, weight_decay = check_solver_args(solver, max_iter, lr, tol,
                                                                weight_decay)
    decay = weight_mask(model.layers) * weight_decay
    history = {}
    model.fitted_ = True
    started = [time.perf_counter()]

    def objective(x):
        totals = totals_at(x)
        n = max(totals.samples, 1)
        loss = totals.loss_sum / n + 0.5 * float(np.dot(decay * x, x))
        return loss, totals.grad_sum / n + decay * x, totals.correct / n, totals.samples

    def record(loss, accuracy, samples, **extra):
        record_iteration(model, history, loss, accuracy, samples,
                         time.perf_counter() - started[0], verbose, **extra)
        started[0] = time.perf_counter()

    x = model._flat.astype(np.float64)
    if solver == "gd":
        for _ in range(max_iter):
            loss, grad, accuracy, samples = objective(x)
            if not np.isfinite(loss) or not np.isfinite(grad).all():
                raise TrainingDiverged(f"full-batch gradient descent diverged at iteration "
                                       f"{len(history.get('epoch', [])) + 1}: loss={loss}; lower "
                                       f"the learning rate (now {lr}). The weights from before "
                                       f"are kept.")
            record(loss, accuracy, samples, lr=lr)
            if np.abs(grad).max(initial=0.0) < tol:
                break
            # in the model's dtype, as MLP.fit steps
            model._flat -= (lr * grad).astype(model.dtype)
            x = model._flat.astype(np.float64)
        return history

    import scipy.optimize

    last = {}

    def loss_and_grad(x):
        loss, grad, accuracy, samples = objective(x)
        last.update(x=x.copy(), loss=loss, accuracy=accuracy, samples=samples)
        if not np.isfinite(loss):
            grad = np.full_like(grad, np.nan)
        return loss, grad

    def iteration_done(xk):
        if not np.array_equal(last.get("x"), xk):      # L-BFGS-B evaluated at xk before this
            loss_and_grad(xk)
        record(last["loss"], last["accuracy"], last["samples"])

    result = scipy.optimize.minimize(loss_and_grad, x, method="L-BFGS-B", jac=True,
                                     callback=iteration_done,
                                     options={"maxiter": max_iter, "gtol": tol})
    if not np.isfinite(result.fun):
        raise TrainingDiverged(f"L-BFGS diverged: loss={result.fun}; the weights are kept as "
                               f"they were.")
    model._flat[...] = result.x.astype(model.dtype)
    return history


def fit(model, X, y, *, solver="lbfgs", max_iter=100, lr=0.1, tol=1e-5, weight_decay=0.0,
        verbose=0):
    """Train ``model`` (an :class:`~fastmlp.MLP`) on all of (X, y) at once in this process with
    ``solver`` "lbfgs" or "gd" (see :func:`minimize`); X may be memory-mapped. Returns the
    history (one entry per iteration) and adds it to ``model.history_``."""
    check_solver_args(solver, max_iter, lr, tol, weight_decay)
    X = check_rows(X, "X", model.layers[0], model.dtype)
    y_idx, Y = model._encode_targets(y, "y", fitting=True)
    check_same_length(X, Y if model._takes_Y else y_idx)
    return minimize(model, lambda flat: chunk_totals(network_at(model, flat), X, y_idx, Y,
                                                     model.threads, model.engine),
                    solver, max_iter, lr, tol, weight_decay, verbose)
