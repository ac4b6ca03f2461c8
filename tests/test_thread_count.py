"""The thread count never changes a bit: every scheme cuts its work into pieces planned for the
machine's cores (``engine.plan.PLAN_CORES`` stands in for them here), and 1, 2 or 3 threads run
the same pieces and sum them in the same order.

On a machine with fewer cores than threads asked for, Numba runs at most NUMBA_NUM_THREADS
threads (default: the cores), so the 3-thread runs go through a child process started with
NUMBA_NUM_THREADS=4; the in-process tests cover 1 and 2 threads.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fastmlp import MLP, engine

LAYERS = (64, 48, 40, 5)
OPTIMIZERS = {"sgd": {"lr": 0.05}, "momentum": {"lr": 0.02, "momentum": 0.9, "weight_decay": 1e-3},
              "nesterov": {"lr": 0.02, "momentum": 0.9, "nesterov": True},
              "adam": {"lr": 0.01, "weight_decay": 1e-3}}
# (scheme, batch size): the units scheme whole and in pieces, parts, rows in several groups
CASES = (("units", 32), ("units", 80), ("parts", 32), ("parts", 75), ("rows", 96))


def fit_weights(scheme, batch, opt, threads, dtype="float32", cores=4):
    """Weights and predictions after 2 epochs of ``scheme`` planned for ``cores`` cores and run
    on ``threads`` threads."""
    forced = (engine.plan.FORCE_SCHEME, engine.plan.PLAN_CORES, engine.plan.MIN_MACS_PER_THREAD,
              engine.plan.CHUNK_ROWS, engine.plan.BLOCK_ROWS)
    engine.plan.FORCE_SCHEME, engine.plan.PLAN_CORES = scheme, cores
    engine.plan.MIN_MACS_PER_THREAD, engine.plan.CHUNK_ROWS, engine.plan.BLOCK_ROWS = 1, 48, 16
    try:
        rng = np.random.default_rng(0)
        X, y = rng.random((400, LAYERS[0])).astype(dtype), rng.integers(0, LAYERS[-1], 400)
        model = MLP(LAYERS, seed=5, threads=threads, dtype=dtype)
        with engine.tuner.fixed():      # exactly ``threads``, not the fastest count up to it
            model.fit(X, y, epochs=2, batch_size=batch,
                      optimizer="adam" if opt == "adam" else "sgd", **OPTIMIZERS[opt])
        return np.concatenate([model._flat, model.predict_proba(X[:50]).ravel()])
    finally:
        (engine.plan.FORCE_SCHEME, engine.plan.PLAN_CORES, engine.plan.MIN_MACS_PER_THREAD,
         engine.plan.CHUNK_ROWS, engine.plan.BLOCK_ROWS) = forced


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("scheme,batch", CASES)
def test_one_and_two_threads_give_the_same_bits(scheme, batch, opt):
    """4 pieces on 1 and on 2 threads (two pieces a thread)."""
    one = fit_weights(scheme, batch, opt, 1)
    assert np.array_equal(one, fit_weights(scheme, batch, opt, 2))


@pytest.mark.parametrize("scheme,batch", CASES)
def test_float64_and_three_pieces(scheme, batch):
    """3 pieces on 1 and 2 threads (one thread takes two), float64."""
    one = fit_weights(scheme, batch, "momentum", 1, "float64", cores=3)
    assert np.array_equal(one, fit_weights(scheme, batch, "momentum", 2, "float64", cores=3))


def test_the_threads_argument_does_not_change_the_plan_pieces():
    """threads bounds the threads, never the scheme or the pieces."""
    plans = [engine.plan_training(t, 32, (784, 128, 10), 60_000) for t in (1, 2, 16)]
    assert {(p.scheme, p.parts, p.chunk) for p in plans} == {(plans[0].scheme, plans[0].parts,
                                                              plans[0].chunk)}
    assert [p.threads for p in plans] == [1, min(2, plans[0].parts), plans[0].parts]


CHILD = """
import json, sys
import numba
sys.path.insert(0, {tests!r})
from test_thread_count import CASES, OPTIMIZERS, fit_weights
assert numba.config.NUMBA_NUM_THREADS >= 3
from fastmlp import engine
out = {{}}
for scheme, batch in CASES:
    for opt in ("sgd", "adam"):
        runs = [fit_weights(scheme, batch, opt, t) for t in (1, 2, 3)]
        out[f"{{scheme}}/{{batch}}/{{opt}}"] = [bool(np.array_equal(runs[0], r)) for r in runs[1:]]
engine.plan.PLAN_CORES, engine.plan.MIN_MACS_PER_THREAD = 4, 1
out["threads"] = engine.plan_training(3, 32, (64, 48, 40, 5), 400).threads
print(json.dumps(out))
"""


def test_three_threads_in_a_child_with_more_threads_than_cores():
    """1, 2 and 3 threads (3 does not divide the 4 pieces) in a process where Numba may run 4."""
    tests = os.path.dirname(os.path.abspath(__file__))
    code = "import numpy as np\n" + CHILD.format(tests=tests)
    env = {**os.environ, "NUMBA_NUM_THREADS": "4"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out.pop("threads") == 3
    assert out and all(same == [True, True] for same in out.values()), out


def test_fastmlp_plan_cores_sets_the_cores_planned_for(monkeypatch):
    """FASTMLP_PLAN_CORES replaces the cores the pieces are planned for; a bad value is refused
    with the variable's name before anything runs."""
    layers = (784, 512, 256, 10)
    monkeypatch.setenv("FASTMLP_PLAN_CORES", "1")
    one = engine.plan_training(2, 128, layers, 60_000)
    assert (one.parts, one.threads, one.scheme) == (1, 1, "parts")
    monkeypatch.setenv("FASTMLP_PLAN_CORES", "4")
    four = engine.plan_training(2, 128, layers, 60_000)
    assert (four.parts, four.threads) == (4, 2)
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("FASTMLP_PLAN_CORES", bad)
        with pytest.raises(ValueError, match="FASTMLP_PLAN_CORES"):
            MLP((4, 3, 2), seed=0).fit(np.zeros((8, 4)), np.arange(8) % 2, epochs=1)
