"""Threads and processes: models trained concurrently from Python threads give bitwise the results
of running one after the other (fastmlp.engine.lowlevel.threads serialises compiled calls with one lock), and a
process forked after the parent has used the compiled engine trains normally, also when another
thread of the parent held the lock at the moment of the fork.

Every forked worker answers through a pipe with a timeout, so a hang fails the test instead of
hanging the test run.
"""

import multiprocessing
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import fastmlp.model
import fastmlp.engine.lowlevel.threads
import helpers  # noqa: I001 (the tests folder is on sys.path)
from fastmlp import MLP

numba = pytest.importorskip("numba")
engine = pytest.importorskip("fastmlp.engine")

ROOT = Path(__file__).resolve().parents[1]
FORK_TIMEOUT = 60  # seconds; the worker needs about one


def problem(seed, n=600, n_features=12, n_classes=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (n_classes, n_features))
    y = np.arange(n) % n_classes
    return (centers[y] + rng.normal(0, 1.0, (n, n_features))).astype(np.float32), y


JOBS = [
    dict(seed=0, threads=1, fit=dict(momentum=0.9, lr=0.05)),
    dict(seed=1, threads=2, fit=dict(optimizer="adam", lr=0.01)),
    dict(seed=2, threads=2, fit=dict(lr=0.1, weight_decay=1e-3)),
    dict(seed=3, threads=1, fit=dict(lr=0.1, lr_schedule="cosine")),
]


# wide enough that a minibatch of 64 runs on 2 threads when asked
LAYERS = [12, 512, 256, 3]


def test_the_jobs_run_on_the_threads_they_ask_for(monkeypatch):
    monkeypatch.setattr(engine.plan, "PLAN_CORES", 2)             # whatever the machine has
    for job in JOBS:
        assert engine.plan_training(job["threads"], 64, LAYERS, 600).threads == job["threads"]


def run_job(job, barrier=None):
    X, y = problem(job["seed"])
    model = MLP(LAYERS, seed=job["seed"], threads=job["threads"], engine="numba")
    if barrier is not None:
        barrier.wait()
    model.fit(X, y, epochs=3, batch_size=64, **job["fit"])
    return model._flat.copy(), model.predict_proba(X), model.history_["loss"]


def test_threads_give_the_results_of_sequential_runs(monkeypatch):
    # Many small compiled calls per epoch, so that the threads' calls interleave a lot.
    monkeypatch.setattr(fastmlp.model, "SLICE_SAMPLES", 64)
    sequential = [run_job(job) for job in JOBS]
    for _ in range(2):
        results = [None] * len(JOBS)
        errors = []
        barrier = threading.Barrier(len(JOBS))

        def work(i):
            try:
                results[i] = run_job(JOBS[i], barrier)
            except BaseException as exc:     # reported below: a thread's exception is not raised
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(JOBS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "a training thread hung"
        assert not errors, errors
        for job, got, want in zip(JOBS, results, sequential):
            np.testing.assert_array_equal(got[0], want[0], err_msg=f"weights of job {job}")
            np.testing.assert_array_equal(got[1], want[1], err_msg=f"predictions of job {job}")
            # an epoch's loss is the sum of its calls' sums, and after the first call fit sizes
            # its calls by the time they take: calls cut elsewhere round the float64 sum
            # differently (seen once in CI: ...8225 against ...8223)
            np.testing.assert_allclose(got[2], want[2], rtol=1e-14, atol=0,
                                       err_msg=f"losses of job {job}")


def test_predict_from_many_threads_while_training():
    X, y = problem(7)
    trained = MLP([12, 24, 3], engine="numba", threads=2)
    trained.fit(X, y, epochs=2, batch_size=64)
    expected = trained.predict_proba(X)
    outputs, errors = [], []

    def predict():
        try:
            for _ in range(5):
                outputs.append(trained.predict_proba(X))
        except BaseException as exc:
            errors.append(exc)

    def train():
        try:
            MLP([12, 24, 3], engine="numba", seed=9).fit(X, y, epochs=3, batch_size=64)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=predict) for _ in range(3)] + [threading.Thread(target=train)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(outputs) == 15
    for out in outputs:
        np.testing.assert_array_equal(out, expected)


LAYER_SCRIPT = """
import numpy as np, numba
from fastmlp import MLP
X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
MLP([4, 8, 2], threads=2).fit(X, np.arange(64) % 2, epochs=1, batch_size=64)
print(numba.threading_layer())
"""


def test_a_fork_safe_threading_layer_is_used():
    """Numba's fork-safe workqueue layer (see fastmlp.engine.lowlevel.threads), also where TBB is installed, when the user chose none:
    checked in a fresh interpreter, since in this one any earlier parallel call may have started
    Numba's pool. Minibatches of 64 on 2 threads run the parallel loops (2 parts of 32 rows)."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", LAYER_SCRIPT], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "workqueue"


# ---------------------------------------------------------------- fork


def _train_in_child(conn, seed):
    """Runs in the forked worker: train and send back the weights (or the error)."""
    try:
        X, y = problem(seed)
        model = MLP([12, 24, 3], seed=seed, engine="numba", threads=2)
        model.fit(X, y, epochs=2, batch_size=64, momentum=0.9)
        conn.send(("ok", model._flat, model.predict(X)))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def run_forked(target, *args):
    """Run ``target(conn, *args)`` in a forked process; its answer, or a test failure on a hang."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(send, *args), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(FORK_TIMEOUT):
            pytest.fail(f"the forked worker did not answer within {FORK_TIMEOUT} s: it hung")
        return receive.recv()
    except EOFError:
        pytest.fail(f"the forked worker died without an answer (exit code {process.exitcode})")
    finally:
        if process.is_alive():
            process.kill()
        process.join(10)


def parent_result(seed):
    X, y = problem(seed)
    model = MLP([12, 24, 3], seed=seed, engine="numba", threads=2)
    model.fit(X, y, epochs=2, batch_size=64, momentum=0.9)
    return model._flat, model.predict(X)


def use_the_parallel_engine():
    """Start Numba's thread pool in the parent: a parallel training call on 2 parts."""
    X, y = problem(5)
    model = MLP([12, 24, 3], engine="numba")
    model.fit(X, y, epochs=1, batch_size=64)
    flat = model._flat.copy()
    with fastmlp.engine.lowlevel.threads.thread_limits(2, 1):
        helpers.train_batches(engine, flat, np.array(model.layers), 1, 0, X, y, np.zeros((0, 3), np.float32),
                             np.arange(len(X)), 32, 0, 0.1, 0.0, False, 0.0, 0.9, 0.999, 1e-8,
                             np.zeros_like(flat), np.zeros(0, np.float32), 0)
    model.predict(X)


def test_fit_in_a_forked_worker_after_the_parent_used_numba():
    use_the_parallel_engine()
    status, *answer = run_forked(_train_in_child, 11)
    assert status == "ok", answer
    flat, pred = parent_result(11)
    np.testing.assert_array_equal(answer[0], flat)         # same result as in the parent
    np.testing.assert_array_equal(answer[1], pred)


def test_fork_while_another_thread_holds_the_compiled_call_lock():
    """Without the lock being reset in the child, the worker's first compiled call would wait
    forever for a thread that does not exist in the child."""
    use_the_parallel_engine()
    holding, release = threading.Event(), threading.Event()

    def hold():
        with fastmlp.engine.lowlevel.threads._LOCK:
            holding.set()
            release.wait(FORK_TIMEOUT + 10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        status, *answer = run_forked(_train_in_child, 12)
    finally:
        release.set()
        holder.join()
    assert status == "ok", answer
    np.testing.assert_array_equal(answer[0], parent_result(12)[0])
