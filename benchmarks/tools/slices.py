"""One MLP.fit epoch with fit's time-sized calls against the old fixed calls of 16,384 samples,
paired and interleaved (the order alternating), 2 threads, 60,000 synthetic rows.

    python -m benchmarks.tools.slices [--rounds 9]
"""

import argparse
import time

import numpy as np

import fastmlp
import fastmlp.model as M
from fastmlp.flops import model_name

ROWS = [((784, 128, 10), 32), ((784, 128, 10), 128), ((784, 512, 256, 10), 128)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    X = rng.random((60000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
    timed_calls = M.whole_batches
    for layers, batch in ROWS:
        model = fastmlp.MLP(layers, seed=0, threads=2)
        model.fit(X[:5000], y[:5000], epochs=1, batch_size=batch)
        seconds = {"fixed": [], "timed": []}
        for r in range(args.rounds):
            for name in (("fixed", "timed") if r % 2 == 0 else ("timed", "fixed")):
                M.whole_batches = ((lambda samples, b: M.SLICE_SAMPLES // b * b)
                                   if name == "fixed" else timed_calls)
                time.sleep(0.5)
                start = time.perf_counter()
                model.fit(X, y, epochs=1, batch_size=batch)
                seconds[name].append(time.perf_counter() - start)
        M.whole_batches = timed_calls
        fixed, timed = np.median(seconds["fixed"]), np.median(seconds["timed"])
        print(f"{model_name(layers)} batch {batch}: fixed {fixed:.3f} s, "
              f"timed {timed:.3f} s, timed/fixed {timed / fixed:.3f}")


if __name__ == "__main__":
    main()
