"""How fast is fastmlp? A readable report (``fastmlp bench`` / ``python -m fastmlp.bench``) and the
helpers the pytest-benchmark suite in ``benchmarks/`` shares with it.

The report trains one epoch per (model, batch size, thread count) with the compiled engine and
with the NumPy reference, from the same starting weights and the same sample order, and prints
seconds per epoch, the speed-up, and the *GEMM floor*: the epoch's matrix-product FLOPs divided by
the throughput of the BLAS the engine calls, measured in the same run on a large product. No MLP
epoch can beat its floor on this BLAS; ``floor / engine`` says how close the engine gets.
PyTorch (CPU, eager) and scikit-learn's ``MLPClassifier`` join the table when installed.

The epoch is one call of :func:`fastmlp.engine.train` over a whole epoch, with the thread plan
:class:`fastmlp.MLP` gets: plain SGD, ReLU hidden layers, softmax cross-entropy, float32.
"""

import argparse
import json
import os
import statistics
import sys
import textwrap
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from .codes import ACTIVATIONS, ENGINES, HEADS, code_of
from .params import init_params
from .engine import background
from .engine.lowlevel.threads import available_cores
# the report's parts, importable from here too (tests and benchmarks/ use them so)
from .firstcall import first_fit_child, first_fit_seconds  # noqa: F401
from .flops import (GEMM_SIZE, floor_seconds, forward_flops, gemm_gflops, matmul_flops,  # noqa: F401
                    model_name, parse_model)
from .peers import (sklearn_epoch_seconds, sklearn_version, torch_epoch_seconds,  # noqa: F401
                    torch_model, torch_threads, torch_train, torch_version)

DEFAULT_MODELS = ((784, 128, 10), (784, 512, 256, 10))
DEFAULT_BATCH_SIZES = (32, 128, 512)
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
EPOCH_SAMPLES = 60000          # one epoch of (Fashion-)MNIST
QUICK_SAMPLES = 6000           # FASTMLP_BENCH_QUICK=1 / --quick
PREDICT_SAMPLES = 10000
N_FEATURES = 784
LR = 0.05                      # small enough that one epoch of plain SGD never diverges
# Pause before each timed epoch: after a multi-threaded BLAS call, OpenBLAS's worker threads keep
# spinning for a while and steal a core from whatever runs next (docs/performance.md,
# "SETTLE_SECONDS").
SETTLE_SECONDS = 0.5
ACT = ACTIVATIONS.index("relu")
HEAD = HEADS.index("softmax")


# ---------------------------------------------------------------- data

@lru_cache(maxsize=4)
def bench_data(n_train=EPOCH_SAMPLES, n_test=PREDICT_SAMPLES, path=None):
    """(X_train, y_train, X_test, y_test, source) for benchmarks: float32 (n, 784) and int64.

    ``path`` (else the env var FASTMLP_BENCH_DATA, else Fashion-MNIST when installed at
    /usr/share/datasets/fashion-mnist) is read with :func:`fastmlp.data.load`; at most
    ``n_train`` / ``n_test`` rows are kept. ``path="synthetic"``, or no data found, gives
    deterministic synthetic data of the same shape: uniform pixels, labels from a random linear
    teacher (learnable, so losses behave). ``source`` says which, for reports.
    """
    path = path or os.environ.get("FASTMLP_BENCH_DATA") or (
        FASHION_MNIST_DIR if Path(FASHION_MNIST_DIR).is_dir() else "synthetic")
    if str(path) != "synthetic":
        from .data import load

        ds = load(path)
        if ds.X_train.shape[1] != N_FEATURES:
            raise ValueError(f"{path}: benchmark data needs {N_FEATURES} features per sample "
                             f"(28x28 images); it has {ds.X_train.shape[1]}")
        X_test, y_test = ds.X_test, ds.y_test
        if X_test is None:
            X_test, y_test = ds.X_train, ds.y_train
        return (np.ascontiguousarray(ds.X_train[:n_train]), ds.y_train[:n_train].astype(np.int64),
                np.ascontiguousarray(X_test[:n_test]), y_test[:n_test].astype(np.int64),
                f"{ds.name} ({path})")
    rng = np.random.default_rng(20240)
    teacher = rng.standard_normal((N_FEATURES, 10)).astype(np.float32)
    out = []
    for n in (n_train, n_test):
        X = rng.random((n, N_FEATURES), dtype=np.float32)
        out += [X, ((X - np.float32(0.5)) @ teacher).argmax(axis=1).astype(np.int64)]
    return (*out, "synthetic (uniform pixels, linear-teacher labels, seed 20240)")


def quick_mode():
    """True when FASTMLP_BENCH_QUICK=1: smoke runs on QUICK_SAMPLES samples."""
    return os.environ.get("FASTMLP_BENCH_QUICK", "").strip().lower() in ("1", "true", "yes", "on")


# ---------------------------------------------------------------- one epoch of an engine

class EpochCase:
    """One training epoch of an engine from fixed starting weights and a fixed sample order.

    ``reset()`` puts the starting weights back; ``run()`` trains one epoch (or its first ``n``
    samples) through the engine contract with the thread counts applied as fastmlp.MLP does.
    Two cases with the same layers, seed and data start from the same weights and see the
    samples in the same order, so their results can be compared.
    """

    def __init__(self, engine, layers, batch_size, threads, X, y, dtype="float32", lr=LR, seed=0):
        from . import engine as fast_engine

        code_of(ENGINES, engine, "engine")
        self._engine = fast_engine
        self.engine_name = engine
        self.layers = tuple(int(w) for w in layers)
        self.batch_size = int(batch_size)
        self.threads = int(threads)
        self.lr = float(lr)
        self.X = np.ascontiguousarray(X, dtype=dtype)
        self.y = np.ascontiguousarray(y, dtype=np.int64)
        self.start = init_params(self.layers, "he", np.random.default_rng(seed), dtype)
        self.order = np.random.default_rng(seed + 1).permutation(len(self.X)).astype(np.int64)
        self.flat = self.start.copy()
        self.state = fast_engine.OptimizerState("sgd", 0, self.flat.dtype)
        self._Y = np.zeros((0, self.layers[-1]), dtype=self.flat.dtype)
        self.net = fast_engine.Network(self.flat, self.layers, ACT, HEAD)
        self.hyper = fast_engine.Hyper.of("sgd", self.lr)
        self.plan = fast_engine.plan_training(self.threads, self.batch_size, self.layers,
                                              self.n_samples)
        self.stats = None

    @property
    def n_samples(self):
        return len(self.order)

    def reset(self):
        self.flat[...] = self.start
        self.state.step = 0

    def settle_and_reset(self):
        """reset(), then wait SETTLE_SECONDS for other thread pools to go idle."""
        self.reset()
        time.sleep(SETTLE_SECONDS)

    @background.waiting()      # timed: the compiled kernel runs, compiled first if need be
    def run(self, n=None):
        """Train on the first ``n`` samples of the epoch's order (all by default), through the
        engine's one call with the thread plan fastmlp.MLP gets for ``threads``, on exactly that
        many threads (not the fastest count up to it); returns its Stats."""
        order = self.order if n is None else self.order[:n]
        with self._engine.tuner.fixed():    # on exactly the threads of the row, as its peers
            self.stats = self._engine.train(
                self.net, self.state, self._engine.Batches(self.X, self.y, self._Y, order,
                                                           self.batch_size),
                self.hyper, self.threads, self.engine_name, guard=False)
        return self.stats

    def warm_up(self):
        """Compile (or load from the cache) and touch the code paths on two batches, then reset."""
        self.run(min(self.n_samples, 2 * self.batch_size))
        self.reset()

    @property
    def mean_loss(self):
        return float(self.stats.mean_loss)

    def time_epoch(self, n=None, repeats=1):
        """Median seconds of ``repeats`` runs on ``n`` samples, each from the starting weights."""
        return statistics.median(self.time_once(n) for _ in range(max(1, repeats)))

    def time_once(self, n=None):
        """Seconds of one run on ``n`` samples from the starting weights, after a pause for
        other thread pools to go idle."""
        self.settle_and_reset()
        start = time.perf_counter()
        self.run(n)
        return time.perf_counter() - start


# (epoch mean loss, weights) relative tolerances of compare_epochs, by dtype. Measured on
# Fashion-MNIST, one epoch of plain SGD: float64 engines agree to 1e-14. In float32, engines
# whose operations round alike end within 1e-4 of each other, but any change in the order of
# a sum (another GEMM blocking, gradients split across threads) is carried forward by SGD,
# losses within 3e-4 but weights far apart relative to how far they moved: 784-512-256-10 at
# batch 32, the reference on 2 BLAS threads against itself on 1: 0.194 (784-128-10: 0.023), the
# numba engine against either 0.15-0.20. A wrong step (twice too long: 1.0) is well past 0.3.
EPOCH_RTOL = {"float32": (0.01, 0.3), "float64": (1e-7, 1e-7)}


def compare_epochs(case, reference, rtol=None):
    """Raise AssertionError unless two epochs from the same start agree: same samples, finite
    losses within tolerance, and weights whose distance is small next to how far they moved.

    Two float32 engines round differently, and SGD carries rounding forward, so weights are not
    compared elementwise: the difference between the two results must be a small fraction of
    the distance the reference travelled from the starting weights. ``rtol`` is a pair
    (loss, weights); default :data:`EPOCH_RTOL` for the dtype.
    """
    loss_rtol, weight_rtol = rtol or EPOCH_RTOL[case.flat.dtype.name]
    s, r = case.stats, reference.stats
    assert s is not None and r is not None, "run both epochs first"
    assert s.diverged_at is None and r.diverged_at is None, (
        f"diverged: {case.engine_name} {s}, {reference.engine_name} {r}")
    assert s.samples == r.samples, f"samples differ: {s.samples} vs {r.samples}"
    assert np.isfinite(case.flat).all(), f"{case.engine_name}: weights not finite"
    loss, ref_loss = case.mean_loss, reference.mean_loss
    assert np.isfinite(loss) and abs(loss - ref_loss) <= loss_rtol * abs(ref_loss), (
        f"{case.engine_name} epoch loss {loss:.6f} vs {reference.engine_name} {ref_loss:.6f}")
    moved = np.linalg.norm(reference.flat.astype(np.float64) - reference.start)
    apart = np.linalg.norm(case.flat.astype(np.float64) - reference.flat)
    assert apart <= weight_rtol * moved, (
        f"{case.engine_name} weights are {apart:.3g} from {reference.engine_name}'s, which moved "
        f"{moved:.3g} from the start (allowed {weight_rtol:.0e} of that)")
    return apart / moved


# ---------------------------------------------------------------- the report

def run_report(models=DEFAULT_MODELS, batch_sizes=DEFAULT_BATCH_SIZES, threads=None,
               samples=EPOCH_SAMPLES, ref_fraction=0.1, repeats=1, peers=("torch", "sklearn"),
               data=None, gemm_size=GEMM_SIZE, progress=None):
    """Time one epoch per (model, batch size, threads) and return {"meta": ..., "rows": [...]}.

    The compiled engine (and PyTorch) run the whole epoch; the NumPy reference and
    scikit-learn run its first ``ref_fraction`` (whole minibatches) and are scaled up.
    """
    threads_list = [int(t) for t in (threads or [available_cores()])]
    X, y, _, _, source = bench_data(samples, 1, data)
    n = len(X)
    from .engine.lowlevel.blas import blas_name

    versions = {"torch": torch_version(), "sklearn": sklearn_version()}
    peers = [p for p in peers if p in versions]
    meta = {"samples": n, "data": source, "dtype": "float32", "blas": blas_name(),
            "lr": LR, "optimizer": "sgd", "ref_fraction": ref_fraction, "repeats": repeats,
            "gemm_size": gemm_size, "gemm_gflops": {}, "cores": available_cores(),
            "peers": {p: versions[p] for p in peers}, "python": sys.version.split()[0],
            "numpy": np.__version__}
    try:
        import numba

        meta["numba"] = numba.__version__
    except ImportError:  # pragma: no cover - numba is a dependency
        pass
    for t in threads_list:
        meta["gemm_gflops"][str(t)] = gemm_gflops(t, "float32", gemm_size)
    rows = []
    for layers in models:
        layers = parse_model(layers)
        for batch in batch_sizes:
            batch = min(int(batch), n)
            n_ref = min(n, max(batch, int(round(n * ref_fraction / batch)) * batch))
            for t in threads_list:
                row = {"model": model_name(layers), "layers": list(layers), "batch_size": batch,
                       "threads": t, "samples": n, "flops": matmul_flops(layers, n)}
                fast = EpochCase("numba", layers, batch, t, X, y)
                fast.warm_up()
                ref = EpochCase("numpy", layers, batch, t, X, y)
                ref.warm_up()
                # paired rounds, the order alternating: a busy spell slows both of a pair
                pairs = []
                for r in range(max(1, repeats)):
                    first, second = (fast, ref) if r % 2 == 0 else (ref, fast)
                    times = {first: first.time_once(None if first is fast else n_ref),
                             second: second.time_once(None if second is fast else n_ref)}
                    pairs.append((times[fast], times[ref] * n / n_ref))
                row["numba_times"] = [a for a, _ in pairs]
                row["numpy_times"] = [b for _, b in pairs]
                row["speedups"] = [b / a for a, b in pairs]
                row["numba_s"] = statistics.median(row["numba_times"])
                row["numba_loss"] = fast.mean_loss
                row["numpy_s"] = statistics.median(row["numpy_times"])
                row["numpy_samples_timed"] = n_ref
                row["speedup"] = statistics.median(row["speedups"])
                gflops = meta["gemm_gflops"][str(t)]
                row["floor_s"] = floor_seconds(layers, n, gflops)
                row["floor_fraction"] = row["floor_s"] / row["numba_s"]
                row["busy"] = busy(row)
                row["numba_gflops"] = row["flops"] / row["numba_s"] / 1e9
                if "torch" in peers and versions["torch"]:
                    row["torch_s"], row["torch_loss"] = torch_epoch_seconds(fast, repeats=repeats)
                if "sklearn" in peers and versions["sklearn"]:
                    row["sklearn_s"] = sklearn_epoch_seconds(fast, n_ref, repeats) * n / n_ref
                rows.append(row)
                if progress:
                    progress(row)
    return {"meta": meta, "rows": rows}


# A row whose paired rounds spread more than this (slowest over fastest epoch, or largest over
# smallest speed-up), or that beats its floor, was timed on a busy machine: it is flagged.
BUSY_SPREAD = 1.25


def busy(row):
    """Why ``row``'s figures cannot be trusted ("" when they can): its rounds spread too far,
    or it beat the GEMM floor (the floor's GEMM ran in a busy moment)."""
    reasons = []
    for key, what in (("numba_times", "numba epochs"), ("speedups", "speed-ups")):
        values = row.get(key) or []
        if len(values) > 1 and max(values) > BUSY_SPREAD * min(values):
            reasons.append(f"{what} spread {max(values) / min(values):.2f}x")
    if row.get("floor_fraction", 0) > 1:
        reasons.append("faster than the GEMM floor")
    return "; ".join(reasons)


def _seconds(value):
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def format_table(result):
    """The report as text: a header, one line per (model, batch, threads), notes below."""
    meta, rows = result["meta"], result["rows"]
    peers = [p for p in ("torch", "sklearn") if any(f"{p}_s" in r for r in rows)]
    scaled = any(r["numpy_samples_timed"] < r["samples"] for r in rows)
    star = "*" if scaled else ""
    head = ["model", "batch", "thr", "numba s", "numba min-max", f"numpy s{star}", "speed-up",
            "speed-up min-max"]
    head += ["torch s" if p == "torch" else f"sklearn s{star}" for p in peers]
    head += ["floor s", "floor/numba"]
    flagged = any(r.get("busy") for r in rows)
    head += [""] if flagged else []
    lines = []
    for r in rows:
        times, speedups = r.get("numba_times") or [r["numba_s"]], r.get("speedups") or [r["speedup"]]
        cells = [r["model"], str(r["batch_size"]), str(r["threads"]), _seconds(r["numba_s"]),
                 f"{_seconds(min(times))}-{_seconds(max(times))}", _seconds(r["numpy_s"]),
                 f"{r['speedup']:.1f}x", f"{min(speedups):.1f}-{max(speedups):.1f}x"]
        cells += [_seconds(r.get(f"{p}_s")) for p in peers]
        cells += [_seconds(r["floor_s"]), f"{r['floor_fraction']:.0%}"]
        cells += ["busy!" if r.get("busy") else ""] if flagged else []
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) if lines else len(h) for i, h in enumerate(head)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    gflops = ", ".join(f"{g:.1f} GFLOP/s at {t} thread{'s' if t != '1' else ''}"
                       for t, g in meta["gemm_gflops"].items())
    out = [f"fastmlp bench: seconds per training epoch of {meta['samples']} samples, "
           f"{meta['dtype']}, plain SGD (lr {meta['lr']}), ReLU, softmax cross-entropy",
           f"data: {meta['data']}",
           f"BLAS: {meta['blas']}; {meta['gemm_size']}^3 {meta['dtype']} GEMM: {gflops}",
           "", fmt(head), fmt(["-" * w for w in widths])]
    out += [fmt(c) for c in lines]
    out.append("")
    rounds = max(len(r.get("numba_times") or [0]) for r in rows) if rows else 0
    out.append(f"medians of {rounds} paired round{'s' * (rounds != 1)} (numba and numpy "
               f"alternating first), min-max beside them.")
    for r in rows:
        if r.get("busy"):
            out.append(f"busy! {r['model']} batch {r['batch_size']} threads {r['threads']}: "
                       f"{r['busy']}; the machine was busy, rerun this row "
                       f"(fastmlp bench --models {r['model']} --batch-sizes {r['batch_size']} "
                       f"--threads {r['threads']}).")
    if scaled:
        fractions = sorted({r["numpy_samples_timed"] for r in rows})
        out.append(f"* timed on the first {'/'.join(map(str, fractions))} samples of the epoch "
                   f"(whole minibatches) and scaled to {meta['samples']}.")
    out.append("speed-up = numpy / numba. floor = the epoch's matmul FLOPs (forward, weight "
               "gradients, input gradients but the first layer's) / the GEMM throughput above "
               "at the row's thread count; floor/numba = the share of the BLAS's best rate the "
               "engine reaches.")
    for p in ("torch", "sklearn"):
        if p not in peers:
            why = "not installed" if meta["peers"].get(p) is None else "not run"
            if p not in meta["peers"]:
                why = "not requested"
            hint = {"torch": "pip install torch", "sklearn": 'pip install "fastmlp[sklearn]"'}[p]
            out.append(f"{p}: skipped ({why}{'; ' + hint if why == 'not installed' else ''}).")
        elif p == "torch":
            out.append(f"torch {meta['peers']['torch']}: eager, same model, starting weights, "
                       "sample order, batch size and threads (torch.set_num_threads), torch.optim.SGD.")
        else:
            out.append(f"sklearn {meta['peers']['sklearn']}: MLPClassifier(solver='sgd', momentum=0, "
                       "alpha=0, max_iter=1), its own init and input checks included.")
    return "\n".join(out)


def plot_report(result, path):
    """Bar chart of seconds per epoch per configuration and implementation, floor as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    impls = [k for k in ("numba", "numpy", "torch", "sklearn") if any(f"{k}_s" in r for r in rows)]
    labels = [f"{r['model']}\nb{r['batch_size']} t{r['threads']}" for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(impls)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(rows)), 4.5))
    for k, impl in enumerate(impls):
        values = [r.get(f"{impl}_s", np.nan) for r in rows]
        ax.bar(x + (k - (len(impls) - 1) / 2) * width, values, width, label=impl)
    for i, r in enumerate(rows):
        ax.hlines(r["floor_s"], i - 0.45, i + 0.45, colors="black", linestyles="dashed",
                  label="GEMM floor" if i == 0 else None)
    ax.set_yscale("log")
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("seconds per epoch (log)")
    ax.set_title(f"one epoch, {result['meta']['samples']} samples, {result['meta']['dtype']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _csv(values, convert):
    out = []
    for v in values:
        out += [convert(p) for p in str(v).split(",") if p.strip()]
    return out


def build_parser(parser=None):
    """The options of ``fastmlp bench``; pass a (sub)parser to add them to it."""
    parser = parser or argparse.ArgumentParser(
        prog="fastmlp bench", description="Time one training epoch of the compiled engine next to "
        "the NumPy reference, the GEMM floor and (when installed) PyTorch and scikit-learn.")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: {QUICK_SAMPLES} samples per epoch (also FASTMLP_BENCH_QUICK=1)")
    parser.add_argument("--threads", nargs="+", default=None, metavar="N",
                        help=f"thread counts, e.g. 1 2 or 1,2 (default: all cores = {available_cores()})")
    parser.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                        help="layer widths such as 784-128-10 (default: 784-128-10 784-512-256-10)")
    parser.add_argument("--batch-sizes", nargs="+", default=None, metavar="B",
                        help="minibatch sizes (default: 32 128 512)")
    parser.add_argument("--samples", type=int, default=None,
                        help=f"samples per epoch (default {EPOCH_SAMPLES}; {QUICK_SAMPLES} with --quick)")
    parser.add_argument("--ref-fraction", type=float, default=None,
                        help="share of the epoch the NumPy reference and scikit-learn are timed on, "
                             "then scaled (default 0.1; 0.25 with --quick)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="paired rounds per row (numba and numpy alternating first); the "
                             "medians are shown with min-max, and rows whose rounds spread "
                             f"more than {BUSY_SPREAD}x are flagged busy (default: %(default)s)")
    parser.add_argument("--peers", default="torch,sklearn",
                        help="optional peers to run when installed: torch,sklearn or none")
    parser.add_argument("--data", default=None,
                        help="an IDX folder or file fastmlp.data.load reads, or 'synthetic' "
                             "(default: FASTMLP_BENCH_DATA, else Fashion-MNIST if installed)")
    parser.add_argument("--gemm-size", type=int, default=GEMM_SIZE,
                        help="side of the square float32 GEMM that measures the floor")
    parser.add_argument("--matrix", action="store_true",
                        help="the workload matrix instead: notebook configurations, the benchmark "
                             "rows, wide, deep and tabular nets, at 1 thread and all cores "
                             "(--threads to choose), against NumPy and PyTorch")
    parser.add_argument("--only", nargs="+", metavar="TEXT",
                        help="matrix rows whose name or model contains one of these, e.g. "
                             "notebook 784-2048-10")
    parser.add_argument("--rounds", type=int, default=5,
                        help="paired rounds per matrix row; the medians are shown (default 5)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also draw them (needs matplotlib)")
    return parser


def add_subcommand(commands, formatter_class=None):
    """Add ``bench`` to the ``fastmlp`` command line: ``commands`` is its subparsers object.
    The handler returns the exit code, as the other subcommands' do."""
    kwargs = {"formatter_class": formatter_class} if formatter_class else {}
    p = commands.add_parser(
        "bench", help="time a training epoch: compiled engine vs NumPy, GEMM floor, peers",
        description=textwrap.fill("Time one training epoch of the compiled engine next to the "
                                  "NumPy reference, the GEMM floor and (when installed) PyTorch "
                                  "and scikit-learn; print a table.", 78),
        **kwargs)
    build_parser(p)
    p.set_defaults(handler=run_args)
    return p


def main(argv=None):
    """``fastmlp bench``: run the report and print the table; returns an exit code."""
    args = build_parser().parse_args(argv)
    return run_args(args)


def run_args(args):
    """Run ``fastmlp bench`` from parsed arguments (so a CLI subcommand can reuse the parser)."""
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print('--plot needs matplotlib: pip install "fastmlp[plot]"', file=sys.stderr)
            return 2
    quick = args.quick or quick_mode()
    try:
        models = [parse_model(m) for m in _csv(args.models, str)] if args.models else DEFAULT_MODELS
        batch_sizes = _csv(args.batch_sizes, int) if args.batch_sizes else DEFAULT_BATCH_SIZES
        threads = _csv(args.threads, int) if args.threads else None
    except ValueError as exc:
        print(f"fastmlp bench: {exc}", file=sys.stderr)
        return 2
    if min(batch_sizes) < 1 or (threads and min(threads) < 1):
        print("fastmlp bench: batch sizes and thread counts must be >= 1", file=sys.stderr)
        return 2
    if args.matrix:
        return _run_matrix(args, threads, peers="torch" in args.peers.lower())
    samples = args.samples or (QUICK_SAMPLES if quick else EPOCH_SAMPLES)
    fraction = args.ref_fraction or (0.25 if quick else 0.1)
    if not 0 < fraction <= 1:
        print(f"fastmlp bench: --ref-fraction={fraction} must be in (0, 1]", file=sys.stderr)
        return 2
    peers = [] if args.peers.strip().lower() == "none" else _csv([args.peers], str)

    def progress(row):
        print(f"  {row['model']} batch {row['batch_size']} threads {row['threads']}: "
              f"numba {row['numba_s']:.3f}s", file=sys.stderr, flush=True)

    result = run_report(models, batch_sizes, threads, samples, fraction, args.repeats, peers,
                        args.data, args.gemm_size, progress)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        plot_report(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def _run_matrix(args, threads, peers):
    """``fastmlp bench --matrix``: the table of :mod:`fastmlp.matrix`."""
    from .io import write_atomic
    from .matrix import format_matrix, format_row, run_matrix, select_workloads

    if args.rounds < 1:
        print("fastmlp bench: --rounds must be >= 1", file=sys.stderr)
        return 2

    def progress(row):
        print("  " + format_row(row), file=sys.stderr, flush=True)

    workloads = select_workloads(args.only)
    if not workloads:
        print(f"fastmlp bench: no matrix row matches {' '.join(args.only)}", file=sys.stderr)
        return 2
    result = run_matrix(workloads, threads, args.rounds, peers, progress)
    print(format_matrix(result))
    if args.json:
        text = json.dumps(result, indent=2) + "\n"
        write_atomic(args.json, lambda f: f.write(text), binary=False)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
