"""The workload matrix (``fastmlp bench --matrix``): the work people run, each at 1 thread and on
all cores, against the NumPy reference and PyTorch in the same run.

Every row trains the same model from the same weights on the same sample order with the
compiled engine, the NumPy reference (``engine="numpy"``) and, when installed, PyTorch (eager,
CPU, same threads): one timed call each per round, the engines interleaved within a round, and
each figure the median over the rounds. The ratios are medians of the per-round ratios (paired),
so a machine that slows down for a round slows every engine of that round. ``floor`` is the
step's matrix-product FLOPs at this machine's sgemm rate on as many threads
(:mod:`fastmlp.flops`).
"""

import statistics
import time
from contextlib import nullcontext
from typing import NamedTuple, Optional

import numpy as np

from .codes import ACTIVATIONS, HEADS
from .engine import background
from .engine.lowlevel.threads import available_cores
from .bench import SETTLE_SECONDS, bench_data
from .flops import gemm_gflops, matmul_flops, model_name
from .params import init_params
from .peers import torch_model, torch_threads, torch_train, torch_version

ROWS = 8000            # rows of data every workload trains on (the notebooks' 8000-image runs)
LR = 0.05


class Workload(NamedTuple):
    """One row of the matrix: a model, its activation and head, and how its steps take rows:
    ``batch`` rows per step (None: all ROWS, full-batch gradient descent), from a shuffled epoch
    or drawn with replacement; ``steps``: steps timed per round."""
    name: str
    layers: tuple
    act: str
    head: str
    batch: Optional[int]
    steps: int
    replacement: bool = False


MNIST = 784
WORKLOADS = (
    # the five from-scratch notebooks (../shared/seeds/README.md)
    Workload("notebook 000: full batch", (MNIST, 20, 10), "relu", "softmax", None, 10),
    Workload("notebook 003: full batch", (MNIST, 10, 10), "relu", "softmax", None, 10),
    Workload("notebook 001: full batch", (MNIST, 25, 15, 10), "relu", "softmax", None, 10),
    Workload("notebook 004: batch 10", (MNIST, 20, 10), "sigmoid", "sigmoid", 10, 800),
    Workload("notebook 002: batch 128 drawn", (MNIST, 128, 10), "sigmoid", "sigmoid", 128, 62,
             True),
    # the engine benchmark's rows
    *(Workload(f"benchmark b{b}", layers, "relu", "softmax", b, ROWS // b)
      for layers in ((MNIST, 128, 10), (MNIST, 512, 256, 10)) for b in (32, 128, 512)),
    # wide, deep, tabular
    Workload("wide", (MNIST, 2048, 10), "relu", "softmax", 256, ROWS // 256),
    Workload("deep", (MNIST, 256, 256, 256, 256, 10), "relu", "softmax", 64, ROWS // 64),
    Workload("tabular", (54, 64, 64, 7), "relu", "softmax", 32, ROWS // 32),
)


def select_workloads(only=None):
    """The workloads whose name or model (784-20-10) contains one of the strings ``only``
    (all of them for None)."""
    if not only:
        return WORKLOADS
    return tuple(w for w in WORKLOADS if any(o in w.name or o in model_name(w.layers)
                                             for o in only))


def workload_data(layers, seed=0):
    """(X, y) of ROWS rows for a model's input and output widths: the first ROWS images of the
    benchmark data (:func:`fastmlp.bench.bench_data`) for 784 inputs, else deterministic
    synthetic rows (uniform features, labels from a random linear teacher)."""
    if layers[0] == MNIST:
        X, y, _, _, _ = bench_data(ROWS, 1)
        return X, y % layers[-1]
    rng = np.random.default_rng(seed)
    X = rng.random((ROWS, layers[0]), dtype=np.float32)
    y = np.argmax(X @ rng.standard_normal((layers[0], layers[-1])), axis=1).astype(np.int64)
    return X, y


def workload_order(work, seed=1):
    """The rows of every timed step, back to back: whole shuffled epochs (full batch: ROWS rows
    per step) or ``batch`` rows drawn with replacement per step."""
    rng = np.random.default_rng(seed)
    batch = work.batch or ROWS
    if work.replacement:
        return rng.integers(0, ROWS, work.steps * batch).astype(np.int64)
    epochs = -(-work.steps * batch // ROWS)
    order = np.concatenate([rng.permutation(ROWS) for _ in range(epochs)])
    return order[:work.steps * batch].astype(np.int64)


class EngineRun:
    """fastmlp (compiled or reference) on a workload: one timed call trains all its steps, on
    exactly ``threads`` threads (``exact``) or on the fastest count up to them (None: up to all
    cores), timed by :mod:`fastmlp.engine.tuner`."""

    def __init__(self, engine, work, X, y, order, threads, exact=True):
        from . import engine as fast

        self.fast, self.engine_name, self.threads, self.exact = fast, engine, threads, exact
        self.start = init_params(work.layers, "he", np.random.default_rng(0), np.float32)
        self.flat = self.start.copy()
        self.net = fast.Network(self.flat, work.layers, ACTIVATIONS.index(work.act),
                                HEADS.index(work.head))
        self.state = fast.OptimizerState("sgd", self.flat.size, np.float32)
        self.batches = fast.Batches(X, y, np.zeros((0, work.layers[-1]), np.float32), order,
                                    work.batch or ROWS)
        self.hyper = fast.Hyper.of("sgd", LR)

    @background.waiting()      # timed: the compiled kernel runs, compiled first if need be
    def __call__(self):
        self.flat[...] = self.start
        with self.fast.tuner.fixed() if self.exact else nullcontext():
            return self.fast.train(self.net, self.state, self.batches, self.hyper, self.threads,
                                   self.engine_name, guard=False).mean_loss


class TorchRun:
    """The same model, weights, rows and plain SGD in PyTorch (eager)."""

    def __init__(self, work, X, y, order, threads):
        import torch

        self.torch, self.threads, self.work = torch, threads, work
        self.X, self.y, self.order = X, y, order
        self.start = init_params(work.layers, "he", np.random.default_rng(0), np.float32)
        self.act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid,
                    "tanh": torch.nn.Tanh}[work.act]

    def __call__(self):
        model = torch_model(self.work.layers, self.start, self.act)
        opt = self.torch.optim.SGD(model.parameters(), lr=LR)
        with torch_threads(self.threads):
            return torch_train(model, self.X, self.y, self.order, self.work.batch or ROWS, opt,
                               self.work.head)


def run_row(work, threads, rounds=5, peers=True, gflops=None):
    """Time one workload at ``threads`` threads; returns a dict of medians (seconds per step)
    and paired ratios."""
    X, y = workload_data(work.layers)
    order = workload_order(work)
    engines = {"fastmlp": EngineRun("numba", work, X, y, order, threads),
               "numpy": EngineRun("numpy", work, X, y, order, threads)}
    if peers and torch_version():
        engines["torch"] = TorchRun(work, X, y, order, threads)
    times = {name: [] for name in engines}
    for r in range(rounds + 1):               # round 0 compiles and warms up, untimed
        for name, run in engines.items():
            time.sleep(SETTLE_SECONDS)        # the previous engine's BLAS threads go idle
            start = time.perf_counter()
            run()
            if r:
                times[name].append((time.perf_counter() - start) / work.steps)
    gflops = gflops or gemm_gflops(threads)
    floor = matmul_flops(work.layers, work.batch or ROWS) / (gflops * 1e9)
    fast = times["fastmlp"]
    row = {"workload": work.name, "model": model_name(work.layers), "act": work.act,
           "head": work.head, "batch": work.batch or ROWS, "threads": threads,
           "floor_s": floor, "gemm_gflops": gflops}
    for name, ts in times.items():
        row[f"{name}_s"] = statistics.median(ts)
        row[f"{name}_spread"] = (min(ts), max(ts))
        if name != "fastmlp":
            row[f"vs_{name}"] = statistics.median(o / f for o, f in zip(ts, fast))
    row["floor_fraction"] = statistics.median(floor / f for f in fast)
    return row


def run_matrix(workloads=WORKLOADS, threads=None, rounds=5, peers=True, progress=None):
    """Every workload at each thread count of ``threads`` (default: 1 and all cores)."""
    cores = available_cores()
    threads = sorted(set(threads or (1, cores)))
    rates = {t: gemm_gflops(t) for t in threads}
    rows = []
    for work in workloads:
        for t in threads:
            row = run_row(work, t, rounds, peers, rates[t])
            rows.append(row)
            if progress:
                progress(row)
    return {"meta": {"rows_of_data": ROWS, "rounds": rounds, "cores": cores,
                     "gemm_gflops": {str(t): g for t, g in rates.items()},
                     "torch": torch_version()}, "rows": rows}


def format_row(row):
    """One line of the Markdown table."""
    def ratio(key):
        return f"{row[key]:.2f}x" if key in row else "-"
    lo, hi = row["fastmlp_spread"]
    return (f"| {row['workload']} | {row['model']} {row['act']} | {row['batch']} | "
            f"{row['threads']} | {row['fastmlp_s'] * 1e3:.3f} ({lo * 1e3:.3f}-{hi * 1e3:.3f}) | "
            f"{ratio('vs_numpy')} | {ratio('vs_torch')} | {row['floor_fraction']:.0%} |")


HEADER = ("| workload | model | batch | threads | fastmlp ms/step (min-max) | vs NumPy | "
          "vs PyTorch | of floor |\n|---|---|---|---|---|---|---|---|")


def format_matrix(result):
    """The matrix as a Markdown table with its conditions above it."""
    meta = result["meta"]
    rates = ", ".join(f"{t} thr {g:.0f}" for t, g in meta["gemm_gflops"].items())
    lines = [f"Workload matrix: {meta['rows_of_data']} rows of data, median of {meta['rounds']} "
             f"paired rounds; sgemm GFLOP/s {rates}; PyTorch {meta['torch'] or 'not installed'}. "
             "vs X: X's time over fastmlp's (above 1: fastmlp faster).", "", HEADER]
    lines += [format_row(row) for row in result["rows"]]
    return "\n".join(lines)
