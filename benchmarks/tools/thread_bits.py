"""Whether each scheme's weights depend on the thread count: one epoch at 1, 2 and 3 threads.

    NUMBA_NUM_THREADS=4 python -m benchmarks.tools.thread_bits

Trains 2048 random rows for one epoch with each scheme forced (``engine.plan.FORCE_SCHEME``), from
the same weights and order, with plain SGD and with Adam, minibatches of 32 and 256, on
784-128-10 and 784-64-48-10, planned for 4 cores (``engine.plan.PLAN_CORES``) and run on 1, 2
and 3 compiled threads (``MIN_MACS_PER_THREAD`` lowered so that the plan takes them), and prints
per case the largest difference from the 1-thread weights and whether 2 and 3 threads agree
bitwise. Numba runs at most NUMBA_NUM_THREADS threads (default: the cores), so on a 2-core
machine set it to 3 or more, or "3 threads" runs 2.
"""

import numpy as np

from fastmlp import engine
from fastmlp.codes import ACTIVATIONS, HEADS
from fastmlp.engine import plan
from fastmlp.engine.lowlevel.threads import max_threads
from fastmlp.params import init_params

ROWS = 2048


def epoch_weights(layers, scheme, opt, batch, threads, X, y):
    """The weights after one epoch of ``scheme`` on ``threads`` threads."""
    forced, floor, cores = plan.FORCE_SCHEME, plan.MIN_MACS_PER_THREAD, plan.PLAN_CORES
    plan.FORCE_SCHEME, plan.MIN_MACS_PER_THREAD, plan.PLAN_CORES = scheme, 1, 4
    try:
        flat = init_params(layers, "he", np.random.default_rng(0), np.float32)
        net = engine.Network(flat, layers, ACTIVATIONS.index("relu"), HEADS.index("softmax"))
        state = engine.OptimizerState(opt, flat.size, np.float32)
        order = np.random.default_rng(1).permutation(ROWS)
        engine.train(net, state, engine.Batches(X, y, np.zeros((0, layers[-1]), np.float32),
                                                order, batch),
                     engine.Hyper.of(opt, 0.01), threads=threads)
        return flat
    finally:
        plan.FORCE_SCHEME, plan.MIN_MACS_PER_THREAD, plan.PLAN_CORES = forced, floor, cores


def main():
    rng = np.random.default_rng(0)
    print(f"Numba threads available: {max_threads()}")
    for layers in ((784, 128, 10), (784, 64, 48, 10)):
        X = rng.random((ROWS, layers[0]), dtype=np.float32)
        y = rng.integers(0, layers[-1], ROWS)
        for scheme in ("parts", "units", "rows"):
            for opt in ("sgd", "adam"):
                for batch in (32, 256):
                    w = {t: epoch_weights(layers, scheme, opt, batch, t, X, y) for t in (1, 2, 3)}
                    diffs = [float(np.abs(w[t] - w[1]).max()) for t in (2, 3)]
                    print(f"{'-'.join(map(str, layers)):14s} {scheme:5s} {opt:4s} batch {batch:3d}: "
                          f"vs 1 thread, 2 threads {diffs[0]:.2e}, 3 threads {diffs[1]:.2e}; "
                          f"2 and 3 bitwise equal: {np.array_equal(w[2], w[3])}")


if __name__ == "__main__":
    main()
