"""Seconds per epoch of the compiled engine for SGD, momentum and Adam (60000 x 784 synthetic
float32 data, 784-128-10, all cores, median of 3), threads planned as fastmlp.MLP plans them.

    python -m benchmarks.tools.optimizer_epochs
"""

import time

import numpy as np

from fastmlp import engine
from fastmlp.params import init_params
from fastmlp.threads import available_cores, thread_limits

LAYERS = (784, 128, 10)


def main():
    rng = np.random.default_rng(0)
    X = rng.random((60000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
    start = init_params(LAYERS, "he", rng, np.float32)
    Y = np.zeros((0, 10), np.float32)
    for batch in (32, 128, 512):
        plan = engine.thread_plan(available_cores(), batch, LAYERS)
        for name, opt, momentum in (("sgd", 0, 0.0), ("momentum", 0, 0.9), ("adam", 1, 0.0)):
            flat = start.copy()
            state1 = np.zeros_like(flat)
            state2 = np.zeros_like(flat) if opt == 1 else flat[:0]
            times = []
            with thread_limits(*plan):
                for run in range(4):                # the first run compiles or loads the cache
                    order = rng.permutation(len(X)) if run else np.arange(2000)
                    t = time.perf_counter()
                    engine.train_batches(flat, np.array(LAYERS), 1, 0, X, y, Y, order, batch, opt,
                                         0.01, momentum, False, 0.0, 0.9, 0.999, 1e-8, state1,
                                         state2, 0)
                    times.append(time.perf_counter() - t)
            print(f"batch {batch:4d}  {name:9s} plan {plan}: {np.median(times[1:]):.3f} s/epoch")


if __name__ == "__main__":
    main()
