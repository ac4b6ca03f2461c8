"""Epochs of this checkout's engine and of an older commit's, interleaved in one process, as
paired ratios: the way to tell whether a change made the engine faster or slower on a machine
whose speed moves by 10-30% from one epoch to the next.

    python -m benchmarks.tools.paired_versions REV [--rounds 9] [--threads 2] [--data synthetic]

The commit's ``fastmlp/`` is extracted (``git archive``) into a temporary folder as the package
``fastmlp_old`` (its imports are relative) and both packages' ``bench.EpochCase`` train one epoch
of each default model and batch size from the same weights and order, old and new alternating
which goes first. Prints per row the medians and the median of the paired new/old ratios, and
fails if the two ever end on different weights (a change meant to keep the arithmetic).
"""

import argparse
import importlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from fastmlp import bench

ROOT = Path(__file__).resolve().parents[2]


def old_package(rev, folder):
    """Import the commit's fastmlp package as ``fastmlp_old`` from ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "fastmlp"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (Path(folder) / "fastmlp").rename(Path(folder) / "fastmlp_old")
    sys.path.insert(0, str(folder))
    return importlib.import_module("fastmlp_old.bench")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the older commit, e.g. HEAD~1")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None, help="as fastmlp bench --data (default: auto)")
    parser.add_argument("--same-weights", action=argparse.BooleanOptionalAction, default=True,
                        help="require bitwise equal weights after each epoch (default: yes)")
    args = parser.parse_args(argv)
    X, y, _, _, source = bench.bench_data(bench.EPOCH_SAMPLES, 0, args.data)
    print(f"data: {source}; {args.threads} threads; {args.rounds} pairs per row", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        old_bench = old_package(args.rev, folder)
        for layers in bench.DEFAULT_MODELS:
            for batch in bench.DEFAULT_BATCH_SIZES:
                old = old_bench.EpochCase("numba", layers, batch, args.threads, X, y)
                new = bench.EpochCase("numba", layers, batch, args.threads, X, y)
                for case in (old, new):         # compile (or load) both schemes' code first
                    case.run()
                times = {id(old): [], id(new): []}
                for r in range(args.rounds):
                    for case in ((old, new) if r % 2 == 0 else (new, old)):
                        case.settle_and_reset()
                        start = time.perf_counter()
                        case.run()
                        times[id(case)].append(time.perf_counter() - start)
                    if args.same_weights and not np.array_equal(old.flat, new.flat):
                        raise SystemExit(f"{layers} batch {batch}: the weights differ")
                t_old, t_new = times[id(old)], times[id(new)]
                ratios = [b / a for a, b in zip(t_old, t_new)]
                print(f"{bench.model_name(layers):15s} batch {batch:4d}: old "
                      f"{statistics.median(t_old):.4f} s  new {statistics.median(t_new):.4f} s  "
                      f"new/old paired median {statistics.median(ratios):.3f} (pairs "
                      f"{min(ratios):.3f}-{max(ratios):.3f})", flush=True)


if __name__ == "__main__":
    main()
