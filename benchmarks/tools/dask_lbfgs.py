"""Full-batch L-BFGS on real MNIST on a 2-worker local Dask cluster against one process.

    python -m benchmarks.tools.dask_lbfgs                  # 784,128,10, 100 iterations
    python -m benchmarks.tools.dask_lbfgs --layers 784,32,10 --iterations 50 --chunks 4
    python -m benchmarks.tools.dask_lbfgs --dtype float64

The MNIST t10k images (../shared/data/mnist or FASTMLP_MNIST_DIR) split 8000/2000 as the
from-scratch notebooks split them. Trains the same model (``--dtype``, default float32) with the
same L-BFGS (``fastmlp.fullbatch.fit`` in this process on all cores; ``fastmlp.dask.fit`` on a
LocalCluster of 2 worker processes with 1 thread each, the training rows in ``--chunks``
chunks) and prints each one's test accuracy, iterations and seconds per iteration. Then the
bare cost of one Dask round (the weights out, one task per chunk, the tree sum, the result
back), timed with chunks of 4 rows: the overhead an iteration pays on top of the arithmetic.
"""

import argparse
import time

import numpy as np

from fastmlp import MLP, fullbatch
from fastmlp.data import load, train_test_split

from ..common import MNIST_DIR


def round_trip_seconds(client, layers, chunks, dtype, rounds=30):
    """Median seconds of one fastmlp.dask objective round on chunks of 4 rows."""
    import dask.array as da

    import fastmlp.dask as fdask

    rng = np.random.default_rng(0)
    X = rng.random((4 * chunks, layers[0]))
    y = np.arange(4 * chunks) % layers[-1]
    model = MLP(list(layers), dtype=dtype)
    fdask.fit(model, da.from_array(X, chunks=(4, layers[0])), y, solver="gd", max_iter=rounds,
              lr=1e-9, tol=0.0, client=client)
    return float(np.median(model.history_["seconds"][1:]))


def main(layers, iterations, chunks, dtype):
    import dask.array as da
    from distributed import Client, LocalCluster

    import fastmlp.dask as fdask

    data = load(MNIST_DIR)
    X_train, y_train, X_test, y_test = train_test_split(data.X_train, data.y_train, 0.2, 0)
    one = MLP(list(layers), seed=0, dtype=dtype)
    fullbatch.fit(MLP(list(layers), dtype=dtype), X_train[:100], y_train[:100], max_iter=1)
    start = time.perf_counter()
    h_one = fullbatch.fit(one, X_train, y_train, solver="lbfgs", max_iter=iterations)
    s_one = time.perf_counter() - start
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        spread = MLP(list(layers), seed=0, dtype=dtype)
        rows = -(-len(y_train) // chunks)
        X = da.from_array(X_train, chunks=(rows, X_train.shape[1]))
        start = time.perf_counter()
        h = fdask.fit(spread, X, y_train, solver="lbfgs", max_iter=iterations, client=client)
        s_spread = time.perf_counter() - start
        bare = round_trip_seconds(client, layers, chunks, dtype)
    print(f"MNIST 8000/2000, {','.join(map(str, layers))} {dtype}, L-BFGS up to {iterations} "
          f"iterations:")
    for name, model, history, seconds in (("one process", one, h_one, s_one),
                                          (f"2 workers, {chunks} chunks", spread, h, s_spread)):
        n = len(history["loss"])
        print(f"  {name:22s} test accuracy {model.score(X_test, y_test):.4f}  {n} iterations, "
              f"{seconds:.2f} s ({1e3 * np.median(history['seconds']):.1f} ms/iteration median), "
              f"final loss {history['loss'][-1]:.3g}")
    print(f"  a bare Dask round ({chunks} chunks of 4 rows): {1e3 * bare:.1f} ms median")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", default="784,128,10")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--chunks", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    args = p.parse_args()
    main(tuple(int(v) for v in args.layers.split(",")), args.iterations, args.chunks, args.dtype)
