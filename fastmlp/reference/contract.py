"""The engine contract in NumPy: the twins of fastmlp.engine.train_batches and of the engine's
loss-and-gradient, evaluation and prediction (``engine="numpy"``)."""

import numpy as np

from ..codes import ACTIVATIONS, HEADS
from ..params import layer_views, weight_mask
from .ops import (backward, forward, head_loss_and_grad, head_takes_Y, predict_output,
                  subset_correct)
from .twins import optimizer_update

__all__ = ["evaluate_batches", "loss_and_grad_all", "predict_batches", "train_batches"]



def train_batches(net, state, batches, hyper, stats=None):
    """Train on the minibatches ``order[k*B:(k+1)*B]`` in turn (the last one may be shorter):
    the twin of :func:`fastmlp.engine.train_batches`, with the same arguments (see
    :class:`fastmlp.engine.Network`, ``Batches``, ``Hyper``, ``OptimizerState``).

    ``net.flat`` and the optimizer state are updated in place (``state.step`` is not: the
    caller adds the steps made). Per-sample weights make each minibatch's loss their weighted
    mean. Returns the statistics as float64 [sum of batch loss * batch weight, correct
    predictions, samples, batches, index of the first batch whose loss was not finite (it made
    no update and training stopped there) or -1, that batch's loss, weight of the samples]:
    new, or ``stats`` continued (sums running on from an earlier call's, in place). A longer
    ``stats`` also traces each minibatch, where it has room: [loss * weight, correct, samples,
    weight] of the run's minibatch s at ``stats[7 + 4 * s:]``.
    """
    act, head = ACTIVATIONS[net.act], HEADS[net.head]
    flat, layers = net.flat, net.layers
    X, y, Y, order, batch_size, w = (batches.X, batches.y, batches.Y, batches.order,
                                      batches.batch_size, batches.w)
    dtype = flat.dtype.type
    params = layer_views(flat, layers)
    decay = (weight_mask(layers) * hyper.weight_decay).astype(flat.dtype) if hyper.weight_decay else None
    weighted = w is not None and len(w) > 0
    n_batches = -(-len(order) // batch_size)
    stats = np.array([0, 0, 0, 0, -1, 0, 0], dtype=np.float64) if stats is None else stats
    loss_sum, correct, samples, steps, _, _, weight = (float(v) for v in stats[:7])
    for k in range(n_batches):
        idx = order[k * batch_size:(k + 1) * batch_size]
        xb = X[idx].astype(dtype, copy=False)
        takes_Y = head_takes_Y(head)
        yb = y if takes_Y else y[idx]
        Yb = Y[idx].astype(dtype, copy=False) if takes_Y else Y
        wb = np.asarray(w, dtype=flat.dtype)[idx] if weighted else None
        batch_weight = float(np.sum(wb, dtype=np.float64)) if weighted else float(len(idx))
        acts = forward(params, xb, act, head)
        loss, _, dz = head_loss_and_grad(acts[-1], yb, Yb, head, wb)
        if not np.isfinite(loss):
            stats[:7] = loss_sum, correct, samples, steps + k, k, loss, weight
            return stats
        grads = backward(params, acts, dz, act)
        g = np.concatenate([t.ravel() for pair in grads for t in pair])
        optimizer_update(flat, g, decay, state.state1, state.state2, hyper, state.step + k + 1)
        if head == "logistic":
            batch_correct = subset_correct(acts[-1], Yb)
        elif head != "identity":
            batch_correct = float(np.sum(acts[-1].argmax(axis=1) == yb))   # argmax of the logits
        else:
            batch_correct = 0.0
        loss_sum += loss * batch_weight
        samples += len(idx)
        weight += batch_weight
        correct += batch_correct
        at = 7 + 4 * int(steps + k)
        if at + 4 <= stats.shape[0]:
            stats[at:at + 4] = loss * batch_weight, batch_correct, len(idx), batch_weight
    stats[:7] = loss_sum, correct, samples, steps + n_batches, -1, 0.0, weight
    return stats


def loss_and_grad_all(net, X, y, Y, w, grad):
    """(summed weighted loss, correct count) of all rows, and the gradient of the (weighted)
    mean loss into the flat ``grad``: the twin of the engine's ``loss_and_grad``."""
    act, head = ACTIVATIONS[net.act], HEADS[net.head]
    params = layer_views(net.flat, net.layers)
    wb = w if w is not None and len(w) else None
    acts = forward(params, X, act, head)
    loss, _, dz = head_loss_and_grad(acts[-1], y, Y, head, wb)
    total = float(np.sum(wb, dtype=np.float64)) if wb is not None else float(X.shape[0])
    grads = backward(params, acts, dz, act)
    grad[...] = np.concatenate([t.ravel() for pair in grads for t in pair])
    if head == "logistic":
        correct = subset_correct(acts[-1], Y)
    else:
        correct = 0.0 if head == "identity" else float(np.sum(acts[-1].argmax(axis=1) == y))
    return loss * total, correct


def evaluate_batches(net, X, y, Y, w=None, chunk=4096):
    """(sum of per-sample losses, correct predictions) over all rows, ``chunk`` rows at a time;
    the losses are weighted by ``w`` (n,) when given (the count is not)."""
    act, head = ACTIVATIONS[net.act], HEADS[net.head]
    params = layer_views(net.flat, net.layers)
    loss_sum = correct = 0.0
    for s in range(0, X.shape[0], chunk):
        xb = X[s:s + chunk].astype(net.flat.dtype, copy=False)
        z = forward(params, xb, act, head)[-1]
        takes_Y = head_takes_Y(head)
        yb = y if takes_Y else y[s:s + chunk]
        Yb = Y[s:s + chunk].astype(net.flat.dtype, copy=False) if takes_Y else Y
        if w is not None and len(w) > 0:
            wb = np.asarray(w, dtype=np.float64)[s:s + chunk]
            loss, _, _ = head_loss_and_grad(z, yb, Yb, head, wb)
            loss_sum += loss * wb.sum()
        else:
            loss, _, _ = head_loss_and_grad(z, yb, Yb, head)
            loss_sum += loss * xb.shape[0]
        if head == "logistic":
            correct += subset_correct(z, Yb)
        elif head != "identity":
            correct += float(np.sum(z.argmax(axis=1) == yb))
    return loss_sum, correct


def predict_batches(net, X, chunk=4096):
    """Head output for all rows of X (the engine contract's predict)."""
    return predict_output(layer_views(net.flat, net.layers), X, ACTIVATIONS[net.act],
                          HEADS[net.head], chunk)
