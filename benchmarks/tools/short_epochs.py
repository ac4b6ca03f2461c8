"""MLP.fit on short epochs, several to a compiled call (fit's default when nothing runs between
epochs) against one call per epoch (what a per-epoch callback makes fit do): milliseconds per
epoch, paired and interleaved (the order alternating), with the share of the GEMM floor, on the
workload matrix's rows of data (fastmlp.matrix.workload_data).

    python -m benchmarks.tools.short_epochs [--rounds 7] [--threads 1 2] [--epochs 40]
"""

import argparse
import statistics
import time

from fastmlp import MLP
from fastmlp.flops import floor_seconds, gemm_gflops, model_name
from fastmlp.matrix import workload_data

# (layers, batch size or None for full batch): the full-batch notebooks, a tabular net at 32
CASES = [((784, 20, 10), None), ((784, 10, 10), None), ((784, 25, 15, 10), None),
         ((54, 64, 64, 7), 32)]


def on_each_epoch(epoch, logs):
    """A per-epoch hook that does nothing: fit then makes one call per epoch."""


def time_fit(layers, batch, X, y, threads, epochs, alone):
    model = MLP(layers, seed=0, threads=threads)
    start = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=batch, lr=0.05,
              callbacks=[on_each_epoch] if alone else [])
    return (time.perf_counter() - start) / epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    args = parser.parse_args(argv)
    print("| model | batch | threads | an epoch per call, ms | together, ms | paired ratio "
          "| floor share, together |\n|---|---|---|---|---|---|---|")
    for threads in args.threads:
        gflops = gemm_gflops(threads)
        for layers, batch in CASES:
            X, y = workload_data(layers)
            time_fit(layers, batch, X, y, threads, 3, False)        # compiles, untimed
            seconds = {True: [], False: []}
            for r in range(args.rounds):
                for alone in ((True, False) if r % 2 == 0 else (False, True)):
                    seconds[alone].append(time_fit(layers, batch, X, y, threads, args.epochs,
                                                   alone))
            ratio = statistics.median(a / t for a, t in zip(seconds[True], seconds[False]))
            together = statistics.median(seconds[False])
            floor = floor_seconds(layers, X.shape[0], gflops)
            print(f"| {model_name(layers)} | {batch or 'full'} | {threads} "
                  f"| {1e3 * statistics.median(seconds[True]):.2f} | {1e3 * together:.2f} "
                  f"| {ratio:.2f}x | {floor / together:.0%} |", flush=True)


if __name__ == "__main__":
    main()
