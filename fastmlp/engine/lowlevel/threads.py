"""Thread settings around compiled calls, restored afterwards, one call at a time.

Two pools could run our numbers: Numba's (``prange``) and the BLAS the kernels call (OpenBLAS,
bundled with NumPy, or SciPy's). BLAS threads inside ``prange`` oversubscribe the cores, so every
compiled call states both counts explicitly. Both are process-wide settings, so calls are
serialised by one lock and the user's settings are put back when each call returns.

Threading layer: Numba would pick OpenMP when it is installed, and GNU OpenMP hangs a process
forked after it ran (``multiprocessing``'s default start method on Linux, joblib). Unless the
user chose a layer (``NUMBA_THREADING_LAYER``), fastmlp asks for Numba's own ``workqueue``: it
is fork-safe, needs no library, and trains as fast as TBB here (docs/performance.md,
"Threading layer"); it is not thread-safe, which the lock takes care of. If Numba's pool was
already started with another layer, that one stays.
"""

import os
import queue
import threading
from contextlib import contextmanager
from functools import lru_cache

_LOCK = threading.RLock()
_POOL = None          # run_on_threads' task queues, one per pool thread; started on first use


def _reset_lock_in_child():
    """After fork the child has only the forking thread: a lock held by any other thread of the
    parent would never be released, so the child starts with a fresh one (and a fresh pool: the
    parent's pool threads do not exist in the child)."""
    global _LOCK, _POOL, _IN_FORCE
    _LOCK = threading.RLock()
    _POOL = None
    _IN_FORCE = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock_in_child)


def _choose_threading_layer():
    """A fork-safe layer unless the user chose one; only effective before Numba's pool starts."""
    import numba

    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


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


_IN_FORCE = None      # (Numba, BLAS) counts of the thread_limits this lock's holder is inside


@contextmanager
def thread_limits(numba_threads, blas_threads):
    """Run the body with these Numba and BLAS thread counts, then restore the previous ones.
    Nested in a thread_limits of the same counts (the lock is re-entrant), it changes nothing:
    a loop of many short compiled calls sets the counts once around the loop."""
    global _IN_FORCE
    import numba

    counts = (max(1, min(int(numba_threads), max_threads())), max(1, int(blas_threads)))
    with _LOCK:
        if _IN_FORCE == counts:
            yield
            return
        _choose_threading_layer()
        previous, outer = numba.get_num_threads(), _IN_FORCE
        numba.set_num_threads(counts[0])
        try:
            with _blas_controller().limit(limits=counts[1], user_api="blas"):
                _IN_FORCE = counts
                yield
        finally:
            _IN_FORCE = outer
            numba.set_num_threads(previous)


def _worker_loop(tasks):
    """Body of one pool thread: run (work, t, done) items from ``tasks`` for ever."""
    while True:
        work, t, done = tasks.get()
        try:
            work(t)
            error = None
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            error = exc
        # dropped before the caller hears of it, not kept until the next item: ``work`` holds
        # the call's data and buffers (a slice of rows read from a file, say)
        del work
        done.put(error)
        del done, error


def run_on_threads(work, n_threads):
    """Call ``work(t)`` for t = 0 .. n_threads - 1 at the same time, each t always on pool thread
    t (daemon threads kept for the process, started on first use), and wait for all of them.

    One thread per t matters: the calls meet at barriers, so two of them queued on one thread
    would wait for each other for ever. The caller only waits, so a KeyboardInterrupt can only
    reach it while every call is running; it is raised once they all have returned (they run to
    the end of their minibatches, and nothing changes the arrays behind the caller's back).
    Re-raises the first exception of a call. ``work`` should release the GIL (a ``nogil``
    compiled call) to run in parallel."""
    global _POOL
    if n_threads <= 1:
        work(0)
        return
    with _LOCK:
        pool = _POOL = _POOL or []
        while len(pool) < n_threads:
            tasks = queue.SimpleQueue()
            threading.Thread(target=_worker_loop, args=(tasks,), daemon=True,
                             name=f"fastmlp-{len(pool)}").start()
            pool.append(tasks)
        done = queue.SimpleQueue()
        for t in range(n_threads):
            pool[t].put((work, t, done))
        errors, pending = [], n_threads
        while pending:
            try:
                error = done.get()
            except BaseException as interrupt:  # noqa: BLE001 - raised once the calls are done
                errors.insert(0, interrupt)
                continue
            pending -= 1
            if error is not None:
                errors.append(error)
        if errors:
            raise errors[0]
