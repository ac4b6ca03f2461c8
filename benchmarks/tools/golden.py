"""Golden final weights: a fixed set of training runs whose weights must not change bit for bit
when the engine is restructured without meaning to change its arithmetic.

    python -m benchmarks.tools.golden --record tests/data/golden.json   # before the change
    python -m benchmarks.tools.golden --check tests/data/golden.json    # after it

Each run trains from fixed weights and data and stores a SHA-256 of the final flat parameters
(and of the predictions): every hidden activation x head x optimizer, full-batch and minibatch
(whole and in the units scheme's pieces), float32 and float64, 1 and 2 threads, one and two
hidden layers, with and without sample weights; plus the functional API and the scikit-learn
estimators. The nets are wide enough that 2 threads really run 2 threads (the plan is recorded
with each run). Bits depend on the machine's BLAS and instruction set, so the file records a
fingerprint of them and ``--check`` compares only where it matches.
"""

import argparse
import hashlib
import itertools
import json
import platform
import sys

import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")
HEADS = ("softmax", "identity", "sigmoid", "logistic")
# (name, fit keyword arguments)
OPTIMIZERS = (
    ("sgd", {"optimizer": "sgd", "lr": 0.05}),
    ("momentum", {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 1e-3}),
    ("nesterov", {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "nesterov": True,
                  "weight_decay": 1e-3}),
    ("adam", {"optimizer": "adam", "lr": 0.002, "weight_decay": 1e-3}),
)
# batch sizes: 32 (units, whole), 160 (units, in pieces of 128), None (full batch: parts)
BATCHES = (32, 160, None)
N_SAMPLES = 1280
N_FEATURES = 64
N_OUT = 6
HIDDEN = ((256,), (192, 96))


def fingerprint():
    """What the bits depend on besides the code: library versions, BLAS, instruction set."""
    import numba

    from fastmlp.engine.lowlevel.blas import blas_name
    from fastmlp.engine.lowlevel.tiles import VECTOR_BYTES

    return {"numpy": np.__version__, "numba": numba.__version__, "blas": blas_name(),
            "vector_bytes": int(VECTOR_BYTES), "machine": platform.machine()}


def _digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


def _problem(head, dtype):
    rng = np.random.default_rng(7)
    X = rng.random((N_SAMPLES, N_FEATURES)).astype(dtype)
    teacher = rng.standard_normal((N_FEATURES, N_OUT))
    z = (X - 0.5) @ teacher
    if head == "identity":
        y = (z / 4).astype(dtype)
    elif head == "logistic":
        y = (z > 0).astype(np.int64)
    else:
        y = z.argmax(axis=1)
    w = rng.random(N_SAMPLES) + 0.25
    return X, y, w


def mlp_runs(quick=False):
    """{key: digest} of MLP.fit over the grid (``quick``: a small subset, for a test)."""
    from fastmlp import MLP, TrainingDiverged

    out = {}
    grid = itertools.product(("float32", "float64"), HEADS, ACTIVATIONS, OPTIMIZERS, BATCHES,
                             (1, 2), HIDDEN)
    for i, (dtype, head, act, (opt_name, opt), batch, threads, hidden) in enumerate(grid):
        if quick and i % 37:
            continue
        X, y, w = _problem(head, dtype)
        weighted = (i % 5 == 0)
        model = MLP([N_FEATURES, *hidden, N_OUT], activation=act, output=head, dtype=dtype,
                    seed=3, threads=threads)
        try:
            model.fit(X, y, epochs=2, batch_size=batch, sample_weight=w if weighted else None,
                      **opt)
            note = ""
        except TrainingDiverged as exc:         # where and how it diverged is behaviour too
            note = str(exc)
        proba = model.predict(X[:100]) if head == "identity" else model.predict_proba(X[:100])
        key = (f"mlp/{dtype}/{head}/{act}/{opt_name}/b{batch}/t{threads}/"
               f"h{'-'.join(map(str, hidden))}{'/w' if weighted else ''}")
        out[key] = _digest(model._flat, proba, np.frombuffer(note.encode(), np.uint8))
    return out


def other_runs():
    """The functional API and the scikit-learn estimators (when installed)."""
    from fastmlp import functional as F

    out = {}
    for dtype, threads in itertools.product(("float32", "float64"), (1, 2)):
        X, y, _ = _problem("softmax", dtype)
        params = F.init([N_FEATURES, 192, 96, N_OUT], seed=1, dtype=dtype)
        for epoch in range(2):
            F.train_epoch(params, X, y, lr=0.05, batch_size=32, rng=epoch, threads=threads,
                          weight_decay=1e-3)
        loss, grads = F.loss_and_grad(params, X, y, threads=threads)
        fwd = F.forward(params, X[:64], threads=threads)
        back = F.backward(params, fwd, y[:64], threads=threads)
        flat = [a for pair in params + grads + back for a in pair]
        out[f"functional/{dtype}/t{threads}"] = _digest(*flat, np.float64(loss),
                                                        F.predict(params, X, threads=threads))
    try:
        from fastmlp.sklearn import MLPClassifier, MLPRegressor
    except ImportError:
        return out
    for dtype, solver, threads in itertools.product(("float32", "float64"),
                                                    ("sgd", "adam", "lbfgs"), (1, 2)):
        X, y, _ = _problem("softmax", dtype)
        clf = MLPClassifier(hidden_layer_sizes=(192, 96), solver=solver, max_iter=3, random_state=0, dtype=dtype,
                            threads=threads, momentum=0.9, alpha=1e-3).fit(X, y)
        out[f"sklearn/clf/{dtype}/{solver}/t{threads}"] = _digest(*clf.coefs_, *clf.intercepts_,
                                                                  clf.predict_proba(X))
        Xr, yr, _ = _problem("identity", dtype)
        reg = MLPRegressor(hidden_layer_sizes=(64,), solver=solver, max_iter=3, random_state=0, dtype=dtype,
                           threads=threads).fit(Xr, yr)
        out[f"sklearn/reg/{dtype}/{solver}/t{threads}"] = _digest(*reg.coefs_, *reg.intercepts_,
                                                                  reg.predict(Xr))
    return out


def compute(quick=False):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = mlp_runs(quick)
        if not quick:
            runs.update(other_runs())
    return runs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--record", metavar="FILE")
    group.add_argument("--check", metavar="FILE")
    args = parser.parse_args(argv)
    if args.record:
        data = {"fingerprint": fingerprint(), "runs": compute()}
        with open(args.record, "w") as f:
            json.dump(data, f, indent=0, sort_keys=True)
        print(f"recorded {len(data['runs'])} runs in {args.record}")
        return 0
    with open(args.check) as f:
        data = json.load(f)
    if data["fingerprint"] != fingerprint():
        print(f"fingerprint differs: recorded {data['fingerprint']}, here {fingerprint()}")
        return 2
    runs = compute()
    bad = sorted(k for k in data["runs"] if runs.get(k) != data["runs"][k])
    for key in bad[:40]:
        print("DIFFERS", key)
    print(f"{len(data['runs']) - len(bad)} of {len(data['runs'])} runs match bitwise")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
