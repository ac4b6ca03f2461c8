"""Compiling in a background process while the NumPy reference runs (fastmlp.engine.background).

The rest of the suite runs with FASTMLP_COMPILE=wait (conftest.py); the end-to-end test here
runs a fresh process with an empty Numba cache in the default mode.
"""

import collections
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from numba import typeof
from numba.core import types
from numba.core.typing.typeof import Purpose

from fastmlp.engine import Batches, Hyper, Network, OptimizerState, background, train
from fastmlp.engine.minibatch import Data, Net, offsets
from fastmlp.engine.optimizer import Slots


def _argument_types():
    """Types of the kinds the engine's kernels take."""
    flat = np.zeros(50, np.float32)
    readonly = np.zeros((4, 3), np.float64)
    readonly.flags.writeable = False
    values = [Net(flat, offsets((3, 5, 2)), np.int64(1), np.int64(0)),
              Data(readonly, np.zeros(4, np.int64), np.zeros((0, 2)), flat[:0],
                   np.arange(4, dtype=np.int64)),
              Hyper.of("adam", 0.1), Slots(flat, flat, flat, flat),
              (np.int64(3), np.int64(4)), (np.int64(3), 2.5), np.zeros((6, 6))[::2, 1:],
              True, 0.5, np.float32(1.5), np.int64(7), np.zeros(3, np.int32)]
    return [typeof(v, Purpose.argument) for v in values]


def test_argument_types_round_trip_through_json():
    for t in _argument_types():
        assert background.decode_type(json.loads(json.dumps(background.encode_type(t)))) == t


def test_types_without_a_json_form_are_refused():
    Point = collections.namedtuple("Point", "x y")
    with pytest.raises(TypeError, match="another package"):
        background.encode_type(typeof(Point(1.0, 2.0)))
    with pytest.raises(TypeError, match="no JSON form"):
        background.encode_type(types.unicode_type)
    with pytest.raises(ValueError, match="not part of fastmlp"):
        background.decode_type(["tuple", "os:path", []])


def test_mode_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(background.MODE_VARIABLE, raising=False)
    assert background.mode() == "background"
    monkeypatch.setenv(background.MODE_VARIABLE, " Wait ")
    assert background.mode() == "wait"
    monkeypatch.setenv(background.MODE_VARIABLE, "later")
    with pytest.raises(ValueError, match="FASTMLP_COMPILE='later'"):
        background.mode()
    with background.waiting():
        assert background.mode() == "wait"


def test_serve_compiles_each_request_and_answers_its_number():
    from fastmlp.engine.kernels import activate

    sig = (types.float64, types.int64)
    answer = io.StringIO()
    background.serve([background.request_line(7, activate, sig) + "\n"], answer)
    assert answer.getvalue() == "7\n"
    assert sig in activate.overloads


def test_a_child_that_imported_another_fastmlp_compiles_nothing(tmp_path):
    with pytest.raises(SystemExit, match="not the parent's"):
        background.serve(["never read"], io.StringIO(), package=str(tmp_path))


def test_a_failed_child_leaves_the_kernel_to_the_caller(monkeypatch, caplog):
    from fastmlp.engine.kernels import activate

    monkeypatch.setattr(background, "_CHILD_PROGRAM", "import sys; sys.exit(3)")
    compiler = background._Compiler()
    sig = (types.float32, types.int64)
    with caplog.at_level(logging.WARNING, logger="fastmlp"):
        compiler.takes(activate, sig)       # True, or False when the child was already gone
        assert compiler.wait(60)
        assert compiler.takes(activate, sig) is False
    assert "compile" in caplog.text and compiler.child is None


def test_wait_mode_runs_the_compiled_engine():
    flat = np.zeros(3 * 2 + 2, np.float32)
    net = Network(flat, (3, 2), 0, 0)
    X = np.ones((4, 3), np.float32)
    stats = train(net, OptimizerState("sgd", flat.size, flat.dtype),
                  Batches(X, np.array([0, 1, 0, 1]), np.zeros((0, 2), np.float32),
                          np.arange(4, dtype=np.int64), 2), Hyper.of("sgd", 0.1), threads=1)
    assert stats.engine == "numba"


_FIRST_RUN = textwrap.dedent("""
    import json
    import numpy as np
    from fastmlp import MLP
    from fastmlp.engine import background, infer

    rng = np.random.default_rng(0)
    X = rng.random((64, 8), dtype=np.float32)
    model = MLP([8, 6, 3], seed=0, threads=1)
    model.params = model.params                     # fitted: its initial weights
    proba = model.predict_proba(X)
    asked = background.pending()
    finished = background.wait(600)
    again = model.predict_proba(X)
    print(json.dumps({"asked": asked, "finished": finished,
                      "loaded": sum(infer.infer.stats.cache_hits.values()),
                      "apart": float(np.abs(proba - again).max())}))
""")


def test_a_first_run_starts_at_once_and_switches_to_the_compiled_kernels(tmp_path):
    """An empty cache: the first predictions come from the NumPy reference while a child
    compiles; once it has, the compiled kernel runs, loaded from the cache the child filled.
    (benchmarks/test_first_call.py times the same for fit, whose kernels take longer.)"""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTMLP_COMPILE="background",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", _FIRST_RUN], env=env, capture_output=True,
                          text=True, timeout=900, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["asked"] == 1 and result["finished"]
    assert result["loaded"] == 1                              # run compiled, from the cache
    assert result["apart"] < 1e-6                             # the same output, either engine


def test_requests_to_a_child_that_ended_idle_go_to_a_new_one_once(monkeypatch, caplog):
    from fastmlp.engine.kernels import activate

    monkeypatch.setattr(background, "_CHILD_PROGRAM", "pass")     # ends at once, exit code 0
    compiler = background._Compiler()
    sig = (types.float32, types.int64)
    with caplog.at_level(logging.WARNING, logger="fastmlp"):
        if compiler.takes(activate, sig):
            assert compiler.wait(60)
        assert compiler.takes(activate, sig) is False
    assert compiler.child is None and compiler.requests <= 2


def test_requests_arriving_together_are_all_read_before_the_idle_end(monkeypatch):
    monkeypatch.setattr(background, "IDLE_SECONDS", 0.2)
    read, write = os.pipe()
    try:
        os.write(write, b'{"id": 1}\n{"id": 2}\n{"id"')      # two lines and a part of one
        lines = background._requests(read)
        assert [next(lines), next(lines)] == [b'{"id": 1}', b'{"id": 2}']
        os.write(write, b': 3}\n')
        assert next(lines) == b'{"id": 3}'
        assert list(lines) == []                            # idle: the end
    finally:
        os.close(read)
        os.close(write)


def test_functional_layers_fall_back_to_their_twins_one_kernel_at_a_time(monkeypatch):
    """A step-by-step loop (F.forward, F.backward) whose kernels are compiling runs each missing
    kernel's NumPy twin and the ready ones compiled, asking for every missing one at once."""
    from fastmlp import functional as F

    params = F.init([6, 5, 3], seed=0)
    rng = np.random.default_rng(0)
    X = rng.random((8, 6), dtype=np.float32)
    y = np.arange(8) % 3
    want_fwd = F.forward(params, X)
    want = F.backward(params, want_fwd, y)
    tried = []
    missing = {"forward", "backward", "head_forward", "dense_backward"}

    def attempt(site, call, kernels):
        tried.append(site)
        return (False, None) if site in missing else (True, call())

    monkeypatch.setattr(background, "attempt", attempt)
    fwd = F.forward(params, X)
    got = F.backward(params, fwd, y)
    assert tried == ["forward", "dense_forward", "dense_forward", "head_forward",
                     "backward", "head_backward", "dense_backward", "activation_backward",
                     "dense_backward"]
    np.testing.assert_allclose(fwd.output, want_fwd.output, atol=1e-6)
    for (dW, db), (wW, wb) in zip(got, want):
        np.testing.assert_allclose(dW, wW, atol=1e-6)
        np.testing.assert_allclose(db, wb, atol=1e-6)


_INFO_WHILE_COMPILING = textwrap.dedent("""
    from fastmlp.engine import background
    from fastmlp import info

    background._COMPILER.takes = lambda kernel, sig: True      # as if a child took it
    background._COMPILER.pending = {1: None}
    print(info._threading_layer())
""")


def test_info_names_the_requested_threading_layer_while_the_kernels_compile(tmp_path):
    """`fastmlp info` does not wait for the inference kernel on a first run: a fresh process
    whose prediction runs on the reference reports the layer asked for."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTMLP_COMPILE="background",
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    done = subprocess.run([sys.executable, "-c", _INFO_WHILE_COMPILING], env=env,
                          capture_output=True, text=True, timeout=300, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "workqueue" in done.stdout and "compiling in the background" in done.stdout
