"""A first layer that skips the zeros of X, against the engine's dense products, one thread.

MNIST's pixels are 81% zeros (Fashion-MNIST's 50%). The dense products multiply every element
of X; fastmlp/engine/lowlevel/sparse.py takes only the non-zeros, from X in compressed rows
(CSR) and columns (CSC). This probe times them against the dense products, float32, over
``rows`` rows of X in blocks of 128 (the rows scheme's block), for a layer of 784 inputs and
each N units:

- forward, CSR (``sparse_rows_epilogue``): ``Z[i] = relu(b + sum_p x_p * W[k_p])``;
- weight gradient, CSC (``sparse_column_sums``): ``dW[k] = sum_p x_p * dz[r_p]`` over the
  non-zeros of column k of X (dz of all rows kept: a pass over all rows before the gradient);
- weight gradient, CSR scatter (``sparse_rank_update``, the units scheme's): ``S[k_p] += x_p *
  dz[i]`` for each non-zero of each row into a zeroed scratch S, then G += S; only for N a
  whole number of vectors (a masked store per non-zero was several times slower on this
  machine: docs/performance.md, "Sparse inputs").

Dense: the engine's products for that layer (``dots_pay``: dot products, else the tiles), as
benchmarks/tools/narrow_products.py runs them. Milliseconds per pass over the rows, medians of
paired, interleaved rounds; each sparse result is checked against NumPy first.

    python -m benchmarks.tools.sparse_inputs [--data mnist|fashion] [--units 10 20 128]
    python -m benchmarks.tools.sparse_inputs --data fashion --density 0.3   # the crossover

``--density D`` zeroes a random share of X's non-zeros (fixed seed) until D of its elements
are non-zero: the same pixels' layout, thinned, to find the density where sparse stops paying.

``--steps MODEL`` times whole steps in the engine instead (``engine.train``, full batch or
``--batch B`` rows, shuffled epochs or ``--drawn`` with replacement, plain SGD, float32, the
scheme the plan picks), dense against the non-zeros (a
``CompressedX`` passed, X compressed once before the timing, as ``MLP.fit`` does; at any
density, SPARSE_MAX_DENSITY set aside), at each
``--threads`` count; ms per step, medians of paired, interleaved rounds of ``--epochs`` steps:

    python -m benchmarks.tools.sparse_inputs --steps 784-20-10 --threads 1 2
    python -m benchmarks.tools.sparse_inputs --steps 784-128-10 --batch 128 --drawn --act sigmoid
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from numba import njit

from fastmlp.engine.lowlevel.dots import dots_pay
from fastmlp.engine.lowlevel.sparse import (compress, sparse_column_sums, sparse_rank_update,
                                            sparse_rows_epilogue)
from fastmlp.engine.lowlevel.tiles import EPI_BIAS_RELU, VECTOR_BYTES

from .narrow_products import BLOCK, _blocks

LANES = VECTOR_BYTES // 4                       # float32 lanes per vector


@njit
def _sparse_pass(Z, G, csr, W, b, D, forward, scatter, S):
    """Over all rows of X in blocks of BLOCK: the forward pass, then (``scatter``) the block's
    weight gradient by rows added into G (scratch S), by the engine's kernels."""
    n_rows = csr[0].shape[0] - 1
    for r0 in range(0, n_rows, BLOCK):
        r1 = min(r0 + BLOCK, n_rows)
        if forward:
            sparse_rows_epilogue(Z[:r1 - r0], np.arange(r0, r1), csr, W, EPI_BIAS_RELU,
                                 b.ctypes.data)
        if scatter:
            sparse_rank_update(G, np.arange(r0, r1), csr, D[:r1 - r0], 1.0, 1.0, S)


def thinned(X, density, seed=0):
    """X with a random share of its non-zeros set to zero, so that ``density`` of its elements
    are non-zero (X itself when it has no more than that)."""
    rows, cols = np.nonzero(X)
    keep = int(round(density * X.size))
    if keep >= rows.size:
        return X
    drop = np.random.default_rng(seed).choice(rows.size, rows.size - keep, replace=False)
    X = X.copy()
    X[rows[drop], cols[drop]] = 0.0
    return X


def _data(name, n_rows):
    """The first ``n_rows`` images of MNIST (../shared/data/mnist, or FASTMLP_MNIST_DIR) or of
    Fashion-MNIST, in [0, 1], float32."""
    from fastmlp.bench import FASHION_MNIST_DIR
    from fastmlp.data import load

    folder = FASHION_MNIST_DIR if name == "fashion" else (
        os.environ.get("FASTMLP_MNIST_DIR")
        or str(Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"))
    X = np.asarray(load(folder).X_train[:n_rows], dtype=np.float32)
    return np.ascontiguousarray(X / 255.0 if X.max() > 1.0 else X)


def compare(X, n, rounds):
    """{what: median ms per pass over X's rows} for a layer of n units, sparse and dense."""
    k, n_rows = X.shape[1], X.shape[0]
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(n) * 0.05).astype(np.float32)
    D_all = rng.standard_normal((n_rows, n)).astype(np.float32)
    D = D_all[:BLOCK].copy()
    Z, G = np.zeros((BLOCK, n), np.float32), np.zeros((k, n), np.float32)
    csr, csc = compress(X)
    scatter = n % LANES == 0
    # checked against NumPy on the last block and on all rows before any timing
    S = np.empty((k, n), np.float32)
    _sparse_pass(Z, G, csr, W, b, D, True, scatter, S)
    last = (n_rows - 1) // BLOCK * BLOCK
    np.testing.assert_allclose(Z[:n_rows - last], np.maximum(X[last:] @ W + b, 0), atol=1e-4)
    if scatter:
        expect = sum(X[r0:r0 + BLOCK].T @ D[:len(X[r0:r0 + BLOCK])]
                     for r0 in range(0, n_rows, BLOCK))
        np.testing.assert_allclose(G, expect, rtol=1e-4, atol=1e-2)
    sparse_column_sums(G, csc, D_all, 0)
    np.testing.assert_allclose(G, X.T @ D_all, rtol=1e-4, atol=1e-2)

    dots = dots_pay(k, n, 4)
    B = np.ascontiguousarray(W.T) if dots else W
    G_dense = np.zeros_like(B)
    addr = np.zeros(BLOCK, np.int64)
    runs = {
        "dense": lambda: _blocks(X, B, b, Z, D, G_dense, addr, 1, dots, True, True),
        "sparse forward": lambda: _sparse_pass(Z, G, csr, W, b, D, True, False, S),
        "sparse gradient, CSC": lambda: sparse_column_sums(G, csc, D_all, 0),
    }
    if scatter:
        runs["sparse gradient, scatter"] = lambda: _sparse_pass(Z, G, csr, W, b, D, False, True,
                                                                S)
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: float(np.median(t)) for name, t in times.items()}, dots


def engine_steps(X, layers, threads, rounds, steps, batch=None, act="relu", drawn=False):
    """{"dense" / "non-zeros": median ms per step} of ``layers`` on X at ``threads`` threads,
    and the median ratio of the paired rounds: full batch (``batch`` None: shuffled epochs), or
    minibatches of ``batch`` rows from shuffled epochs or ``drawn`` with replacement."""
    from fastmlp import engine
    from fastmlp.codes import ACTIVATIONS, HEADS
    from fastmlp.engine.lowlevel.sparse import CompressedX
    from fastmlp.params import init_params

    n = X.shape[0]
    batch = batch or n
    rng = np.random.default_rng(0)
    y = rng.integers(0, layers[-1], n)
    if drawn:
        order = rng.integers(0, n, steps * batch).astype(np.int64)
    else:
        order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch // n))])
        order = order[:steps * batch].astype(np.int64)
    start = init_params(layers, "he", np.random.default_rng(1), np.float32)
    inputs = CompressedX()
    inputs.columns(X)                           # and its CSR
    engine.plan.SPARSE_MAX_DENSITY = 1.0        # the non-zeros at any density: the crossover

    def run(compressed):
        flat = start.copy()
        net = engine.Network(flat, layers, ACTIVATIONS.index(act), HEADS.index("softmax"))
        batches = engine.Batches(X, y, np.zeros((0, layers[-1]), np.float32), order, batch,
                                 compressed=compressed)
        with engine.tuner.fixed():
            began = time.perf_counter()
            stats = engine.train(net, engine.OptimizerState("sgd", flat.size, np.float32),
                                 batches, engine.Hyper.of("sgd", 0.1), threads, guard=False)
        if stats.engine != "numba":
            raise RuntimeError("the compiled engine did not run (set FASTMLP_COMPILE=wait)")
        return 1e3 * (time.perf_counter() - began) / steps

    run(None), run(inputs)
    times = {"dense": [], "non-zeros": []}
    for _ in range(rounds):
        times["dense"].append(run(None))
        times["non-zeros"].append(run(inputs))
    ratio = np.median(np.array(times["dense"]) / np.array(times["non-zeros"]))
    return {k: float(np.median(v)) for k, v in times.items()}, float(ratio)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("mnist", "fashion"), default="mnist")
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--units", type=int, nargs="+", default=[10, 20, 25, 32, 128])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--density", type=float, default=None,
                        help="thin X's non-zeros at random to this share of its elements")
    parser.add_argument("--steps", metavar="MODEL", help="time engine steps of MODEL (784-20-10)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=50, help="steps per round (--steps)")
    parser.add_argument("--batch", type=int, default=None, help="minibatch rows (--steps; "
                        "default: full batch)")
    parser.add_argument("--act", default="relu", help="hidden activation (--steps)")
    parser.add_argument("--drawn", action="store_true",
                        help="minibatches drawn with replacement (--steps)")
    args = parser.parse_args(argv)
    X = _data(args.data, args.rows)
    if args.density is not None:
        X = thinned(X, args.density)
    if args.steps:
        layers = tuple(int(v) for v in args.steps.replace(",", "-").split("-"))
        how = (f"batch {args.batch}{' drawn' if args.drawn else ''}" if args.batch
               else "full batch")
        print(f"{args.data}: {X.shape[0]} rows, {np.mean(X != 0):.0%} non-zero; {args.steps} "
              f"{args.act}, {how}, ms per step, medians of {args.rounds} interleaved rounds of "
              f"{args.epochs} steps\n\n| threads | dense | non-zeros | paired ratio |\n"
              "|---|---|---|---|")
        for t in args.threads:
            ms, ratio = engine_steps(X, layers, t, args.rounds, args.epochs, args.batch,
                                     args.act, args.drawn)
            print(f"| {t} | {ms['dense']:.3g} | {ms['non-zeros']:.3g} | {ratio:.2f}x |",
                  flush=True)
        return
    print(f"{args.data}: {X.shape[0]} rows, {np.mean(X != 0):.0%} non-zero; ms per pass over "
          f"the rows, medians of {args.rounds} interleaved rounds, 1 thread\n")
    print("| N | dense (its products) | sparse forward | sparse gradient, scatter | "
          "sparse gradient, CSC | sparse forward + best gradient |\n|---|---|---|---|---|---|")
    for n in args.units:
        ms, dots = compare(X, n, args.rounds)
        scatter = ms.get("sparse gradient, scatter")
        best = min(scatter or np.inf, ms["sparse gradient, CSC"])
        print(f"| {n} | {ms['dense']:.2f} ({'dots' if dots else 'tiles'}) | "
              f"{ms['sparse forward']:.2f} | {'-' if scatter is None else f'{scatter:.2f}'} | "
              f"{ms['sparse gradient, CSC']:.2f} | {ms['sparse forward'] + best:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
