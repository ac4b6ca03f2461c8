"""What several test files share besides fixtures: synthetic problems and finite differences."""

import os
from pathlib import Path

import numpy as np

# the real MNIST test set (t10k IDX files): ../shared/data/mnist beside the repository, or the
# folder FASTMLP_MNIST_DIR names; tests that need it skip when it is absent
MNIST_DIR = Path(os.environ.get("FASTMLP_MNIST_DIR")
                 or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")


def blobs(n=240, n_features=4, n_classes=3, seed=0, spread=0.6, center_scale=3.0):
    """Gaussian blobs, class i around a centre drawn from N(0, center_scale); with the defaults
    well separated: an easy classification problem. Labels cycle 0, 1, ..., n_classes - 1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, center_scale, (n_classes, n_features))
    y = np.arange(n) % n_classes
    X = centers[y] + rng.normal(0, spread, (n, n_features))
    return X.astype(np.float32), y


def noisy_problem(seed=0):
    """(X, y, X_val, y_val): 200 training samples with 30% of the labels flipped and 100 clean
    validation samples; a big network at a high rate overfits it, so the validation loss soon
    turns up."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    flip = rng.random(200) < 0.3
    y[flip] = 1 - y[flip]
    X_val = rng.normal(size=(100, 4)).astype(np.float32)
    y_val = (X_val[:, 0] + X_val[:, 1] > 0).astype(int)
    return X, y, X_val, y_val


def picked_rows(rng, dtype, m, k):
    """A bigger array X (k + 5 columns), m of its rows picked (repeats allowed) and their
    addresses, for the products that read rows by address (X kept alive by the caller)."""
    from fastmlp.engine.lowlevel.tiles import row_addresses

    X = rng.standard_normal((100, k + 5)).astype(dtype)
    rows = rng.choice(100, m).astype(np.int64)
    addr = np.empty(m, dtype=np.int64)
    if m:                               # (no rows means every row to row_addresses)
        row_addresses(addr, X, rows)
    return X, rows, addr


def call_as_views(kernel, *args):
    """``kernel(*args)`` with every 2-D array typed as a view (layout "A"), whatever its flags.

    Called from Python, Numba compiles a kernel again for each layout of its arguments, and a
    single row, or a block of a single column, is C-contiguous: the tests of a tiling's edges
    compiled each product up to four times per dtype (0.4-2.3 s each). The kernels read arrays
    through their strides, so one version per dtype, the views', stands for them all."""
    import numba
    from numba import types

    signature = tuple(t.copy(layout="A") if isinstance(t, types.Array) and t.ndim == 2 else t
                      for t in map(numba.typeof, args))
    if signature not in kernel.overloads:
        kernel.compile(signature)
    kernel.disable_compile(True)        # so C arrays take the view's version, not a new one
    try:
        return kernel(*args)
    finally:
        kernel.disable_compile(False)


def assert_relative_close(got, want, tol):
    """max |got - want| <= tol * max(1, max |want|), and finite."""
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert np.isfinite(err) and err <= tol, err


def central_differences(loss, flat, eps=1e-6):
    """d loss / d flat[i] ~ (loss(flat + eps e_i) - loss(flat - eps e_i)) / (2 eps) for every i;
    ``loss`` takes a flat parameter buffer and returns a float. ``flat`` is left as it was."""
    numeric = np.empty_like(flat)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = loss(flat)
        flat[i] = saved - eps
        down = loss(flat)
        flat[i] = saved
        numeric[i] = (up - down) / (2 * eps)
    return numeric


def off_the_kinks(layers, X, head="softmax"):
    """Float64 parameters (uniform start, the first of 50 seeds that will do) with every hidden
    pre-activation of X at least 1e-3 from 0, where relu has its kink: central differences
    across a kink are not the gradient."""
    from fastmlp import reference
    from fastmlp.params import init_params, layer_views

    for seed in range(50):
        flat = init_params(layers, "uniform", np.random.default_rng(seed), np.float64)
        acts = reference.forward(layer_views(flat, layers), X, "identity", head)
        if all(np.abs(a).min() > 1e-3 for a in acts[1:-1]):
            break
    return flat


def engine_args(flat, layers, act, head):
    """fastmlp.engine.Network of plain arguments (``act``, ``head``: codes)."""
    from fastmlp.engine import Network

    return Network(flat, tuple(int(v) for v in layers), int(act), int(head))


def train_batches(module, flat, layers, act, head, X, y, Y, order, batch_size, opt, lr, momentum,
                  nesterov, weight_decay, beta1, beta2, eps, state1, state2, step, w=None):
    """``module.train_batches`` (fastmlp.engine, the compiled one, or fastmlp.reference) on the
    plain arrays the tests hold, whose state1 / state2 it updates in place; returns the raw
    statistics [loss sum, correct, samples, steps, diverged at or -1, bad loss, weight]."""
    from fastmlp.engine import Batches, Hyper, OptimizerState

    state = OptimizerState(opt, 0, flat.dtype)
    state.state1, state.state2, state.step = state1, state2, step
    return module.train_batches(engine_args(flat, layers, act, head), state,
                                Batches(X, y, Y, order, batch_size, w),
                                Hyper.of(opt, lr, momentum, nesterov, weight_decay, beta1, beta2,
                                         eps))


def evaluate_batches(engine_name, flat, layers, act, head, X, y, Y, chunk=4096, w=None):
    """fastmlp.engine.evaluate with the thread counts in force (engine "numba" or "numpy")."""
    from fastmlp import engine

    return engine.evaluate(engine_args(flat, layers, act, head), X, y, Y, w, engine=engine_name,
                           chunk=chunk, threads=_threads_in_force())


def predict_batches(engine_name, flat, layers, act, head, X, chunk=4096):
    from fastmlp import engine

    return engine.predict(engine_args(flat, layers, act, head), X, engine=engine_name,
                          chunk=chunk, threads=_threads_in_force())


def loss_and_grad(flat, layers, act, head, X, y, Y, grad, w=None):
    from fastmlp import engine

    return engine.loss_and_grad(engine_args(flat, layers, act, head), X, y, Y, grad, w,
                                threads=_threads_in_force())


def _threads_in_force():
    import numba

    return numba.get_num_threads()
