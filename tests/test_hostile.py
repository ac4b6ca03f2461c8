"""Hostile inputs at every public entry point (tests/hostile_cases.py): each case must raise the
named error with a message that says what is wrong, or run and pass its own asserts. Cases run
in a child process, so that a crash (Numba does no bounds checking: a bad index is a segfault,
not an exception) is a failure of the case that was running, not of the suite; the remaining
cases then go on in a new child."""

import json
import os
import subprocess
import sys
from pathlib import Path

from hostile_cases import GROUPS

HERE = Path(__file__).resolve().parent

CHILD = r'''
import copy, json, os, re, sys, tempfile, warnings
from pathlib import Path
import numpy as np
warnings.simplefilter("ignore")
import fastmlp
from fastmlp import MLP, ModelFileError, NotFittedError, TrainingDiverged
from fastmlp import functional as F
from fastmlp import cli as _cli
from fastmlp.data import DataError, load, read_idx
from fastmlp.io import read_npz, write_npz_atomic

rng = np.random.default_rng(0)
X = rng.random((60, 4)).astype(np.float32)
y = np.arange(60) % 3
model = MLP([4, 8, 3], seed=0)
model.fit(X, y, epochs=2)


def idx(a):
    """IDX bytes of a uint8 array."""
    return b"\0\0\x08" + bytes([a.ndim]) + np.array(a.shape, ">u4").tobytes() + a.tobytes()


def lying_npz(path, config=False):
    """An .npz whose member X (or params) declares 10^12 elements in its header."""
    import zipfile
    from numpy.lib import format as npy
    header = {"descr": "<f4", "fortran_order": False, "shape": (10 ** 12,)}
    import io
    buf = io.BytesIO()
    npy.write_array_header_1_0(buf, header)
    body = buf.getvalue() + bytes(64)
    with zipfile.ZipFile(path, "w") as z:
        if config:
            cfg = io.BytesIO(); np.save(cfg, np.array(json.dumps({"format": "fastmlp-model",
                                                                  "format_version": 1})))
            z.writestr("config.npy", cfg.getvalue())
        z.writestr("params.npy" if config else "X.npy", body)
        y_buf = io.BytesIO(); np.save(y_buf, np.arange(3)); z.writestr("y.npy", y_buf.getvalue())
    return path


def rewrite_model(path, config=None, model_cfg=None, params=None, classes=None, **kw):
    model.save(path)
    cfg, arrays = read_npz(path)
    cfg.update(config or {})
    cfg["model"].update(kw.get("model", model_cfg) or {})
    if params is not None:
        arrays["params"] = np.full_like(arrays["params"], params)
    if classes is not None:
        arrays["classes"] = classes
    write_npz_atomic(path, cfg, arrays)


def damage_rng(path):
    cfg, arrays = read_npz(path)
    cfg["checkpoint"]["rng"]["state"] = {"state": "junk", "inc": None}
    write_npz_atomic(path, cfg, arrays)


def fitted_clf():
    from fastmlp.sklearn import MLPClassifier
    return MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)


def predict_in_child(flat):
    m = MLP([4, 8, 3], seed=0); m.params = model.params; m.classes_ = model.classes_
    m._flat[...] = flat
    return m.predict(X)


def cli(*args):
    try:
        return _cli.main(list(args))
    except SystemExit as exc:
        return exc.code


try:
    from fastmlp.sklearn import MLPClassifier, MLPRegressor
except ImportError:
    MLPClassifier = MLPRegressor = None

cases = json.load(open(sys.argv[1]))
for case_id, code, expected in cases:
    print(json.dumps({"start": case_id}), flush=True)
    tmp = Path(tempfile.mkdtemp())

    def write(name, data, tmp=tmp):
        path = tmp / name
        path.write_bytes(data)
        return path

    namespace = dict(globals(), tmp=tmp, write=write, model=copy.deepcopy(model))
    error = None
    try:
        exec(compile(code, case_id, "exec"), namespace)
    except BaseException as exc:
        error = exc
    if expected == "ok":
        ok = error is None
        why = "" if ok else f"{type(error).__name__}: {error}"[:400]
    else:
        kind, pattern = expected
        names = [c.__name__ for c in type(error).__mro__] if error is not None else []
        ok = kind in names and re.search(pattern, str(error)) is not None
        why = "" if ok else ("no error" if error is None else f"{type(error).__name__}: {error}"[:400])
    print(json.dumps({"done": case_id, "ok": ok, "why": why}), flush=True)
'''


def run_group(cases, tmp_path):
    """{case id: problem} for the cases that failed or crashed; empty when all pass."""
    problems, left = {}, list(cases)
    while left:
        spec = tmp_path / "cases.json"
        spec.write_text(json.dumps(left))
        # the repository's fastmlp, as in this process (not an installed copy: its kernels would
        # be another Numba cache, all compiled again) and hostile_cases beside this file
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(HERE.parent), str(HERE)]
            + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        done = subprocess.run([sys.executable, "-c", CHILD, str(spec)], capture_output=True,
                              text=True, timeout=600, env=env, cwd=tmp_path)
        finished, running = set(), None
        for line in done.stdout.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if "start" in record:
                running = record["start"]
            else:
                finished.add(record["done"])
                running = None
                if not record["ok"]:
                    problems[record["done"]] = record["why"]
        if done.returncode == 0:
            break
        if running is None:                     # died before or between cases
            problems["(child)"] = f"exit {done.returncode}: {done.stderr[-1500:]}"
            break
        problems[running] = f"CRASHED (exit {done.returncode}): {done.stderr[-800:]}"
        left = [c for c in left if c[0] not in finished and c[0] != running]
    return problems


def test_there_are_at_least_150_cases():
    assert sum(len(cases) for cases in GROUPS.values()) >= 150


def test_hostile_inputs(tmp_path):
    """All groups in one child (one import of fastmlp, Numba and scikit-learn), which a crash
    ends: the harness then reports that case and goes on with the rest in a new child."""
    cases = [(f"{group}/{case_id}", code, expected)
             for group in sorted(GROUPS) for case_id, code, expected in GROUPS[group]]
    problems = run_group(cases, tmp_path)
    assert not problems, "\n".join(f"{k}: {v}" for k, v in problems.items())
