"""Per-kernel benchmarks: each Numba kernel of fastmlp.engine.kernels next to its NumPy reference twin.

One group per (kernel, model, batch size, dtype) holds the numba and numpy entries, so
pytest-benchmark's table shows their ratio. The Numba kernels are dispatchers called straight
from Python with the engine's BLAS handle (the call overhead, a few microseconds, is in the
figure, as NumPy's is in the reference's). Every benchmark warms up (compiles) before timing
and checks its result against the reference after timing.
"""

import numpy as np
import pytest

from fastmlp import reference
from fastmlp.engine import kernels
from fastmlp.bench import parse_model
from fastmlp.engine.lowlevel.blas import blas_handle
from fastmlp.codes import ACT_IDENTITY, ACT_RELU
from fastmlp.engine.optimizer import Hyper, optimizer_update
from fastmlp.engine.plan import thread_plan
from fastmlp.params import init_params, layer_views, param_count
from fastmlp.engine.lowlevel.threads import thread_limits

from .common import ALL_THREADS, BATCH_SIZES, DTYPES, ENGINES, MODELS, assert_close, common_info

KERNEL_ROUNDS = 20
RANDOM = "random inputs (seeded), He-initialised weights"


def layer_setup(model, batch, dtype, seed=0):
    """Starting weights, a minibatch of Fashion-MNIST-like inputs, its labels, the reference
    activations [x, a_1, ..., z_L] and the softmax cross-entropy gradient of z_L."""
    layers = parse_model(model)
    rng = np.random.default_rng(seed)
    flat = init_params(layers, "he", rng, dtype)
    params = layer_views(flat, layers)
    x = rng.random((batch, layers[0])).astype(dtype)
    y = rng.integers(0, layers[-1], batch).astype(np.int64)
    acts = reference.forward(params, x, "relu", "softmax")
    _, _, dz = reference.softmax_crossentropy(acts[-1], y)
    return layers, flat, params, x, y, acts, dz


def timed(benchmark, engine, layers, batch, run):
    """Warm up (compile), then time ``run`` with the engine's thread plan at all cores."""
    # the reference parallelises only inside BLAS; the compiled kernels as the engine plans
    plan = thread_plan(ALL_THREADS, batch, layers) if engine == "numba" else (1, ALL_THREADS)
    with thread_limits(*plan):
        run()
        benchmark.pedantic(run, rounds=KERNEL_ROUNDS, iterations=1, warmup_rounds=2)
    benchmark.extra_info["numba_threads"], benchmark.extra_info["blas_threads"] = plan


def rates(benchmark, batch, flops=None):
    median = benchmark.stats.stats.median
    benchmark.extra_info["samples_per_s"] = batch / median
    if flops:
        benchmark.extra_info["gflops"] = flops / median / 1e9


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_dense_forward(benchmark, engine, model, batch, dtype):
    """Fused dense layer forward, out = act(x @ W + b), for every layer of the model in turn."""
    benchmark.group = f"kernel forward {model} batch {batch} {dtype}"
    layers, flat, params, x, y, acts, _ = layer_setup(model, batch, dtype)
    L = len(params)
    if engine == "numba":
        blas = blas_handle()
        outs = [np.empty((batch, n), dtype=dtype) for n in layers[1:]]

        def run():
            a = x
            for l, (W, b) in enumerate(params):
                kernels.dense_forward(outs[l], a, W, b, ACT_RELU if l < L - 1 else ACT_IDENTITY, blas)
                a = outs[l]
            return a
    else:
        def run():
            return reference.forward(params, x, "relu", "softmax")[-1]
    common_info(benchmark, dtype, ALL_THREADS, RANDOM)
    timed(benchmark, engine, layers, batch, run)
    rates(benchmark, batch, 2 * batch * sum(a * b for a, b in zip(layers[:-1], layers[1:])))
    assert_close(run(), acts[-1], dtype, f"{engine} forward {model} batch {batch}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("engine", ENGINES)
def test_softmax_crossentropy(benchmark, engine, batch, dtype):
    """Fused softmax + cross-entropy loss and gradient on (batch, 10) logits (the same for both
    models: only the output width matters)."""
    benchmark.group = f"kernel softmax-crossentropy 10 classes batch {batch} {dtype}"
    rng = np.random.default_rng(1)
    logits = (rng.standard_normal((batch, 10)) * 3).astype(dtype)
    y = rng.integers(0, 10, batch).astype(np.int64)
    ref_loss, _, ref_grad = reference.softmax_crossentropy(logits, y)
    if engine == "numba":
        dlogits = np.empty_like(logits)
        scale = np.dtype(dtype).type(1.0 / batch)
        no_weights = logits[:0, 0]              # empty: every row weighs 1

        def run():
            loss, _ = kernels.softmax_crossentropy_backward(dlogits, logits, y, no_weights, scale)
            return loss / batch, dlogits
    else:
        def run():
            loss, _, grad = reference.softmax_crossentropy(logits, y)
            return loss, grad
    common_info(benchmark, dtype, 1, RANDOM)
    timed(benchmark, engine, (10, 10), batch, run)
    rates(benchmark, batch)
    loss, grad = run()
    assert abs(loss - ref_loss) <= 1e-5 * abs(ref_loss), f"{engine} loss {loss} vs {ref_loss}"
    assert_close(grad, ref_grad, dtype, f"{engine} softmax-crossentropy gradient batch {batch}")


def numba_backward(params, acts, dz, grads, dinps, blas):
    """Backward through all layers with the per-layer kernels."""
    for l in range(len(params) - 1, -1, -1):
        W, b = params[l]
        kernels.dense_backward(dinps[l], grads[l][0], grads[l][1], acts[l], W, dz, l > 0, blas)
        if l > 0:
            kernels.activation_backward(dinps[l], acts[l], ACT_RELU)
            dz = dinps[l]


def backward_buffers(layers, batch, dtype):
    grads = [(np.empty((a, b), dtype=dtype), np.empty(b, dtype=dtype))
             for a, b in zip(layers[:-1], layers[1:])]
    dinps = [np.empty((batch, a), dtype=dtype) for a in layers[:-1]]
    return grads, dinps


def backward_flops(layers, batch):
    macs = [a * b for a, b in zip(layers[:-1], layers[1:])]
    return 2 * batch * (sum(macs) + sum(macs[1:]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_dense_backward(benchmark, engine, model, batch, dtype):
    """Backward through every layer from the loss gradient: dW = x.T @ dz, db, dinp = dz @ W.T
    (all layers but the first) and the ReLU derivative."""
    benchmark.group = f"kernel backward {model} batch {batch} {dtype}"
    layers, flat, params, x, y, acts, dz = layer_setup(model, batch, dtype)
    expected = reference.backward(params, acts, dz, "relu")
    if engine == "numba":
        blas = blas_handle()
        grads, dinps = backward_buffers(layers, batch, dtype)

        def run():
            numba_backward(params, acts, dz, grads, dinps, blas)
            return grads
    else:
        def run():
            return reference.backward(params, acts, dz, "relu")
    common_info(benchmark, dtype, ALL_THREADS, RANDOM)
    timed(benchmark, engine, layers, batch, run)
    rates(benchmark, batch, backward_flops(layers, batch))
    for l, ((dW, db), (rW, rb)) in enumerate(zip(run(), expected)):
        assert_close(dW, rW, dtype, f"{engine} dW[{l}] {model} batch {batch}")
        assert_close(db, rb, dtype, f"{engine} db[{l}] {model} batch {batch}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["momentum", "adam"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_update(benchmark, engine, model, opt, dtype):
    """Optimizer step on the flat parameter buffer: numba's optimizer_update against
    reference.optimizer_update, momentum 0.9 or Adam.
    Independent of the batch size."""
    benchmark.group = f"kernel update {opt} {model} {dtype}"
    layers = parse_model(model)
    P = param_count(layers)
    rng = np.random.default_rng(2)
    start = init_params(layers, "he", rng, dtype)
    g = (rng.standard_normal(P) * 1e-2).astype(dtype)
    T = np.dtype(dtype).type
    lr, momentum, b1, b2, eps = 1e-3, 0.9, 0.9, 0.999, 1e-8
    p = start.copy()
    s1, s2 = np.zeros_like(p), np.zeros_like(p) if opt == "adam" else np.zeros(0, dtype)
    hyper = Hyper.of(opt if opt == "adam" else "sgd", lr, momentum, False, 0.0, b1, b2, eps)
    update = optimizer_update if engine == "numba" else reference.optimizer_update
    no_decay = np.zeros(0, dtype)

    def run():
        update(p, g, no_decay, s1, s2, hyper, 1)
    common_info(benchmark, dtype, 1, RANDOM)
    timed(benchmark, engine, (P, 1), 1, run)
    median = benchmark.stats.stats.median
    benchmark.extra_info["params_per_s"] = P / median
    # memory traffic: p, g, v read and p, v written (SGD momentum); p, g, m, v read, p, m, v written (Adam)
    benchmark.extra_info["GB_per_s"] = (7 if opt == "adam" else 5) * P * p.itemsize / median / 1e9
    p[...] = start                              # one step from zero state, against the reference
    s1[...] = 0
    s2[...] = 0
    run()
    if opt == "adam":                            # first step: m_hat = g, v_hat = g^2
        expected = start - T(lr) * g / (np.abs(g) + T(eps))
    else:
        expected = start - T(lr) * g
    assert_close(p, expected, dtype, f"{engine} update {opt} {model}")
