"""How long the first fit of a new process takes: compiling the Numba kernels (empty cache), or
starting on the NumPy reference while they compile in the background, or loading them (filled
cache)."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np



# the child's program: time the package import, then the first fit and predict
_FIRST_FIT_CHILD = ("import time; t0 = time.perf_counter(); import fastmlp; "
                    "t_import = time.perf_counter() - t0; "
                    "from fastmlp.firstcall import first_fit_child; first_fit_child(t_import)")


def first_fit_child(t_import=float("nan")):
    """Run in a fresh interpreter (see :func:`first_fit_seconds`): time ``MLP.fit`` for one
    epoch on tiny data, then ``predict``, then the wait for kernels compiling in the background
    (none in the "wait" mode) and one more epoch; print one JSON line."""
    from fastmlp import MLP
    from fastmlp.bench import LR, N_FEATURES
    from fastmlp.engine import background

    rng = np.random.default_rng(0)
    X = rng.random((256, N_FEATURES), dtype=np.float32)
    y = np.arange(256) % 10
    model = MLP([N_FEATURES, 128, 10], engine=os.environ.get("FASTMLP_BENCH_ENGINE", "numba"))
    t0 = time.perf_counter()
    history = model.fit(X, y, epochs=1, batch_size=32, lr=LR)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(X)
    t_predict = time.perf_counter() - t0
    t0 = time.perf_counter()
    background.wait()
    t_ready = time.perf_counter() - t0
    after = model.fit(X, y, epochs=1, batch_size=32, lr=LR)["engine"][0]
    print(json.dumps({"import_s": t_import, "fit_s": t_fit, "predict_s": t_predict,
                      "ready_s": t_ready, "engine": history["engine"][0], "engine_after": after,
                      "loss": history["loss"][-1], "n_predicted": int(len(pred))}))


def first_fit_seconds(cache_dir, engine="numba", timeout=900, compile_mode="wait"):
    """Time the first fit (and predict) of a new process whose Numba cache is ``cache_dir``
    (NUMBA_CACHE_DIR): an empty folder measures compilation (``compile_mode`` "wait") or the
    start on the NumPy reference while it compiles ("background"), a filled one loading the
    cache. Returns the child's dict: import_s, fit_s, predict_s, ready_s (the wait for the
    background compiler after them), engine and engine_after (which ran the first epoch and one
    after that wait), loss, n_predicted."""
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), FASTMLP_BENCH_ENGINE=engine,
               FASTMLP_COMPILE=compile_mode)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", _FIRST_FIT_CHILD],
                          env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"first-fit child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
