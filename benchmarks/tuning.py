"""What timing the thread count costs and gains: a whole ``MLP.fit`` of each workload of the
matrix, once with the count timed from scratch (:mod:`fastmlp.engine.tuner`, its search
included) and once on the plan's count (``FASTMLP_TUNE=off``), paired and interleaved. The
median of the paired ratios says the search's cost (above 1) or gain (below 1); the table also
gives the count each search found.

    python -m benchmarks.tuning [--epochs 10] [--rounds 3] [--rows 60000] [--only b32 tabular]
    python -m benchmarks.tuning --busy                 # with one core kept busy by another process
    NUMBA_NUM_THREADS=4 FASTMLP_PLAN_CORES=4 python -m benchmarks.tuning --threads 4
                                                       # more threads than cores (2 here)

Minibatch workloads train on ``--rows`` rows of the benchmark data; the notebooks' full-batch
workloads on the matrix's 8000 rows, ``--epochs`` iterations.
"""

import argparse
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext

import numpy as np

from fastmlp import MLP
from fastmlp.bench import SETTLE_SECONDS, bench_data
from fastmlp.engine import background, tuner
from fastmlp.matrix import ROWS, select_workloads, workload_data
from fastmlp.flops import model_name


def fit_seconds(work, X, y, epochs, threads, timed):
    """(seconds of one fit, its count timed from scratch (``timed``) or the plan's; the counts
    found; the search's own cost in seconds: its timed pieces' time over what their minibatches
    take on the count found, at its fastest sample's rate; not the first, untimed piece, which
    a fit on the plan's count also runs cold)."""
    model = MLP(work.layers, activation=work.act, output=work.head, seed=0, threads=threads)
    tuner.forget()
    pieces = []
    record = tuner.Search.record

    def keep(search, count, seconds, steps, whole=False):
        if search.found is None:                    # a piece of the search
            pieces.append((search, count, seconds, steps))
        record(search, count, seconds, steps, whole)

    tuner.Search.record = keep
    try:
        with background.waiting(), (nullcontext() if timed else tuner.fixed()):
            start = time.perf_counter()
            model.fit(X, y, epochs=epochs, batch_size=work.batch, lr=0.01,
                      replacement=work.replacement)
            seconds = time.perf_counter() - start
    finally:
        tuner.Search.record = record
    counts = sorted({s.found for s in tuner._SEARCHES.values()} - {None})
    first = {}                                      # each search's first piece
    for i, (search, *_) in enumerate(pieces):
        first.setdefault(id(search), i)
    cost = sum(spent - steps * min(search.times.get(search.found) or [spent / steps])
               for i, (search, _, spent, steps) in enumerate(pieces)
               if search.found is not None and first[id(search)] != i)
    return seconds, counts, cost


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=None,
                        help="the bound of both fits (default: all cores)")
    parser.add_argument("--only", nargs="*", help="workloads whose name or model contains these")
    parser.add_argument("--busy", action="store_true",
                        help="keep one core busy with another process while timing")
    args = parser.parse_args(argv)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        print(f"| workload | model | batch | fit, count timed (s) | fit, plan's count (s) | "
              f"timed / plan's | count found | search's cost (ms) |\n"
              "|---|---|---|---|---|---|---|---|")
        for work in select_workloads(args.only):
            if work.batch is None:
                X, y = workload_data(work.layers)
            elif work.layers[0] == 784:
                X, y, _, _, _ = bench_data(args.rows, 1)
                y = y % work.layers[-1]
            else:
                X, y = workload_data(work.layers)
                X, y = np.resize(X, (args.rows, X.shape[1])), np.resize(y, args.rows)
            fit_seconds(work, X, y, 1, args.threads, False)        # compile, load, warm up
            times, found, costs = {True: [], False: []}, [], []
            for r in range(args.rounds):
                for timed in ((True, False) if r % 2 == 0 else (False, True)):
                    time.sleep(SETTLE_SECONDS)
                    seconds, counts, cost = fit_seconds(work, X, y, args.epochs, args.threads,
                                                        timed)
                    times[timed].append(seconds)
                    if timed:
                        found.append("/".join(map(str, counts)) or "-")
                        costs.append(cost)
            on, off = statistics.median(times[True]), statistics.median(times[False])
            ratios = sorted(a / b for a, b in zip(times[True], times[False]))
            print(f"| {work.name} | {model_name(work.layers)} | {work.batch or len(X)} | "
                  f"{on:.3f} | {off:.3f} | {statistics.median(ratios):.3f} "
                  f"({ratios[0]:.3f}-{ratios[-1]:.3f}) | "
                  f"{', '.join(found)} | {statistics.median(costs) * 1e3:.1f} "
                  f"({min(costs) * 1e3:.1f}-{max(costs) * 1e3:.1f}) |", flush=True)
    finally:
        if hog is not None:
            hog.kill()


if __name__ == "__main__":
    main()
