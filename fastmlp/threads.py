"""Thread settings around compiled calls, restored afterwards, one call at a time.

Two pools could run our numbers: Numba's (``prange``) and the BLAS the kernels call (OpenBLAS,
bundled with NumPy, or SciPy's). BLAS threads inside ``prange`` oversubscribe the cores, so every
compiled call states both counts explicitly. Both are process-wide settings, so calls are
serialised by one lock and the user's settings are put back when each call returns.

Threading layer: Numba would pick OpenMP when it is installed, and GNU OpenMP hangs a process
forked after it ran (``multiprocessing``'s default start method on Linux, joblib). Unless the
user chose a layer (``NUMBA_THREADING_LAYER``), fastmlp asks for Numba's "forksafe" choice: TBB
(a dependency of fastmlp on x86-64, and the fastest layer measured here, with OpenMP) or else
``workqueue``. Both are fork-safe; ``workqueue`` is not thread-safe, which the lock takes care
of. If Numba's pool was already started with another layer, that one stays.
"""

import os
import threading
from contextlib import contextmanager
from functools import lru_cache

_LOCK = threading.RLock()
_POOL = None          # the worker threads of run_on_threads, started on first use
_POOL_SIZE = 0


def _reset_lock_in_child():
    """After fork the child has only the forking thread: a lock held by any other thread of the
    parent would never be released, so the child starts with a fresh one (and a fresh pool: the
    parent's pool threads do not exist in the child)."""
    global _LOCK, _POOL, _POOL_SIZE
    _LOCK = threading.RLock()
    _POOL, _POOL_SIZE = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def _choose_threading_layer():
    """A fork-safe layer unless the user chose one; only effective before Numba's pool starts."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "forksafe"


def available_cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def max_threads():
    """Most threads a compiled call may use: Numba's pool size (NUMBA_NUM_THREADS)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


@lru_cache(maxsize=1)
def _blas_controller():
    import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS too: the fallback GEMM)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def thread_limits(numba_threads, blas_threads):
    """Run the body with these Numba and BLAS thread counts, then restore the previous ones."""
    import numba

    with _LOCK:
        _choose_threading_layer()
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(int(numba_threads), max_threads())))
        try:
            with _blas_controller().limit(limits=max(1, int(blas_threads)), user_api="blas"):
                yield
        finally:
            numba.set_num_threads(previous)


def run_on_threads(work, n_threads):
    """Call ``work(t)`` for t = 0 .. n_threads - 1 at the same time: t = 0 on the calling thread,
    the others on a pool of threads kept for the process. Returns once all have returned;
    re-raises the first exception. ``work`` should release the GIL (a ``nogil`` compiled call)
    for the calls to run in parallel."""
    global _POOL, _POOL_SIZE
    from concurrent.futures import ThreadPoolExecutor

    if n_threads <= 1:
        work(0)
        return
    with _LOCK:
        if _POOL_SIZE < n_threads - 1:
            if _POOL is not None:
                _POOL.shutdown(wait=False)
            _POOL = ThreadPoolExecutor(max_workers=n_threads - 1, thread_name_prefix="fastmlp")
            _POOL_SIZE = n_threads - 1
        futures = [_POOL.submit(work, t) for t in range(1, n_threads)]
        try:
            work(0)
        finally:
            for future in futures:
                future.result()
