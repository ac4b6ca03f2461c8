"""The five from-scratch notebooks' training loops (../shared/seeds/) against fastmlp, in one run.

Each loop is written as its notebook wrote it — vectorised NumPy, float64, its layout (000 and
003 keep samples in columns), its initialisation, rate and step count — and trained on the same
data as fastmlp's equivalent ``MLP.fit``: the first 8000 images of the real MNIST test set
(../shared/data/mnist, or FASTMLP_MNIST_DIR) for training, the last 2000 for the accuracy.
Rounds alternate notebook and fastmlp, each round from its own seed; the times are medians, the
accuracies means over the rounds (one seed's test accuracy on 2000 images moves by about half a
point from seed to seed, more than the two differ). "fastmlp / floor": fastmlp's
median time over the GEMM floor of its fit (the matrix-product FLOPs of every sample it trains
on, at this machine's sgemm rate on the threads it runs, :mod:`fastmlp.flops`).

    python -m benchmarks.notebooks                 # all five, 3 rounds
    python -m benchmarks.notebooks --only 000 --scale 0.2 --threads 1

Take the figures on a quiet machine: a busy one slows the notebooks' multi-threaded BLAS
several-fold and flatters fastmlp.
"""

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from fastmlp import MLP
from fastmlp.bench import SETTLE_SECONDS
from fastmlp.flops import floor_seconds, gemm_gflops
from fastmlp.engine.lowlevel.threads import available_cores, thread_limits

N_TRAIN = 8000


def mnist():
    """(X_train, y_train, X_test, y_test): pixels in [0, 1], float64."""
    from fastmlp.data import load

    folder = os.environ.get("FASTMLP_MNIST_DIR") or str(
        Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
    ds = load(folder)
    X = np.asarray(ds.X_train, dtype=np.float64)
    X = X / 255.0 if X.max() > 1.0 else X
    y = np.asarray(ds.y_train, dtype=np.int64)
    return X[:N_TRAIN], y[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:]


def _relu(z):
    return np.maximum(z, 0)


def _softmax_columns(z):
    e = np.exp(z - z.max(axis=0))
    return e / e.sum(axis=0)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _full_batch_columns(X, y, hidden, iterations, rng):
    """000 (784-20-10) and 003 (784-10-10): samples in columns, U(-0.5, 0.5) weights, relu,
    softmax, full-batch gradient descent at rate 0.1."""
    Xc, m = X.T.copy(), X.shape[0]
    Y = np.zeros((10, m))
    Y[y, np.arange(m)] = 1
    W1, b1 = rng.random((hidden, 784)) - 0.5, rng.random((hidden, 1)) - 0.5
    W2, b2 = rng.random((10, hidden)) - 0.5, rng.random((10, 1)) - 0.5
    for _ in range(iterations):
        Z1 = W1 @ Xc + b1
        A1 = _relu(Z1)
        A2 = _softmax_columns(W2 @ A1 + b2)
        dZ2 = A2 - Y
        dW2, db2 = dZ2 @ A1.T / m, dZ2.sum(axis=1, keepdims=True) / m
        dZ1 = (W2.T @ dZ2) * (Z1 > 0)
        dW1, db1 = dZ1 @ Xc.T / m, dZ1.sum(axis=1, keepdims=True) / m
        W1, b1, W2, b2 = W1 - 0.1 * dW1, b1 - 0.1 * db1, W2 - 0.1 * dW2, b2 - 0.1 * db2
    return lambda Xt: np.argmax(W2 @ _relu(W1 @ Xt.T + b1) + b2, axis=0)


def _full_batch_rows(X, y, iterations, rng):
    """001 (784-25-15-10): samples in rows, relu, softmax, full-batch gradient descent (its
    N(0, 1) start and rate 0.001 reached 9.8%; here He-scaled and rate 0.1, as fastmlp's)."""
    m = X.shape[0]
    Y = np.zeros((m, 10))
    Y[np.arange(m), y] = 1
    sizes = (784, 25, 15, 10)
    Ws = [rng.standard_normal((a, b)) * np.sqrt(2.0 / a) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.zeros((1, b)) for b in sizes[1:]]
    for _ in range(iterations):
        A = [X]
        for W, b in zip(Ws[:-1], bs[:-1]):
            A.append(_relu(A[-1] @ W + b))
        Z = A[-1] @ Ws[-1] + bs[-1]
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        dZ = (P / P.sum(axis=1, keepdims=True) - Y) / m
        for l in range(len(Ws) - 1, -1, -1):
            dW, db = A[l].T @ dZ, dZ.sum(axis=0, keepdims=True)
            if l:
                dZ = (dZ @ Ws[l].T) * (A[l] > 0)
            Ws[l], bs[l] = Ws[l] - 0.1 * dW, bs[l] - 0.1 * db

    def predict(Xt):
        a = Xt
        for W, b in zip(Ws[:-1], bs[:-1]):
            a = _relu(a @ W + b)
        return np.argmax(a @ Ws[-1] + bs[-1], axis=1)
    return predict


def _drawn_sigmoid(X, y, steps, rng):
    """002 (784-128-10, no biases): 128 samples drawn with replacement per step, sigmoid hidden
    layer, sigmoid outputs with the squared error (the notebook squashes its outputs with
    softmax), summed gradients at rate 0.001."""
    l1 = rng.uniform(-1, 1, (784, 128)) / np.sqrt(784 * 128)
    l2 = rng.uniform(-1, 1, (128, 10)) / np.sqrt(128 * 10)
    for _ in range(steps):
        rows = rng.integers(0, X.shape[0], 128)
        x, t = X[rows], np.zeros((128, 10))
        t[np.arange(128), y[rows]] = 1
        h = _sigmoid(x @ l1)
        out = _sigmoid(h @ l2)
        err = (out - t) * out * (1 - out)
        up2 = h.T @ err
        err = (err @ l2.T) * h * (1 - h)
        l1, l2 = l1 - 0.001 * (x.T @ err), l2 - 0.001 * up2
    return lambda Xt: np.argmax(_sigmoid(Xt @ l1) @ l2, axis=1)


def _minibatch_sigmoid(X, y, epochs, rng):
    """004 (784-20-10): minibatches of 10 from a shuffled epoch, sigmoid everywhere, squared
    error, rate 2.0 for 30 epochs, 0.4 for 30, 0.01 for the rest (mean over the minibatch)."""
    W1, b1 = rng.standard_normal((784, 20)), rng.standard_normal(20)
    W2, b2 = rng.standard_normal((20, 10)), rng.standard_normal(10)
    T = np.eye(10)[y]
    for epoch in range(epochs):
        lr = 2.0 if epoch < 30 else 0.4 if epoch < 60 else 0.01
        order = rng.permutation(X.shape[0])
        for s in range(0, len(order), 10):
            rows = order[s:s + 10]
            x = X[rows]
            h = _sigmoid(x @ W1 + b1)
            out = _sigmoid(h @ W2 + b2)
            d2 = (out - T[rows]) * out * (1 - out) / len(rows)
            d1 = (d2 @ W2.T) * h * (1 - h)
            W2, b2 = W2 - lr * (h.T @ d2), b2 - lr * d2.sum(axis=0)
            W1, b1 = W1 - lr * (x.T @ d1), b1 - lr * d1.sum(axis=0)
    return lambda Xt: np.argmax(_sigmoid(_sigmoid(Xt @ W1 + b1) @ W2 + b2), axis=1)


def notebooks(scale=1.0):
    """{name: (notebook trainer(X, y, rng) -> predict, fastmlp (MLP kwargs, fit kwargs))}."""
    def n(count):
        return max(1, int(round(count * scale)))
    return {
        "000 784-20-10 full batch": (
            lambda X, y, rng: _full_batch_columns(X, y, 20, n(500), rng),
            ({"layers": (784, 20, 10), "activation": "relu"},
             {"epochs": n(500), "batch_size": None, "lr": 0.1})),
        "003 784-10-10 full batch": (
            lambda X, y, rng: _full_batch_columns(X, y, 10, n(1000), rng),
            ({"layers": (784, 10, 10), "activation": "relu"},
             {"epochs": n(1000), "batch_size": None, "lr": 0.1})),
        "001 784-25-15-10 full batch": (
            lambda X, y, rng: _full_batch_rows(X, y, n(500), rng),
            ({"layers": (784, 25, 15, 10), "activation": "relu"},
             {"epochs": n(500), "batch_size": None, "lr": 0.1})),
        "002 784-128-10 drawn 128": (
            lambda X, y, rng: _drawn_sigmoid(X, y, n(10000), rng),
            ({"layers": (784, 128, 10), "activation": "sigmoid", "output": "sigmoid"},
             {"epochs": n(10000) * 128 // N_TRAIN, "batch_size": 128, "replacement": True,
              "lr": 0.128})),
        "004 784-20-10 batch 10": (
            lambda X, y, rng: _minibatch_sigmoid(X, y, n(66), rng),
            ({"layers": (784, 20, 10), "activation": "sigmoid", "output": "sigmoid"},
             {"epochs": n(66), "batch_size": 10,
              "lr_schedule": {0: 2.0, n(30): 0.4, n(60): 0.01}, "lr": 2.0})),
    }


def run(only=None, scale=1.0, rounds=3, threads=None):
    """Rows of (name, notebook s, fastmlp s, ratio, notebook accuracy, fastmlp accuracy (means
    over the rounds), fastmlp s over its GEMM floor)."""
    X, y, Xt, yt = mnist()
    threads = threads or available_cores()
    gflops = gemm_gflops(threads)
    rows = []
    for name, (loop, (model_kw, fit_kw)) in notebooks(scale).items():
        if only and not any(name.startswith(o) for o in only):
            continue
        times = {"notebook": [], "fastmlp": []}
        acc = {"notebook": [], "fastmlp": []}
        for r in range(rounds + 1):             # round 0 warms up (compiles), untimed
            time.sleep(SETTLE_SECONDS)          # BLAS threads of the last run go idle first
            with thread_limits(1, threads):
                start = time.perf_counter()
                predict = loop(X, y, np.random.default_rng(r))
                seconds = time.perf_counter() - start
            if r:
                times["notebook"].append(seconds)
                acc["notebook"].append(float(np.mean(predict(Xt) == yt)))
            model = MLP(dtype="float32", seed=r, threads=threads, **model_kw)
            fit_kw_r = fit_kw if r else {**fit_kw, "epochs": 1}
            time.sleep(SETTLE_SECONDS)
            start = time.perf_counter()
            model.fit(X, y, **fit_kw_r)
            seconds = time.perf_counter() - start
            if r:
                times["fastmlp"].append(seconds)
                acc["fastmlp"].append(float(np.mean(model.predict(Xt) == yt)))
        ratios = [a / b for a, b in zip(times["notebook"], times["fastmlp"])]
        epochs = fit_kw["epochs"]
        floor = floor_seconds(model_kw["layers"], epochs * N_TRAIN, gflops)
        fast = statistics.median(times["fastmlp"])
        accuracy = {k: statistics.mean(v) for k, v in acc.items()}
        rows.append((name, statistics.median(times["notebook"]), fast, statistics.median(ratios),
                     accuracy["notebook"], accuracy["fastmlp"], fast / floor))
        print(f"| {name} | {rows[-1][1]:.2f} | {rows[-1][2]:.2f} | {rows[-1][3]:.1f}x | "
              f"{rows[-1][4]:.3f} | {rows[-1][5]:.3f} | {rows[-1][6]:.2f}x |", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", help="notebook numbers, e.g. 000 004")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of each loop's steps")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="default: all cores")
    args = p.parse_args(argv)
    print(f"{N_TRAIN} training images, {args.rounds} rounds, threads "
          f"{args.threads or available_cores()}, scale {args.scale}\n")
    print("| notebook | its NumPy loop s | fastmlp s | speed-up (paired median) | its accuracy "
          "| fastmlp accuracy | fastmlp / floor |\n|---|---|---|---|---|---|---|")
    run(args.only, args.scale, args.rounds, args.threads)


if __name__ == "__main__":
    main()
