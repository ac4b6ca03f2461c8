"""Thread scaling: seconds per 60,000-row epoch of the engine benchmark's six rows at 1, 2, 4, 8
and 16 threads (those this machine has), fastmlp with its default plan and with each count
forced, PyTorch (eager, same model, weights, rows and plain SGD) at each count, and the GEMM
floor at the most threads; written as Markdown and JSON.

    python -m benchmarks.scaling [--rounds 3] [--out scaling]      # or: bash benchmarks/scaling.sh

Each row's runs alternate in every round (paired, interleaved), over the matrix's 8000 rows of
synthetic data; a step's median time is scaled to an epoch of 60,000 rows (60,000 / batch
steps). fastmlp's weights depend on the cores it plans for, never on ``threads``; the default
column is ``threads=None`` (all cores). Needs numpy, numba and this repository; torch if
installed.
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
from fastmlp.matrix import EngineRun, TorchRun, Workload, workload_data, workload_order
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


def run_row(layers, batch, counts, rounds, peers):
    """{column: seconds per epoch} of one row, all columns timed in each round in turn."""
    work = Workload(f"{model_name(layers)} b{batch}", layers, "relu", "softmax", batch,
                    DATA_ROWS // batch)
    X, y = workload_data(layers)
    order = workload_order(work)
    runs = {"fastmlp default": EngineRun("numba", work, X, y, order, None)}
    runs.update({f"fastmlp {t}": EngineRun("numba", work, X, y, order, t) for t in counts})
    if peers:
        runs.update({f"torch {t}": TorchRun(work, X, y, order, t) for t in counts})
    times = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds + 1):                 # round 0 compiles and warms up, untimed
        for name in (names if r % 2 else names[::-1]):
            time.sleep(SETTLE_SECONDS)          # the previous run's threads go idle
            start = time.perf_counter()
            runs[name]()
            if r:
                times[name].append((time.perf_counter() - start) / work.steps)
    per_epoch = EPOCH_ROWS / batch
    return {name: statistics.median(ts) * per_epoch for name, ts in times.items()}


def markdown(result):
    """The table as Markdown."""
    counts, peers = result["meta"]["threads"], result["meta"]["torch"]
    most = max(counts)
    head = (["model, batch", "default"] + [f"{t} thr" for t in counts]
            + ([f"PyTorch {t} thr" for t in counts] if peers else []) + [f"floor at {most} thr"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in result["rows"]:
        cells = [f"{row['model']}, {row['batch']}", f"{row['fastmlp default']:.3f}"]
        cells += [f"{row[f'fastmlp {t}']:.3f}" for t in counts]
        cells += [f"{row[f'torch {t}']:.3f}" for t in counts] if peers else []
        cells.append(f"{row['floor']:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    meta = result["meta"]
    lines.append("")
    lines.append(f"Seconds per epoch of {EPOCH_ROWS} rows, medians of {meta['rounds']} "
                 f"interleaved rounds; {meta['cores']} cores, planned for {meta['plan_cores']}; "
                 f"sgemm {meta['gemm_gflops']:.0f} GFLOP/s at {most} threads; torch "
                 f"{meta['torch'] or 'not installed'}.")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="scaling", help="writes OUT.md and OUT.json")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = parser.parse_args(argv)
    from fastmlp.engine.plan import planned_cores

    counts = thread_counts()
    peers = None if args.no_torch else torch_version()
    gflops = gemm_gflops(max(counts))
    result = {"meta": {"threads": counts, "rounds": args.rounds, "cores": available_cores(),
                       "plan_cores": planned_cores(), "torch": peers, "gemm_gflops": gflops,
                       "epoch_rows": EPOCH_ROWS, "data_rows": DATA_ROWS},
              "rows": []}
    for layers in MODELS:
        for batch in BATCHES:
            row = run_row(layers, batch, counts, args.rounds, bool(peers))
            row.update(model=model_name(layers), batch=batch,
                       floor=matmul_flops(layers, EPOCH_ROWS) / (gflops * 1e9))
            result["rows"].append(row)
            print(f"{row['model']} b{batch}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)), flush=True)
    table = markdown(result)
    write_atomic(args.out + ".json", lambda f: f.write(json.dumps(result, indent=1)), binary=False)
    write_atomic(args.out + ".md", lambda f: f.write(table), binary=False)
    print(table)
    print(f"wrote {os.path.abspath(args.out)}.md and .json")


if __name__ == "__main__":
    main()
