"""What ``fastmlp info`` reports: versions, cores and threads, the BLAS, Numba's cache."""

import os
from pathlib import Path

import numpy as np

from ._version import __version__


def _message(exc):
    return str(exc).strip() or type(exc).__name__


def report_rows():
    """(name, value) rows of ``fastmlp info``: versions, cores, threads, BLAS, Numba's cache."""
    import platform

    import numba

    from .engine.lowlevel.threads import available_cores

    rows = [("fastmlp", f"{__version__} ({Path(__file__).resolve().parent})"),
            ("python", f"{platform.python_version()} ({platform.python_implementation()}, "
                       f"{platform.system()} {platform.machine()})"),
            ("numpy", np.__version__),
            ("numba", numba.__version__)]
    rows.append(("matplotlib", _version_of("matplotlib", "matplotlib", "plot")))
    rows.append(("scikit-learn", _version_of("sklearn", "scikit-learn", "sklearn")))
    rows.append(("cores", f"{available_cores()} available to this process "
                          f"({os.cpu_count()} in the machine)"))
    rows.append(("numba threads", f"{numba.config.NUMBA_NUM_THREADS} (NUMBA_NUM_THREADS)"))
    from .engine.plan import planned_cores

    rows.append(("plans for", f"{planned_cores()} cores (FASTMLP_PLAN_CORES; results depend on "
                              "it, not on threads)"))
    rows.append(("threading layer", _threading_layer()))
    try:
        from .engine.lowlevel.blas import blas_name

        rows.append(("BLAS", blas_name()))
    except Exception as exc:        # noqa: BLE001 - a report, not a failure
        rows.append(("BLAS", f"unavailable ({_message(exc)})"))
    rows.append(("numba cache", cache_dir()))
    from .engine import background

    rows.append(("compile mode", f"{background.mode()} (FASTMLP_COMPILE: 'background' runs the "
                                 "NumPy reference while kernels missing from the cache compile, "
                                 "'wait' waits for them)"))
    from .engine import tuner

    rows.append(("thread count", f"{tuner.mode()} (FASTMLP_TUNE: 'on' times the counts up to the "
                                 "threads allowed on a training call's first minibatches and "
                                 "keeps the fastest, 'off' uses them all)"))
    return rows


def plan_rows(layers, batch_size, n_rows, threads=None):
    """(name, value) rows of ``fastmlp info --model``: the plan of a training call over
    ``n_rows`` rows in minibatches of ``batch_size`` and of an inference call, and why."""
    from .engine import PREDICT_CHUNK
    from .engine.lowlevel.threads import available_cores
    from .engine.plan import explain_training, plan_inference
    from .flops import model_name

    threads = threads or available_cores()
    batch_size = min(batch_size, n_rows)
    chosen, why = explain_training(threads, batch_size, layers, n_rows)
    from .engine import tuner

    up_to = "up to " if tuner.timing(chosen.threads) else ""
    on = f"on {up_to}{_count(chosen.threads, 'thread')}"
    training = {"units": f"{_count(chosen.parts, 'block')} of units {on}, minibatches in pieces "
                         f"of {chosen.chunk} rows",
                "parts": f"each minibatch in {_count(chosen.parts, 'part')} {on}",
                "rows": f"blocks of {chosen.chunk} rows {on}"}[chosen.scheme]
    inference = plan_inference(threads, min(PREDICT_CHUNK, n_rows), layers)
    return [("plan for", f"{model_name(layers)}, minibatches of {batch_size} rows, {n_rows:,} rows "
                         f"a call, at most {_count(threads, 'thread')}"),
            ("training", f"the {chosen.scheme} scheme: {training}; BLAS on "
                         f"{_count(chosen.blas_threads, 'thread')}"),
            ("  threads", why[0]),
            ("  scheme", why[1]),
            ("  inputs", _first_layer(chosen, batch_size, layers, n_rows)),
            ("inference", f"{_count(inference.parts, 'run')} of chunks of up to {PREDICT_CHUNK} "
                          f"rows on {_count(inference.threads, 'thread')}")]


def _first_layer(chosen, batch_size, layers, n_rows):
    """Whether the first layer of a float32 training call planned as ``chosen`` may take X's
    non-zeros (:mod:`fastmlp.engine.lowlevel.sparse`), in words: that depends on X's share of
    non-zeros, which only the data says."""
    from .engine.plan import SPARSE_MAX_DENSITY
    from .engine.units import not_on_nonzeros

    may = (f"X's non-zeros when at most SPARSE_MAX_DENSITY = {SPARSE_MAX_DENSITY} of its "
           "elements are not zero (MLP.fit passes X compressed), else the dense products")
    if chosen.scheme == "rows":
        return may if batch_size >= n_rows else (
            "the dense products: the rows scheme takes X's non-zeros only when every minibatch "
            "is all of X (full-batch gradient descent)")
    if chosen.scheme == "units" and len(layers) > 2:
        why = not_on_nonzeros(int(layers[1]), chosen.parts, chosen.chunk, 4)
        return f"the dense products: {why}" if why else may
    return "the dense products (the parts scheme: BLAS on the gathered minibatch)"


def _count(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def _version_of(module, distribution, extra):
    """The installed version of ``module``, read from its distribution's metadata: importing
    scikit-learn or matplotlib takes a second or two."""
    import importlib
    from importlib import metadata, util

    missing = f'not installed (pip install "fastmlp[{extra}]")'
    if util.find_spec(module) is None:
        return missing
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:     # importable but not installed: a source tree
        try:
            return importlib.import_module(module).__version__
        except ImportError:
            return missing


def _threading_layer():
    """The layer Numba's parallel kernels run on, found by running a tiny prediction (or the
    one asked for, while that prediction's kernel compiles in the background)."""
    import numba

    from .engine import background
    from .model import MLP

    try:
        model = MLP([4, 2], engine="numba", threads=1)
        model.params = model.params         # mark as fitted
        model.predict(np.zeros((2, 4), dtype=np.float32))
        if background.pending():
            return (f"{numba.config.THREADING_LAYER} (NUMBA_THREADING_LAYER; it starts with the "
                    "first compiled call: the kernels are compiling in the background)")
        layer = numba.threading_layer()
    except Exception as exc:        # noqa: BLE001 - a report, not a failure
        return f"unknown ({_message(exc)})"
    return f"{layer} (NUMBA_THREADING_LAYER={numba.config.THREADING_LAYER})"


def kernels_cached():
    """Whether Numba's cache holds compiled fastmlp kernels; None when it cannot tell."""
    import numba

    folder = Path(numba.config.CACHE_DIR) if numba.config.CACHE_DIR else _engine_cache()
    if not numba.config.CACHE_DIR and not os.access(folder.parent, os.W_OK):
        return None                     # Numba falls back to a per-user folder
    try:
        return any(folder.rglob("units.units_worker-*.nbi"))
    except OSError:
        return None


def compile_note():
    """What a first run with an empty cache does, for the command line to say (see
    :mod:`fastmlp.engine.background`)."""
    from .engine import background

    if background.mode() == "wait":
        return ("compiling the Numba kernels, once: 20-40 s (later runs load them from the "
                "cache)")
    return ("compiling the Numba kernels in the background, once (20-40 s; later runs load them "
            "from the cache): until they are ready, the NumPy reference runs (set "
            "FASTMLP_COMPILE=wait to wait for them instead)")


def cache_dir():
    import numba

    if numba.config.CACHE_DIR:
        return f"{numba.config.CACHE_DIR} (NUMBA_CACHE_DIR)"
    folder = _engine_cache()
    writable = os.access(folder if folder.exists() else folder.parent, os.W_OK)
    note = ("default: beside the package; set NUMBA_CACHE_DIR to move it" if writable else
            "not writable, so Numba uses a per-user cache directory instead; "
            "set NUMBA_CACHE_DIR to choose one")
    return f"{folder} ({note})"


def _engine_cache():
    """Where Numba keeps the engine's compiled functions by default: beside its modules (and
    those of engine/lowlevel/ beside theirs)."""
    return Path(__file__).resolve().parent / "engine" / "__pycache__"
