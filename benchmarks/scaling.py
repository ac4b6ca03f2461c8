"""Thread scaling: seconds per 60,000-row epoch of the engine benchmark's six rows at 1, 2, 4, 8
and 16 threads (those this machine has), fastmlp with its default plan and with each count
forced, PyTorch (eager, same model, weights, rows and plain SGD) at each count, and the GEMM
floor at the most threads; written as Markdown and JSON.

    python -m benchmarks.scaling [--rounds 3] [--out scaling]      # or: bash benchmarks/scaling.sh
    python -m benchmarks.scaling --matrix [--only b10 tabular]       # the workload matrix's rows

``--matrix`` times every row of the workload matrix (:mod:`fastmlp.matrix`: the notebooks'
full-batch and small-batch work, the benchmark rows, wide, deep, tabular) in milliseconds per
step instead. Every table has "default / best": the default plan's time over the fastest forced
count's, the threads issue's check that the default is never much slower than a count forced.

Each row's runs alternate in every round (paired, interleaved), over the matrix's 8000 rows of
synthetic data; a step's median time is scaled to an epoch of 60,000 rows (60,000 / batch
steps). fastmlp's weights depend on the cores it plans for, never on ``threads``; the default
column is ``threads=None``: the fastest count up to all cores, timed by
:mod:`fastmlp.engine.tuner` in the untimed first round; a forced column runs exactly its count.
Needs numpy, numba and this repository; torch if installed.
"""

import argparse
import json
import os
import statistics
import time

from fastmlp.bench import SETTLE_SECONDS
from fastmlp.engine.lowlevel.threads import available_cores, max_threads
from fastmlp.flops import gemm_gflops, matmul_flops, model_name
from fastmlp.io import write_atomic
from fastmlp.matrix import (EngineRun, TorchRun, Workload, select_workloads, workload_data,
                            workload_order)
from fastmlp.peers import torch_version

EPOCH_ROWS = 60_000
MODELS = ((784, 128, 10), (784, 512, 256, 10))
BATCHES = (32, 128, 512)
COUNTS = (1, 2, 4, 8, 16)
DATA_ROWS = 8000


def thread_counts():
    """The counts of COUNTS this process can run, and all of its cores when that is not one."""
    most = min(available_cores(), max_threads())
    return sorted({t for t in COUNTS if t <= most} | {most})


def run_row(work, counts, rounds, peers):
    """{column: median seconds per step} of one workload, all columns timed in each round in
    turn, the order rotated by one every round (each column runs in each place equally
    often)."""
    X, y = workload_data(work.layers)
    order = workload_order(work)
    runs = {"fastmlp default": EngineRun("numba", work, X, y, order, None, exact=False)}
    runs.update({f"fastmlp {t}": EngineRun("numba", work, X, y, order, t) for t in counts})
    if peers:
        runs.update({f"torch {t}": TorchRun(work, X, y, order, t) for t in counts})
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds + 1):                 # round 0 compiles and warms up, untimed
        for name in names[r % len(names):] + names[:r % len(names)]:
            time.sleep(SETTLE_SECONDS)          # the previous run's threads go idle
            start = time.perf_counter()
            runs[name]()
            if r:
                times[name].append((time.perf_counter() - start) / work.steps)
    return {name: statistics.median(ts) for name, ts in times.items()}


def markdown(result):
    """The table as Markdown: seconds per 60,000-row epoch, or with ``--matrix`` ms per step."""
    meta = result["meta"]
    counts, peers, matrix = meta["threads"], meta["torch"], meta["matrix"]
    most = max(counts)
    head = (["workload, model, batch" if matrix else "model, batch", "default"]
            + [f"{t} thr" for t in counts] + ([f"PyTorch {t} thr" for t in counts] if peers else [])
            + [f"floor at {most} thr", "default / best"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        name = f"{row['model']}, {row['batch']}"
        cells = [f"{row['workload']}, {name}" if matrix else name, f"{row['fastmlp default']:.3f}"]
        cells += [f"{row[f'fastmlp {t}']:.3f}" for t in counts]
        cells += [f"{row[f'torch {t}']:.3f}" for t in counts] if peers else []
        cells += [f"{row['floor']:.3f}", f"{row['default / best']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    unit = "Milliseconds per step" if matrix else f"Seconds per epoch of {EPOCH_ROWS} rows"
    lines.append(f"{unit}, medians of {meta['rounds']} interleaved rounds; {meta['cores']} cores, "
                 f"planned for {meta['plan_cores']}; sgemm {meta['gemm_gflops']:.0f} GFLOP/s at "
                 f"{most} threads; torch {meta['torch'] or 'not installed'}.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="scaling", help="writes OUT.md and OUT.json")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--matrix", action="store_true",
                        help="the workload matrix's rows (ms per step) instead of the six "
                             "benchmark rows (seconds per epoch)")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="with --matrix: the rows whose name or model contains one of these")
    args = parser.parse_args(argv)
    from fastmlp.engine.plan import planned_cores

    counts = thread_counts()
    peers = None if args.no_torch else torch_version()
    gflops = gemm_gflops(max(counts))
    result = {"meta": {"threads": counts, "rounds": args.rounds, "cores": available_cores(),
                       "plan_cores": planned_cores(), "torch": peers, "gemm_gflops": gflops,
                       "epoch_rows": EPOCH_ROWS, "data_rows": DATA_ROWS,
                       "matrix": bool(args.matrix)},
              "rows": []}
    if args.matrix:
        workloads = select_workloads(args.only)
    else:
        workloads = [Workload(f"{model_name(layers)} b{batch}", layers, "relu", "softmax", batch,
                              DATA_ROWS // batch) for layers in MODELS for batch in BATCHES]
    for work in workloads:
        batch = work.batch or DATA_ROWS
        # seconds a step to seconds per 60,000-row epoch, or with --matrix ms per step
        scale = 1e3 if args.matrix else EPOCH_ROWS / batch
        row = {k: v * scale for k, v in run_row(work, counts, args.rounds, bool(peers)).items()}
        row.update(workload=work.name, model=model_name(work.layers), batch=batch,
                   floor=matmul_flops(work.layers, batch) / (gflops * 1e9) * scale)
        row["default / best"] = row["fastmlp default"] / min(row[f"fastmlp {t}"] for t in counts)
        result["rows"].append(row)
        print(f"{work.name} {row['model']} b{batch}: " + ", ".join(
            f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)
    table = markdown(result)
    write_atomic(args.out + ".json", lambda f: f.write(json.dumps(result, indent=1)), binary=False)
    write_atomic(args.out + ".md", lambda f: f.write(table), binary=False)
    print(table)
    print(f"wrote {os.path.abspath(args.out)}.md and .json")


if __name__ == "__main__":
    main()
