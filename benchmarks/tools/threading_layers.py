"""Epoch seconds under Numba's threading layers, each layer in processes of its own, alternating.

    python -m benchmarks.tools.threading_layers [--layers tbb workqueue] [--processes 3]

Each child times three epochs of 60,000 synthetic rows at 2 threads (``bench.EpochCase``) for
the rows below and prints the best per row; the parent prints, per row and layer, the median
of the children's figures and their range. A layer that is not installed fails its child.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROWS = [((784, 128, 10), 32), ((784, 128, 10), 128), ((784, 512, 256, 10), 128)]


def child():
    import numba
    import numpy as np

    from fastmlp import bench

    rng = np.random.default_rng(0)
    X = rng.random((60000, 784), dtype=np.float32)
    y = np.arange(60000) % 10
    best = {}
    for layers, batch in ROWS:
        case = bench.EpochCase("numba", layers, batch, 2, X, y)
        case.warm_up()
        best[f"{bench.model_name(layers)}, {batch}"] = min(case.time_once() for _ in range(3))
    print(json.dumps({"layer": numba.threading_layer(), "best": best}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", nargs="+", default=["tbb", "workqueue"])
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args(argv)
    runs = {layer: [] for layer in args.layers}
    for _ in range(args.processes):
        for layer in args.layers:
            out = subprocess.run([sys.executable, "-m", "benchmarks.tools.threading_layers", "--child"],
                                 env=dict(os.environ, NUMBA_THREADING_LAYER=layer),
                                 capture_output=True, text=True, check=True)
            runs[layer].append(json.loads(out.stdout.strip().splitlines()[-1])["best"])
    print("| model, batch | " + " | ".join(args.layers) + " |")
    print("|---" * (len(args.layers) + 1) + "|")
    for key in runs[args.layers[0]][0]:
        cells = []
        for layer in args.layers:
            values = [r[key] for r in runs[layer]]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if "--child" in sys.argv:
        child()
    else:
        main()
