"""Seconds per epoch of the compiled engine for SGD, momentum and Adam (60000 x 784 synthetic
float32 data, 784-128-10, all cores, median of 3), threads planned as fastmlp.MLP plans them.

    python -m benchmarks.tools.optimizer_epochs
"""

import time

import numpy as np

from fastmlp import engine
from fastmlp.params import init_params

LAYERS = (784, 128, 10)


def main():
    rng = np.random.default_rng(0)
    X = rng.random((60000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
    start = init_params(LAYERS, "he", rng, np.float32)
    Y = np.zeros((0, 10), np.float32)
    for batch in (32, 128, 512):
        for name, opt, momentum in (("sgd", "sgd", 0.0), ("momentum", "sgd", 0.9),
                                    ("adam", "adam", 0.0)):
            flat = start.copy()
            net = engine.Network(flat, LAYERS, 1, 0)
            state = engine.OptimizerState(opt, flat.size, flat.dtype)
            hyper = engine.Hyper.of(opt, 0.01, momentum)
            times = []
            for run in range(4):                    # the first run compiles or loads the cache
                order = rng.permutation(len(X)) if run else np.arange(2000)
                t = time.perf_counter()
                engine.train(net, state, engine.Batches(X, y, Y, order, batch), hyper,
                             guard=False)
                times.append(time.perf_counter() - t)
            plan = engine.plan_training(engine._threads(None), batch, LAYERS, len(X))
            print(f"batch {batch:4d}  {name:9s} plan {tuple(plan)}: {np.median(times[1:]):.3f} s/epoch")


if __name__ == "__main__":
    main()
