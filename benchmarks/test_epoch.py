"""One training epoch per engine, and prediction on 10000 samples.

Epoch groups: (model, batch size, threads) with the numba and numpy engines side by side. Each
round trains a full epoch (60000 samples; 6000 with FASTMLP_BENCH_QUICK=1) from the same starting
weights and sample order through the engine contract, with the thread counts set as
fastmlp.MLP gets them (the engine's plan): plain SGD, float32. After timing,
the numba epoch is checked against the numpy engine's from the same start
(fastmlp.bench.compare_epochs), and a few float64 minibatches of both engines must agree to
1e-9, so a fast wrong kernel fails.
"""

import numpy as np
import pytest

from fastmlp import bench
from fastmlp.codes import ACTIVATIONS, HEADS
from fastmlp import engine as fast_engine
from fastmlp.engine.plan import MIN_BATCHES_FOR_UNITS
from fastmlp.params import init_params

from .common import (BATCH_SIZES, ENGINES, MODELS, QUICK, ROUNDS, THREADS, add_rates,
                     assert_close, common_info)

ACT, HEAD = ACTIVATIONS.index("relu"), HEADS.index("softmax")


def check_float64_prefix(layers, batch, threads, X, y, n_batches=MIN_BATCHES_FOR_UNITS):
    """The numba engine's first minibatches in float64 match the reference's to 1e-9, on the
    benchmark's thread count and enough minibatches for the same scheme as its epoch."""
    n = min(len(X), n_batches * batch)
    cases = [bench.EpochCase(e, layers, batch, threads, X[:n], y[:n], "float64")
             for e in ("numba", "numpy")]
    for case in cases:
        case.run()
    np.testing.assert_allclose(cases[0].flat, cases[1].flat, rtol=1e-9, atol=1e-12,
                               err_msg=f"numba vs numpy, float64, {n} samples, {layers}")
    assert abs(cases[0].mean_loss - cases[1].mean_loss) <= 1e-9 * abs(cases[1].mean_loss)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_epoch(benchmark, engine, model, batch, threads, data, reference_epochs, gemm_gflops):
    X, y, _, _, source = data
    layers = bench.parse_model(model)
    benchmark.group = f"epoch {model} batch {batch} threads {threads}"
    case = bench.EpochCase(engine, layers, batch, threads, X, y)
    case.warm_up()                              # compile / load the cache outside the timing
    benchmark.pedantic(case.run, setup=case.settle_and_reset, rounds=ROUNDS,
                       warmup_rounds=1 if engine == "numba" and not QUICK else 0)
    n = case.n_samples
    flops = bench.matmul_flops(layers, n)
    common_info(benchmark, "float32", threads, source)
    median = add_rates(benchmark, n, flops)
    gflops = gemm_gflops("float32")
    floor = bench.floor_seconds(layers, n, gflops)
    benchmark.extra_info.update({
        "samples": n, "batch_size": batch, "model": model, "thread_plan": list(case.plan),
        "epoch_loss": case.mean_loss, "gemm_gflops_all_cores": gflops, "gemm_floor_s": floor,
        "floor_fraction": floor / median})
    if engine == "numpy":
        reference_epochs.put(case)
        assert case.stats[4] < 0 and np.isfinite(case.mean_loss)
    else:
        benchmark.extra_info["weights_apart_rel"] = bench.compare_epochs(case, reference_epochs.get(case))
        check_float64_prefix(layers, batch, threads, X, y)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("engine", ENGINES)
def test_predict(benchmark, engine, model, dtype, threads, data):
    """Head output (softmax probabilities) for the 10000 test samples, in chunks of
    fastmlp.engine.PREDICT_CHUNK rows as MLP.predict_proba does; checked against the reference."""
    _, _, X_test, _, source = data
    layers = bench.parse_model(model)
    benchmark.group = f"predict {model} {dtype} threads {threads}"
    flat = init_params(layers, "he", np.random.default_rng(0), dtype)
    X = np.ascontiguousarray(X_test, dtype=dtype)
    net = fast_engine.Network(flat, tuple(layers), ACT, HEAD)
    plan = fast_engine.plan.plan_inference(threads, fast_engine.PREDICT_CHUNK, layers)

    def run():
        return fast_engine.predict(net, X, threads, engine)

    run()
    benchmark.pedantic(run, rounds=max(3, 3 * ROUNDS), warmup_rounds=1)
    common_info(benchmark, dtype, threads, source)
    add_rates(benchmark, len(X), bench.forward_flops(layers, len(X)))
    benchmark.extra_info.update({"samples": len(X), "model": model, "thread_plan": list(plan[:2])})
    expected = fast_engine.predict(net, X, threads, "numpy")
    assert_close(run(), expected, dtype, f"{engine} predict {model}")
