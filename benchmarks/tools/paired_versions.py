"""Epochs of this checkout's engine and of an older commit's, interleaved in one process, as
paired ratios: the way to tell whether a change made the engine faster or slower on a machine
whose speed moves by 10-30% from one epoch to the next.

    python -m benchmarks.tools.paired_versions REV [--rounds 9] [--threads 2] [--data synthetic]

The commit's ``fastmlp/`` is extracted (``git archive``) into a temporary folder as the package
``fastmlp_old`` (its imports are relative) and both packages' ``bench.EpochCase`` train one epoch
of each default model and batch size from the same weights and order, old and new alternating
which goes first. Prints per row the medians and the median of the paired new/old ratios, and
fails if the two ever end on different weights (a change meant to keep the arithmetic).

``--notebooks [--only 002 004] [--scale S]`` times ``MLP.fit`` of the notebook configurations
instead (:mod:`benchmarks.notebooks`, MNIST's 8000 rows, each fit's steps scaled by S), each
version in processes of its own, old and new alternating: a process per version and round,
which reports the median of ``--fits`` fits after one untimed. Their weights are not compared
(for changes meant to change bits). In one process the two packages were seen to slow each
other: with this checkout's engine loaded first, the old one's fits of notebook 002 took 0.40
s against 0.28 s loaded first (docs/performance.md, "sigmoid_scalar").
"""

import argparse
import importlib
import io
import json
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


def notebook_fits(package, only, scale, threads, fits):
    """{notebook name: median seconds of ``fits`` timed ``MLP.fit`` calls} of ``package``
    (imported by name), each after one untimed fit."""
    from .. import notebooks

    fastmlp = importlib.import_module(package)
    X, y = notebooks.mnist()[:2]
    medians = {}
    for name, (_, (model_kw, fit_kw)) in notebooks.notebooks(scale).items():
        if only and not any(name.startswith(o) for o in only):
            continue
        seconds = []
        for _ in range(fits + 1):
            time.sleep(bench.SETTLE_SECONDS)
            model = fastmlp.MLP(dtype="float32", seed=0, threads=threads, **model_kw)
            start = time.perf_counter()
            model.fit(X, y, **fit_kw)
            seconds.append(time.perf_counter() - start)
        medians[name] = statistics.median(seconds[1:])
    return medians


def notebook_rounds(folder, args):
    """Rounds of one process per version, old and new alternating which goes first; prints per
    notebook the medians of the processes' medians and the median of their paired ratios."""
    call = [sys.executable, "-c", "import sys, json; sys.path[:0] = sys.argv[1:3]; "
            "from benchmarks.tools.paired_versions import notebook_fits as f; "
            "print(json.dumps(f(sys.argv[3], json.loads(sys.argv[4]), float(sys.argv[5]), "
            "int(sys.argv[6]), int(sys.argv[7]))))", str(ROOT), str(folder)]
    times = {"fastmlp_old": [], "fastmlp": []}
    for r in range(args.rounds + 1):                    # round 0: compiles, untimed
        for package in (("fastmlp_old", "fastmlp") if r % 2 == 0 else ("fastmlp", "fastmlp_old")):
            out = subprocess.run(call + [package, json.dumps(args.only), str(args.scale),
                                         str(args.threads), str(args.fits)],
                                 check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT).stdout
            if r:
                times[package].append(json.loads(out.splitlines()[-1]))
    for name in times["fastmlp"][0]:
        t_old = [m[name] for m in times["fastmlp_old"]]
        t_new = [m[name] for m in times["fastmlp"]]
        ratios = [b / a for a, b in zip(t_old, t_new)]
        print(f"{name}: old {statistics.median(t_old):.4f} s  new {statistics.median(t_new):.4f} "
              f"s  new/old paired median {statistics.median(ratios):.3f} (pairs "
              f"{min(ratios):.3f}-{max(ratios):.3f})", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the older commit, e.g. HEAD~1")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", default=None, help="as fastmlp bench --data (default: auto)")
    parser.add_argument("--same-weights", action=argparse.BooleanOptionalAction, default=True,
                        help="require bitwise equal weights after each epoch (default: yes)")
    parser.add_argument("--notebooks", action="store_true",
                        help="MLP.fit of the notebook configurations, a process per version")
    parser.add_argument("--only", nargs="+", help="notebook numbers (--notebooks), e.g. 002")
    parser.add_argument("--scale", type=float, default=0.1,
                        help="fraction of each notebook fit's steps (--notebooks)")
    parser.add_argument("--fits", type=int, default=5, help="timed fits a process (--notebooks)")
    args = parser.parse_args(argv)
    if args.notebooks:
        print(f"notebooks at scale {args.scale}; {args.threads} threads; {args.rounds} rounds of "
              f"a process per version, {args.fits} fits each", flush=True)
        with tempfile.TemporaryDirectory() as folder:
            old_package(args.rev, folder)
            notebook_rounds(folder, args)
        return
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
