"""The parallel schemes side by side on one workload: milliseconds per step of "parts", "units"
and "rows" (each forced) and the planner's default, paired and interleaved, at each thread
count, with the share of the GEMM floor. Measures the crossovers in fastmlp/engine/plan.py.

    python -m benchmarks.tools.schemes 784-20-10 --batch 8000 --threads 1 2
    python -m benchmarks.tools.schemes 784-128-10 --batch 2048 --act relu --rounds 7

The scheme "rows-drawn" is the rows scheme with each full batch's rows in the order drawn, as
it took them before it took them in X's order (docs/performance.md, "Full batches in X's
order"):

    python -m benchmarks.tools.schemes 784-10-10 --schemes rows,rows-drawn --rounds 9
"""

import argparse
import statistics
import time

import numpy as np

from fastmlp import engine
from fastmlp.codes import ACTIVATIONS, HEADS
from fastmlp.flops import floor_seconds, gemm_gflops, parse_model
from fastmlp.matrix import ROWS, workload_data
from fastmlp.params import init_params


def compare(layers, batch, threads, schemes, rounds, steps, act="relu"):
    """{scheme: median ms per step} and {scheme: median share of the floor} at ``threads``."""
    X, y = workload_data(layers)
    order = np.concatenate([np.random.default_rng(s).permutation(ROWS)
                            for s in range(-(-steps * batch // ROWS))])[:steps * batch]
    full_batches = engine.rows.full_batches

    def drawn(X, order, batch_size):            # rows-drawn: no minibatch counts as full
        return False

    runs = {}
    for name in schemes:
        flat = init_params(layers, "he", np.random.default_rng(0), np.float32)
        runs[name] = (engine.Network(flat, layers, ACTIVATIONS.index(act), HEADS.index("softmax")),
                      engine.OptimizerState("sgd", flat.size, np.float32), flat.copy())
    times = {name: [] for name in schemes}
    for r in range(rounds + 1):                 # round 0 compiles, untimed
        for name in schemes:
            net, state, start = runs[name]
            net.flat[...] = start
            engine.plan.FORCE_SCHEME = {"default": None, "rows-drawn": "rows"}.get(name, name)
            engine.rows.full_batches = drawn if name == "rows-drawn" else full_batches
            t0 = time.perf_counter()
            engine.train(net, state, engine.Batches(X, y, np.zeros((0, layers[-1]), np.float32),
                                                    order, batch),
                         engine.Hyper.of("sgd", 0.05), threads, guard=False)
            if r:
                times[name].append((time.perf_counter() - t0) / steps)
    engine.plan.FORCE_SCHEME = None
    engine.rows.full_batches = full_batches
    floor = floor_seconds(layers, batch, gemm_gflops(threads))
    return ({n: 1e3 * statistics.median(t) for n, t in times.items()},
            {n: statistics.median(floor / s for s in t) for n, t in times.items()})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--batch", type=int, default=ROWS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--schemes", default="default,parts,units,rows")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=0, help="steps per timing (default: one epoch)")
    p.add_argument("--act", default="relu")
    args = p.parse_args(argv)
    layers = parse_model(args.model)
    steps = args.steps or max(1, ROWS // args.batch) * (10 if args.batch >= ROWS else 1)
    for t in args.threads:
        ms, share = compare(layers, args.batch, t, args.schemes.split(","), args.rounds, steps,
                            args.act)
        plan = engine.plan_training(t, args.batch, layers, steps * args.batch)
        print(f"{args.model} batch {args.batch} threads {t} (default: {plan.scheme} on "
              f"{plan.threads}): " + "  ".join(f"{n} {ms[n]:.3f} ms ({share[n]:.0%})" for n in ms),
              flush=True)


if __name__ == "__main__":
    main()
