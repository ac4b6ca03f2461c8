"""The spin barrier and the thread runner behind the engine's "units" scheme."""

import threading

import numpy as np
import pytest
from numba import njit

from fastmlp.engine.lowlevel.sync import aligned_empty, barrier, new_sync, per_thread, yield_address
from fastmlp.engine.lowlevel.threads import run_on_threads


@njit(nogil=True)
def _rounds(t, n_threads, sync, yield_fn, seen, rounds):
    """Each round: write my slot, meet, check every thread's slot; returns the first round whose
    check failed, or -1."""
    for r in range(rounds):
        seen[t] = r
        barrier(sync, n_threads, yield_fn)
        for u in range(n_threads):
            if seen[u] != r:
                return r
        barrier(sync, n_threads, yield_fn)   # nobody writes round r + 1 before all have checked r
    return -1


@pytest.mark.parametrize("n_threads", [1, 2, 3, 5])
def test_barrier_lets_no_thread_ahead(n_threads):
    """More threads than cores too: waiters fall back to sched_yield instead of spinning."""
    sync, seen = new_sync(), np.full(n_threads, -1, dtype=np.int64)
    results = [None] * n_threads
    # more threads than the 2 cores of CI meet by sched_yield, about 2.5 ms a round
    rounds = 2000 if n_threads <= 2 else 300

    def work(t):
        results[t] = _rounds(t, n_threads, sync, yield_address(), seen, rounds)

    run_on_threads(work, n_threads)
    assert results == [-1] * n_threads
    assert sync[0] == 0                      # nobody is left waiting


def test_run_on_threads_gives_each_call_its_own_thread_and_reraises():
    names = [None] * 3

    def work(t):
        names[t] = threading.current_thread().name

    run_on_threads(work, 3)
    assert len(set(names)) == 3 and threading.current_thread().name not in names
    run_on_threads(work, 3)                  # the same thread for the same t, every time
    assert names == ["fastmlp-0", "fastmlp-1", "fastmlp-2"]

    def fail(t):
        if t == 1:
            raise RuntimeError("thread 1 failed")

    with pytest.raises(RuntimeError, match="thread 1 failed"):
        run_on_threads(fail, 2)


def test_the_pool_keeps_nothing_of_a_call_once_it_returns():
    """A call's closure (its data and buffers) is freed when the call is done, not when the
    pool's threads get their next call."""
    import gc
    import weakref

    class Buffers:
        pass

    held = Buffers()
    ref = weakref.ref(held)

    def work(t, held=held):
        held.seen = t

    run_on_threads(work, 2)
    del work, held
    gc.collect()
    assert ref() is None


def test_buffers_start_on_cache_lines():
    for shape, dtype in [((7,), np.float32), ((3, 5), np.float64), ((1000,), np.int64)]:
        buf = aligned_empty(shape, dtype)
        assert buf.ctypes.data % 64 == 0 and buf.shape == shape and buf.dtype == dtype
    bufs = per_thread(3, (5, 3), np.float32)     # 60 bytes each: one line per thread
    assert [b.shape for b in bufs] == [(5, 3)] * 3
    assert all(b.ctypes.data % 64 == 0 and b.flags.c_contiguous for b in bufs)
    assert len({b.ctypes.data // 64 for b in bufs}) == 3
