"""GEMM from compiled code: ``C = alpha * op(A) @ op(B) + beta * C`` through a BLAS function pointer.

Numba's ``np.dot`` always calls the BLAS bundled with SciPy and cannot scale or accumulate into
its output. We call the library's ``gemm`` ourselves so that
- the plain SGD step fuses into the weight-gradient product (``W <- W - lr * x.T @ dz`` is one
  GEMM with alpha = -lr, beta = 1: no gradient buffer, no separate update pass), and
- we can use NumPy's bundled OpenBLAS (ILP64 CBLAS), which is markedly faster than SciPy's on
  small products (docs/performance.md, "FEW_ROWS"), falling back to SciPy's ``cython_blas``
  (Fortran interface, always present since SciPy is a dependency).
The function address is an ordinary int64 argument, never a compile-time constant, so kernels
that use it stay cacheable across processes.
"""

import ctypes
import glob
import os
from functools import lru_cache

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .intrinsics import int64s

# call conventions
CBLAS_ILP64 = 1      # cblas_?gemm(order, transa, transb, int64 m, n, k, alpha, A, lda, ...)
FORTRAN_LP64 = 0     # ?gemm_(char*, char*, int32* m, n, k, alpha*, A, lda*, ...), column-major


@intrinsic
def _gemm_call(typingctx, fptr, convention, trans, shape, alpha, a, b, beta, c):
    """Row-major C (m, n) = alpha * op(A) (m, k) @ op(B) (k, n) + beta * C via the function at
    ``fptr``: trans = (trans_a, trans_b), each 0/1; shape = (m, n, k); a, b and c are each
    (data address, leading dimension)."""
    float_t = alpha
    for arg in (trans, shape, a, b, c):
        if not isinstance(arg, types.BaseTuple):
            return None
    sig = types.void(types.int64, types.int64, trans, shape, float_t, a, b, float_t, c)

    def codegen(context, builder, signature, args):
        fptr_v, conv_v, trans_v, shape_v, alpha_v, a_t, b_t, beta_v, c_t = args
        ta_v, tb_v = int64s(context, builder, trans, trans_v)
        m_v, n_v, k_v = int64s(context, builder, shape, shape_v)
        a_v, lda_v = int64s(context, builder, a, a_t)
        b_v, ldb_v = int64s(context, builder, b, b_t)
        c_v, ldc_v = int64s(context, builder, c, c_t)
        fl = context.get_value_type(float_t)
        fl_ptr = fl.as_pointer()
        i32, i64, i8 = ir.IntType(32), ir.IntType(64), ir.IntType(8)
        a_p = builder.inttoptr(a_v, fl_ptr)
        b_p = builder.inttoptr(b_v, fl_ptr)
        c_p = builder.inttoptr(c_v, fl_ptr)
        is_cblas = builder.icmp_signed("==", conv_v, ir.Constant(i64, CBLAS_ILP64))
        with builder.if_else(is_cblas) as (then, otherwise):
            with then:
                fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, fl, fl_ptr,
                                                       i64, fl_ptr, i64, fl, fl_ptr, i64])
                fn = builder.inttoptr(fptr_v, fnty.as_pointer())
                # CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112
                ta = builder.trunc(builder.add(ta_v, ir.Constant(i64, 111)), i32)
                tb = builder.trunc(builder.add(tb_v, ir.Constant(i64, 111)), i32)
                builder.call(fn, [ir.Constant(i32, 101), ta, tb, m_v, n_v, k_v, alpha_v, a_p,
                                  lda_v, b_p, ldb_v, beta_v, c_p, ldc_v])
            with otherwise:
                # column-major BLAS: C^T (n, m) = op(B)^T @ op(A)^T, so swap the operands
                fnty = ir.FunctionType(ir.VoidType(), [i8.as_pointer(), i8.as_pointer()]
                                       + [i32.as_pointer()] * 3 + [fl_ptr, fl_ptr,
                                       i32.as_pointer(), fl_ptr, i32.as_pointer(), fl_ptr,
                                       fl_ptr, i32.as_pointer()])
                fn = builder.inttoptr(fptr_v, fnty.as_pointer())

                def char(flag):
                    slot = cgutils.alloca_once(builder, i8)
                    builder.store(builder.select(builder.icmp_signed("!=", flag, ir.Constant(i64, 0)),
                                                 ir.Constant(i8, ord("T")), ir.Constant(i8, ord("N"))), slot)
                    return slot

                def int32(value):
                    slot = cgutils.alloca_once(builder, i32)
                    builder.store(builder.trunc(value, i32), slot)
                    return slot

                def flt(value):
                    slot = cgutils.alloca_once(builder, fl)
                    builder.store(value, slot)
                    return slot

                builder.call(fn, [char(tb_v), char(ta_v), int32(n_v), int32(m_v), int32(k_v),
                                  flt(alpha_v), b_p, int32(ldb_v), a_p, int32(lda_v), flt(beta_v),
                                  c_p, int32(ldc_v)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def gemm(blas, trans_a, trans_b, alpha, A, B, beta, C):
    """C = alpha * op(A) @ op(B) + beta * C for row-major 2-D arrays of one float dtype.

    ``blas`` is the int64 array from :func:`blas_handle`: [sgemm address, dgemm address,
    convention]. op(X) is X.T when trans_x is True. Each array must have unit stride along its
    rows (C-contiguous, or a block of columns of one); the row stride is the leading dimension.
    Shapes are the caller's responsibility.
    """
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    if m == 0 or n == 0:
        return
    T = C.dtype.type
    fptr = blas[0] if C.itemsize == 4 else blas[1]
    _gemm_call(fptr, blas[2], (int(trans_a), int(trans_b)), (m, n, k), T(alpha),
               (A.ctypes.data, _leading(A)), (B.ctypes.data, _leading(B)), T(beta),
               (C.ctypes.data, _leading(C)))


# OpenBLAS multiplies small products (up to about 2^18 multiply-adds here) with kernels that do
# not pack their operands; larger ones pay for packing, which products of few rows do not win
# back, so products of at most FEW_ROWS rows go in pieces of SMALL_PRODUCT multiply-adds
# (docs/performance.md, "FEW_ROWS and SMALL_PRODUCT").
FEW_ROWS = 64
SMALL_PRODUCT = 1 << 18


@njit(cache=True, nogil=True, inline="always")
def gemm_few_rows(blas, trans_b, A, B, C):
    """C = A @ op(B) like :func:`gemm`, for A with few rows cut into products small enough for
    OpenBLAS's unpacked kernels: along K (B's rows) for op(B) = B, along N for op(B) = B.T."""
    m, n = C.shape
    k = A.shape[1]
    if m > FEW_ROWS or m * n * k <= SMALL_PRODUCT:
        gemm(blas, False, trans_b, 1.0, A, B, 0.0, C)
    elif trans_b:
        step = max(16, SMALL_PRODUCT // 2 // (m * k) // 16 * 16)
        for n0 in range(0, n, step):
            n1 = min(n, n0 + step)
            gemm(blas, False, True, 1.0, A, B[n0:n1], 0.0, C[:, n0:n1])
    else:
        step = max(64, SMALL_PRODUCT // (m * n) // 16 * 16)
        for k0 in range(0, k, step):
            k1 = min(k, k0 + step)
            gemm(blas, False, False, 1.0, A[:, k0:k1], B[k0:k1], 0.0 if k0 == 0 else 1.0, C)


@njit(cache=True, nogil=True, inline="always")
def _leading(A):
    """Row stride of A in elements (at least 1, as BLAS requires)."""
    return max(1, A.strides[0] // A.itemsize, A.shape[1])


def _numpy_openblas():
    """(sgemm, dgemm) addresses of NumPy's bundled ILP64 OpenBLAS, or None."""
    folder = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in glob.glob(os.path.join(folder, "*openblas64*.so*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_cblas_", "64_"), ("cblas_", "64_"), ("cblas_", "")):
            try:
                s, d = getattr(lib, f"{prefix}sgemm{suffix}"), getattr(lib, f"{prefix}dgemm{suffix}")
            except AttributeError:
                continue
            if "64" in suffix or "64" in os.path.basename(path):
                return ctypes.cast(s, ctypes.c_void_p).value, ctypes.cast(d, ctypes.c_void_p).value
    return None


def _scipy_cython_blas():
    """(sgemm, dgemm) addresses from scipy.linalg.cython_blas (Fortran interface, int32)."""
    import scipy.linalg.cython_blas as cb

    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype = ctypes.c_void_p
    get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    addresses = []
    for name in ("sgemm", "dgemm"):
        capsule = cb.__pyx_capi__[name]
        addresses.append(get_pointer(capsule, get_name(capsule)))
    return tuple(addresses)


@lru_cache(maxsize=1)
def blas_handle():
    """int64 [sgemm, dgemm, convention]: NumPy's OpenBLAS when found (FASTMLP_BLAS=scipy forces
    SciPy's), else SciPy's cython_blas."""
    found = None if os.environ.get("FASTMLP_BLAS", "").lower() == "scipy" else _numpy_openblas()
    if found is not None:
        return np.array([found[0], found[1], CBLAS_ILP64], dtype=np.int64)
    s, d = _scipy_cython_blas()
    return np.array([s, d, FORTRAN_LP64], dtype=np.int64)


def blas_name():
    """Which BLAS the compiled engine calls, for reports."""
    return "numpy-openblas (cblas ilp64)" if blas_handle()[2] == CBLAS_ILP64 else "scipy cython_blas"
