"""The optimizer, all of it: its hyper-parameters, its state between calls, and every update
formula (SGD, momentum, Nesterov, L2 weight decay, Adam), unfused and fused into the weight
gradient's product.

Formulas, on the flat parameters p with gradient g, weight decay ``wd`` (0 on biases), in place:
- L2:        g <- g + wd * p
- SGD:       p <- p - lr * g
- momentum:  v <- momentum * v + g;  p <- p - lr * v
- Nesterov:  v <- momentum * v + g;  p <- p - lr * (g + momentum * v)
- Adam (t counts steps from 1): m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
             p <- p - lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
"""

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from ..codes import OPT_ADAM, OPTIMIZERS, code_of
from ..params import weight_mask
from .lowlevel.blas import gemm
from .lowlevel.sparse import sparse_rank_update
from .lowlevel.tiles import rank_update

# error_model="numpy": a float division by zero gives inf or nan as in NumPy instead of raising,
# which also lets LLVM vectorise loops that divide (docs/performance.md, "error_model").
jit = njit(cache=True, nogil=True, error_model="numpy")


class Hyper(NamedTuple):
    """The optimizer's hyper-parameters (``opt``: a code of :data:`fastmlp.codes.OPTIMIZERS`)."""
    opt: int
    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    @classmethod
    def of(cls, optimizer="sgd", lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0,
           beta1=0.9, beta2=0.999, eps=1e-8):
        """From names and numbers as users give them (checked by the front end), typed as the
        compiled code takes them: one compilation for every value."""
        opt = optimizer if isinstance(optimizer, (int, np.integer)) else code_of(
            OPTIMIZERS, optimizer, "optimizer")
        return cls(int(opt), float(lr), float(momentum), bool(nesterov), float(weight_decay),
                   float(beta1), float(beta2), float(eps))


class Slots(NamedTuple):
    """The per-parameter buffers a step reads and writes, each empty when unused: state1 (the
    velocity, or Adam's m), state2 (Adam's v), grad (dW when the step is not fused into its
    product) and decay (wd per parameter, for the unfused step)."""
    state1: np.ndarray
    state2: np.ndarray
    grad: np.ndarray
    decay: np.ndarray


class OptimizerState:
    """What an optimizer keeps between calls, on the flat parameters' layout: ``state1`` (the
    velocity v, or Adam's m), ``state2`` (Adam's v; empty for SGD) and ``step`` (updates made:
    Adam's t). The engine advances ``step`` by the updates it makes. ``learning_rate``: the SGD
    rate the velocity was accumulated under, for a front end that changes the rate between
    calls (scikit-learn's estimators rescale the velocity then); None when unused."""

    def __init__(self, optimizer, size, dtype):
        self.opt = optimizer if isinstance(optimizer, (int, np.integer)) else code_of(
            OPTIMIZERS, optimizer, "optimizer")
        self.opt = int(self.opt)
        self.state1 = np.zeros(size, dtype=dtype)
        self.state2 = np.zeros(size if self.opt == OPT_ADAM else 0, dtype=dtype)
        self.step = 0
        self.learning_rate = None

    @property
    def name(self):
        return OPTIMIZERS[self.opt]

    def copy(self):
        other = OptimizerState(self.opt, 0, self.state1.dtype)
        other.state1, other.state2, other.step = self.state1.copy(), self.state2.copy(), self.step
        other.learning_rate = self.learning_rate
        return other

    def restore(self, saved):
        """Put back the state of ``saved`` (a :meth:`copy`), in place."""
        self.state1[...], self.state2[...], self.step = saved.state1, saved.state2, saved.step

    def astype(self, dtype):
        """The state's buffers in ``dtype`` (converted in place of the old ones)."""
        self.state1 = self.state1.astype(dtype, copy=False)
        self.state2 = self.state2.astype(dtype, copy=False)
        return self

    def __repr__(self):
        return f"OptimizerState({self.name!r}, size={self.state1.shape[0]}, step={self.step})"


def slots_for(flat, layers, hyper, state, fused):
    """The :class:`Slots` of a call. A ``fused`` step (plain SGD and momentum without Nesterov,
    on a minibatch taken whole) happens inside the weight-gradient product, which takes the weight
    decay as a scalar: no gradient buffer, no decay array. Otherwise dW goes to a buffer and
    the optimizer steps with a per-parameter decay (0 on biases)."""
    grad = flat[:0] if fused else np.empty_like(flat)
    decay = flat[:0]
    if hyper.weight_decay and not fused:
        decay = (weight_mask(layers) * hyper.weight_decay).astype(flat.dtype)
    state1, state2 = state.state1, state.state2
    if hyper.opt != OPT_ADAM:
        state2 = flat[:0] if state2.shape[0] == 0 else state2
        if hyper.momentum == 0.0:
            state1 = flat[:0]                   # plain SGD keeps no state: nothing to copy or pass
    return Slots(state1, state2, grad, decay)


def can_fuse(hyper):
    """Whether the step can be folded into the weight gradient's product (see slots_for)."""
    return hyper.opt != OPT_ADAM and (hyper.momentum == 0.0 or not hyper.nesterov)


# ---------------------------------------------------------------- compiled updates

@jit
def optimizer_update(p, g, decay, state1, state2, hyper, step):
    """One optimizer step on the flat parameters p from the flat gradient g, in place (the
    module's formulas). ``decay`` empty: no L2. Each case is its own branch-free loop so that it
    vectorises."""
    T = p.dtype.type
    n = p.shape[0]
    if decay.shape[0] > 0:
        for i in range(n):
            g[i] += decay[i] * p[i]
    lr_t = T(hyper.lr)
    mom = T(hyper.momentum)
    if hyper.opt == OPT_ADAM:
        b1, b2, e = T(hyper.beta1), T(hyper.beta2), T(hyper.eps)
        c1 = T(1.0 / (1.0 - hyper.beta1 ** step))
        c2 = T(1.0 / (1.0 - hyper.beta2 ** step))
        for i in range(n):
            m = b1 * state1[i] + (T(1) - b1) * g[i]
            v = b2 * state2[i] + (T(1) - b2) * g[i] * g[i]
            state1[i] = m
            state2[i] = v
            p[i] -= lr_t * (m * c1) / (math.sqrt(v * c2) + e)
    elif hyper.momentum == 0.0:
        for i in range(n):
            p[i] -= lr_t * g[i]
    elif hyper.nesterov:
        for i in range(n):
            v = mom * state1[i] + g[i]
            state1[i] = v
            p[i] -= lr_t * (g[i] + mom * v)
    else:
        for i in range(n):
            v = mom * state1[i] + g[i]
            state1[i] = v
            p[i] -= lr_t * v


@jit
def momentum_step(p, v, lr, decay):
    """The rest of a fused momentum step, after the product made v = momentum * v + dW:
    v += decay * p (L2, weights only), p -= lr * v."""
    for i in range(p.shape[0]):
        v[i] += decay * p[i]
        p[i] -= lr * v[i]


@njit(cache=True, nogil=True)
def update_block(flat, slots, blk, a_prev, a_rows, dz, accumulate, hyper, opt, step, blas):
    """The step for one block of one layer, from the whole minibatch. ``blk`` is (w0, b0, n_in,
    n_out, s0, s1, j0, j1, c0, c1): the layer's W starts at w0 and its b at b0 in the flat
    buffer; the block is W[s0:s1, j0:j1] (dW = a_prev[:, s0:s1].T @ dz[:, j0:j1]) and b[c0:c1]
    (db_j = sum over rows of dz[:, j]). Blocks that do not overlap can be stepped on different
    threads. With ``a_rows`` not empty, row i of a_prev is read at that address instead
    (:func:`fastmlp.engine.lowlevel.tiles.rank_update`) and ``a_prev`` is unused.

    With ``slots.grad`` empty the step is folded into the product: plain SGD as
    W <- (1 - lr * wd) * W - lr * dW; momentum (without Nesterov) as v <- momentum * v + dW
    (the product writes the velocity), then v += wd * W and W -= lr * v in one pass.
    Otherwise dW goes to ``grad`` (added to what it holds with ``accumulate``: a minibatch taken
    in pieces) and, unless ``opt`` is negative (gradient only), :func:`optimizer_update` steps
    over the block's ranges of the flat buffer.
    """
    w0, b0, n_in, n_out, s0, s1, j0, j1, c0, c1 = blk
    C, alpha, beta = _product_target(flat, slots, blk, hyper, accumulate)
    d = dz[:, j0:j1]
    if a_rows.shape[0]:
        rank_update(C, a_rows, s0, d, alpha, beta)
    else:
        gemm(blas, True, False, alpha, a_prev[:, s0:s1], d, beta, C)
    _step_after_product(flat, slots, blk, dz, accumulate, hyper, opt, step)


@njit(cache=True, nogil=True)
def update_block_nonzeros(flat, slots, blk, rows, csr, dz, accumulate, hyper, opt, step, scratch):
    """:func:`update_block` for a first layer from the non-zeros of its input rows: dW =
    X[rows].T @ dz[:, j0:j1], X's rows given by ``csr`` (:mod:`.lowlevel.sparse`), over the
    block's whole range of inputs (s0 = 0, s1 = n_in) and a whole number of vectors of units;
    ``scratch``: at least (n_in, j1 - j0) (:func:`.lowlevel.sparse.sparse_rank_update`)."""
    w0, b0, n_in, n_out, s0, s1, j0, j1, c0, c1 = blk
    C, alpha, beta = _product_target(flat, slots, blk, hyper, accumulate)
    sparse_rank_update(C, rows, csr, dz[:, j0:j1], alpha, beta, scratch)
    _step_after_product(flat, slots, blk, dz, accumulate, hyper, opt, step)


@njit(cache=True, nogil=True, inline="always")
def _product_target(flat, slots, blk, hyper, accumulate):
    """(C, alpha, beta): where :func:`update_block`'s product C = alpha * dW + beta * C goes,
    the block of W (fused SGD), of the velocity (fused momentum) or of the gradient."""
    w0, b0, n_in, n_out, s0, s1, j0, j1, c0, c1 = blk
    state1, state2, grad, decay = slots
    lr, momentum, weight_decay = hyper.lr, hyper.momentum, hyper.weight_decay
    fused = grad.shape[0] == 0
    if fused and momentum == 0.0:
        target, alpha, beta = flat, -lr, 1.0 - lr * weight_decay
    elif fused:
        target, alpha, beta = state1, 1.0, momentum
    else:
        target, alpha, beta = grad, 1.0, 1.0 if accumulate else 0.0
    return target[w0:b0].reshape((n_in, n_out))[s0:s1, j0:j1], alpha, beta


@njit(cache=True, nogil=True, inline="always")
def _step_after_product(flat, slots, blk, dz, accumulate, hyper, opt, step):
    """The rest of :func:`update_block` after its product: the fused momentum's pass or the
    optimizer over the block's W, then the bias b[c0:c1] from the sums of dz's columns."""
    w0, b0, n_in, n_out, s0, s1, j0, j1, c0, c1 = blk
    state1, state2, grad, decay = slots
    lr, momentum, weight_decay = hyper.lr, hyper.momentum, hyper.weight_decay
    T = flat.dtype.type
    fused = grad.shape[0] == 0
    # the block's contiguous ranges of the flat buffer: one when it spans whole rows, else a row each
    whole = j0 == 0 and j1 == n_out
    for q in range(1 if whole else s1 - s0):
        lo = w0 + (s0 + q) * n_out + j0
        hi = w0 + s1 * n_out if whole else lo + (j1 - j0)
        if fused and momentum != 0.0:
            momentum_step(flat[lo:hi], state1[lo:hi], T(lr), T(weight_decay))
        elif not fused and opt >= 0:
            optimizer_update(flat[lo:hi], grad[lo:hi], decay[lo:hi] if decay.shape[0] else decay,
                             state1[lo:hi], state2[lo:hi] if state2.shape[0] else state2, hyper,
                             step)
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
        optimizer_update(flat[b0 + c0:b0 + c1], grad[b0 + c0:b0 + c1], decay[:0],
                         state1[b0 + c0:b0 + c1], state2[b0 + c0:b0 + c1] if state2.shape[0]
                         else state2, hyper, step)
