"""Thread settings around compiled calls, restored afterwards, one call at a time.

Two pools could run our numbers: Numba's (``prange``) and the BLAS behind ``np.dot`` (OpenBLAS,
bundled with SciPy and NumPy). BLAS threads inside ``prange`` oversubscribe the cores, so every
compiled call states both counts explicitly. Both are process-wide settings, so calls are
serialised by one lock and the user's settings are put back when each call returns. The lock also
keeps two Python threads from launching parallel Numba regions at once (Numba's default
``workqueue`` threading layer is not thread-safe, but it is fork-safe, which is why we keep it).
"""

import os
import threading
from contextlib import contextmanager
from functools import lru_cache

_LOCK = threading.RLock()


def _reset_lock_in_child():
    """After fork the child has only the forking thread: a lock held by any other thread of the
    parent would never be released, so the child starts with a fresh one."""
    global _LOCK
    _LOCK = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


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
    import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS, which Numba's np.dot calls)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def thread_limits(numba_threads, blas_threads):
    """Run the body with these Numba and BLAS thread counts, then restore the previous ones."""
    import numba

    with _LOCK:
        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(int(numba_threads), max_threads())))
        try:
            with _blas_controller().limit(limits=max(1, int(blas_threads)), user_api="blas"):
                yield
        finally:
            numba.set_num_threads(previous)
