"""A spin barrier for compiled workers that run on threads of their own.

The "units" scheme of :mod:`fastmlp.engine` runs one compiled worker per thread for a whole
run of minibatches, and the workers meet several times per minibatch. A ``prange`` per phase
costs a launch each time and leaves the idle worker spinning in the threading layer; a barrier
on a shared counter costs a few hundred nanoseconds when the threads arrive together.

Numba has no atomics on the CPU, so the three operations are LLVM instructions emitted by
intrinsics. The barrier is the usual generation counter:
arrive with ``atomic_add(count)``; the last thread to arrive resets the count and bumps the
generation (release); the others spin on the generation (acquire) with ``pause``, and call
``sched_yield`` once they have spun long (another process, or more workers than cores, may be
holding the core they wait for).
"""

import ctypes
from functools import lru_cache

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .cpu import cpu_relax

COUNT = 0          # sync[COUNT]: threads arrived at the current barrier
GENERATION = 8     # sync[GENERATION]: barriers completed; a cache line away from the count
SPINS_BEFORE_YIELD = 2000


def _int64_array(arr):
    return isinstance(arr, types.Array) and arr.dtype == types.int64


def _slot(context, builder, arr_type, arr, index):
    array = context.make_array(arr_type)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arr_type, array, [index])


@intrinsic
def atomic_add(typingctx, arr, index, value):
    """arr[index] += value atomically (sequentially consistent); returns the old value."""
    if not _int64_array(arr):
        return None

    def codegen(context, builder, signature, args):
        ptr = _slot(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, context.cast(builder, args[2], signature.args[2],
                                                            types.int64), "seq_cst")

    return types.int64(arr, types.intp, types.int64), codegen


@intrinsic
def atomic_load(typingctx, arr, index):
    """arr[index], read with acquire ordering."""
    if not _int64_array(arr):
        return None

    def codegen(context, builder, signature, args):
        ptr = _slot(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return types.int64(arr, types.intp), codegen


@intrinsic
def atomic_store(typingctx, arr, index, value):
    """arr[index] = value with release ordering."""
    if not _int64_array(arr):
        return None

    def codegen(context, builder, signature, args):
        ptr = _slot(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(context.cast(builder, args[2], signature.args[2], types.int64), ptr,
                             "release", 8)
        return context.get_dummy_value()

    return types.void(arr, types.intp, types.int64), codegen


@intrinsic
def call_void(typingctx, fptr):
    """Call the C function ``int f(void)`` at address ``fptr`` (here: sched_yield)."""
    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [])
        builder.call(builder.inttoptr(args[0], fnty.as_pointer()), [])
        return context.get_dummy_value()

    return types.void(types.int64), codegen


@lru_cache(maxsize=1)
def yield_address():
    """Address of libc's ``sched_yield`` (0 when there is none: the barrier then only spins)."""
    try:
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value or 0
    except (OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def new_sync():
    """The shared state of one barrier: int64 zeros, the count and generation on separate lines."""
    sync = aligned_empty(2 * GENERATION, np.int64)
    sync[:] = 0
    return sync


CACHE_LINE = 64


def aligned_empty(shape, dtype):
    """An uninitialised C-contiguous array whose data starts on a 64-byte cache line. NumPy's
    buffers start 16 bytes into a line, so two threads writing the two halves of a row of 128
    floats shared a line in every row (false sharing: each write pulls the line from the
    other core)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(nbytes + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def whole_lines(count, dtype):
    """``count`` elements of ``dtype`` rounded up to whole cache lines, in elements."""
    per_line = CACHE_LINE // np.dtype(dtype).itemsize
    return -(-count // per_line) * per_line


def per_thread(n_threads, shape, dtype):
    """One uninitialised buffer of ``shape`` for each of ``n_threads`` threads, each starting on
    a cache line and none sharing a line with another."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    buf = aligned_empty((n_threads, max(whole_lines(size, dtype), 1)), dtype)
    return [buf[t, :size].reshape(shape) for t in range(n_threads)]


@njit(cache=True, nogil=True)
def barrier(sync, n_threads, yield_fn):
    """Wait until all ``n_threads`` threads have called ``barrier`` on ``sync``. Everything a
    thread wrote before the barrier is visible to every thread after it."""
    if n_threads <= 1:
        return
    generation = atomic_load(sync, GENERATION)
    if atomic_add(sync, COUNT, 1) == n_threads - 1:
        atomic_store(sync, COUNT, 0)
        atomic_add(sync, GENERATION, 1)
        return
    spins = 0
    while atomic_load(sync, GENERATION) == generation:
        if spins < SPINS_BEFORE_YIELD or yield_fn == 0:
            cpu_relax()
            spins += 1
        else:
            call_void(yield_fn)
