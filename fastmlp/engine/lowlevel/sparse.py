"""Products from the non-zeros of X, for a first layer on inputs that are mostly zeros.

MNIST's pixels are 81% zeros, and the dense products of :mod:`.tiles` and :mod:`.dots`
multiply every one. Here X is held compressed, once by rows (CSR: ``ptr``, ``idx``, ``val``;
row i's non-zeros are val[ptr[i]:ptr[i + 1]], in the columns idx[ptr[i]:ptr[i + 1]]) and once by
columns (CSC, the same of X.T), and the first layer's two products take only the non-zeros:

- :func:`sparse_rows_epilogue`: the forward pass, C[r] = X[rows[r]] @ W, then + b and relu
  as in :func:`.tiles.matmul_rows_epilogue`: one vector multiply-add per non-zero x_p and
  vector of units, x_p times a vector of W's row idx[p] (W row-major; its rows stay in L1/L2);
- :func:`sparse_column_sums`: the weight gradient, dW[k] = sum_p x_p * dz[r_p] over the
  non-zeros of column k of X, dz of every row of the minibatch held (full-batch gradient
  descent: the minibatch is all of X, each row once);
- :func:`sparse_rank_update`: the weight gradient of any rows, C = alpha * X[rows].T @ D +
  beta * C, by rows: each non-zero x_p of row i adds x_p * D[i] to row idx[p] of a scratch
  sum S (a load, a multiply-add and a store of each vector; units in whole vectors, as a masked
  store in that loop costs several times a plain one), then C = alpha * S + beta * C.

Each sum runs over a row's or a column's non-zeros in the order X has them, in CHAINS
independent registers added at the end: its bits depend on X alone. They pay below about a
fifth non-zero (docs/performance.md, "Sparse inputs"; the choice is in :mod:`..rows` and
:mod:`..units`).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .intrinsics import int64s
from .tiles import EPI_BIAS, EPI_BIAS_RELU, EPI_NONE, VECTOR_BYTES, _splat, _vector_helpers

# independent sums per vector of units (a multiply-add's latency is four times its issue
# interval): max(1, CHAINS // vectors) sets of registers, added at the end
CHAINS = 4
# vectors of units one pass over a row's (or column's) non-zeros takes; wider layers take
# several passes
MAX_VECTORS = 4


@intrinsic
def _compressed_sums(typingctx, vectors, out, b, x, like):
    """out[:n] = sum_p val[p] * B[idx[p], :n] over the ``count`` entries of x = (idx_addr,
    val_addr, count) (idx int32), B at b = (b_addr, ldb, n) (ldb in elements), finished by
    out = (out_addr, e_addr, epi): EPI_BIAS adds the bias (its element 0 at e_addr), EPI_BIAS_RELU
    then takes relu, anything else stores the sums. ``vectors`` (a literal, at least n / lanes):
    the last vector is loaded and stored through a mask; ``like``: a float of the elements' type.
    Entry p goes into sum p % S (S = max(1, CHAINS // vectors)) for p below a multiple of S, the
    rest into sum 0; the sums are added 0 + 1 + ... at the end."""
    if not isinstance(vectors, types.IntegerLiteral) or not isinstance(like, types.Float) or \
            not all(isinstance(t, types.BaseTuple) for t in (out, b, x)):
        return None
    sig = types.void(vectors, out, b, x, like)
    NV = vectors.literal_value
    S = max(1, CHAINS // NV)

    def codegen(context, builder, signature, args):
        out_v, e_v, epi_v, b_v, ldb_v, n_v, idx_v, val_v, count_v = (
            v for t, arg in zip(signature.args[1:4], args[1:4])
            for v in int64s(context, builder, t, arg))
        fl = context.get_value_type(signature.args[4])
        vt, lanes, size, fma, masked_load, masked_store, lanes_below = _vector_helpers(
            context, builder, fl)
        i64 = ir.IntType(64)
        zero = ir.Constant(vt, [ir.Constant(fl, 0.0)] * lanes)
        align = ir.Constant(ir.IntType(32), size)

        def const(v):
            return ir.Constant(i64, v)

        mask = lanes_below(builder.sub(n_v, const((NV - 1) * lanes)))

        def load(addr, v):
            p = builder.inttoptr(addr, vt.as_pointer())
            if v == NV - 1:
                return builder.call(masked_load, [p, align, mask, zero])
            return builder.load(p, align=size)

        def store(value, addr, v):
            p = builder.inttoptr(addr, vt.as_pointer())
            if v == NV - 1:
                builder.call(masked_store, [value, p, align, mask])
            else:
                builder.store(value, p, align=size)

        idx = builder.inttoptr(idx_v, ir.IntType(32).as_pointer())
        val = builder.inttoptr(val_v, fl.as_pointer())
        row_bytes = builder.mul(ldb_v, const(size))
        sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(NV)] for _ in range(S)]

        def take(p, s):                         # sums[s] += val[p] * B[idx[p]]
            k = builder.sext(builder.load(builder.gep(idx, [p])), i64)
            x_p = _splat(builder, builder.load(builder.gep(val, [p])), vt)
            row = builder.add(b_v, builder.mul(k, row_bytes))
            for v in range(NV):
                b_row = load(builder.add(row, const(v * VECTOR_BYTES)), v)
                builder.store(builder.call(fma, [x_p, b_row, builder.load(sums[s][v])]),
                              sums[s][v])

        turns = builder.sdiv(count_v, const(S))
        with cgutils.for_range(builder, turns) as loop:
            for s in range(S):
                take(builder.add(builder.mul(loop.index, const(S)), const(s)), s)
        with cgutils.for_range(builder, builder.sub(count_v, builder.mul(turns, const(S)))) as loop:
            take(builder.add(builder.mul(turns, const(S)), loop.index), 0)

        add_bias = builder.or_(builder.icmp_signed("==", epi_v, const(int(EPI_BIAS))),
                               builder.icmp_signed("==", epi_v, const(int(EPI_BIAS_RELU))))
        relu = builder.icmp_signed("==", epi_v, const(int(EPI_BIAS_RELU)))
        total = cgutils.alloca_once_value(builder, zero)
        for v in range(NV):
            builder.store(builder.load(sums[0][v]), total)
            for s in range(1, S):
                builder.store(builder.fadd(builder.load(total), builder.load(sums[s][v])), total)
            with builder.if_then(add_bias):
                bias = load(builder.add(e_v, const(v * VECTOR_BYTES)), v)
                builder.store(builder.fadd(builder.load(total), bias), total)
            with builder.if_then(relu):         # z <= 0 -> 0, NaN stays NaN
                z = builder.load(total)
                builder.store(builder.select(builder.fcmp_ordered("<=", z, zero), zero, z), total)
            store(builder.load(total), builder.add(out_v, const(v * VECTOR_BYTES)), v)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _sums_of(width, lanes, out, b, x, like):
    """:func:`_compressed_sums` over ``width`` <= MAX_VECTORS * lanes units, with as many
    vectors as they need (a literal)."""
    if width > 3 * lanes:
        _compressed_sums(4, out, b, x, like)
    elif width > 2 * lanes:
        _compressed_sums(3, out, b, x, like)
    elif width > lanes:
        _compressed_sums(2, out, b, x, like)
    else:
        _compressed_sums(1, out, b, x, like)


@njit(cache=True, nogil=True, inline="always")
def _entries(compressed, i):
    """x = (idx address, val address, count) of row (or column) i of a compressed matrix."""
    ptr, idx, val = compressed
    p0 = ptr[i]
    return (idx.ctypes.data + p0 * idx.itemsize, val.ctypes.data + p0 * val.itemsize,
            ptr[i + 1] - p0)


@njit(cache=True, nogil=True)
def sparse_rows_epilogue(C, rows, csr, W, epi, e_addr):
    """C (m, n) = X[rows] @ W, where X is given by its rows' non-zeros ``csr`` = (ptr, idx, val)
    and W is (k, n) row-major, finished by ``epi`` as in :func:`.tiles.matmul_rows_epilogue`:
    EPI_NONE, EPI_BIAS (+ b, b[0] at address ``e_addr``) or EPI_BIAS_RELU (relu(. + b)). C and W
    need unit stride along their rows; one float dtype throughout."""
    m, n = C.shape
    T = C.dtype.type
    lanes = VECTOR_BYTES // C.itemsize
    chunk = MAX_VECTORS * lanes
    ldb = W.strides[0] // W.itemsize
    bias = epi == EPI_BIAS or epi == EPI_BIAS_RELU
    for r in range(m):
        x = _entries(csr, rows[r])
        for j0 in range(0, n, chunk):
            out = (C.ctypes.data + r * C.strides[0] + j0 * C.itemsize,
                   e_addr + j0 * C.itemsize if bias else e_addr, np.int64(epi))
            _sums_of(min(chunk, n - j0), lanes, out,
                     (W.ctypes.data + j0 * W.itemsize, ldb, min(chunk, n - j0)), x, T(0))


@njit(cache=True, nogil=True)
def sparse_column_sums(G, csc, D, k0):
    """G[i] = sum_p x_p * D[r_p] over the non-zeros x_p (in rows r_p) of column k0 + i of X,
    for each row i of G (k, n): rows k0 .. k0 + k of the weight gradient X.T @ D, X given by its
    columns' non-zeros ``csc`` = (ptr, idx, val), D (rows of X, n) the layer's dz of every row.
    G and D need unit stride along their rows; one float dtype throughout."""
    k, n = G.shape
    T = G.dtype.type
    lanes = VECTOR_BYTES // G.itemsize
    chunk = MAX_VECTORS * lanes
    ldd = D.strides[0] // D.itemsize
    for i in range(k):
        x = _entries(csc, k0 + i)
        for j0 in range(0, n, chunk):
            out = (G.ctypes.data + i * G.strides[0] + j0 * G.itemsize, np.int64(0), EPI_NONE)
            _sums_of(min(chunk, n - j0), lanes, out,
                     (D.ctypes.data + j0 * D.itemsize, ldd, min(chunk, n - j0)), x, T(0))


@njit(cache=True, nogil=True)
def _count_rows(ptr, X):
    """ptr[i + 1] = ptr[i] + the non-zeros of row i of X (ptr[0] = 0)."""
    ptr[0] = 0
    for i in range(X.shape[0]):
        count = 0
        for j in range(X.shape[1]):
            count += X[i, j] != 0               # no branch: the loop vectorizes
        ptr[i + 1] = ptr[i] + count


@njit(cache=True, nogil=True)
def _fill_rows(csr, X):
    """CSR of X, its ``ptr`` filled already (:func:`_count_rows`), columns in increasing order.
    idx and val have room for X.shape[1] entries past the last: each element is written, and
    the next one written over it if it was 0 (no branch on the data)."""
    ptr, idx, val = csr
    for i in range(X.shape[0]):
        p = ptr[i]
        for j in range(X.shape[1]):
            idx[p] = j
            val[p] = X[i, j]
            p += X[i, j] != 0


@njit(cache=True, nogil=True)
def _transpose(csc, csr):
    """CSC from CSR (a counting sort by column), rows in increasing order in each column;
    CSC's ``ptr`` zero before."""
    ptr, idx, val = csr
    cptr, cidx, cval = csc
    for p in range(idx.shape[0]):
        cptr[idx[p] + 1] += 1
    for j in range(cptr.shape[0] - 1):
        cptr[j + 1] += cptr[j]
    at = cptr[:-1].copy()                      # the next free entry of each column
    for i in range(ptr.shape[0] - 1):
        for p in range(ptr[i], ptr[i + 1]):
            j = idx[p]
            cidx[at[j]] = i
            cval[at[j]] = val[p]
            at[j] += 1


@intrinsic
def _scatter(typingctx, vectors, s, d, x, like):
    """S[idx[p], :vectors * lanes] += val[p] * d over the ``count`` entries of x = (idx_addr,
    val_addr, count) (idx int32), S at s = (s_addr, lds) (lds in elements), d = (d_addr,) a row
    of whole vectors; ``vectors`` a literal. No mask: S's rows hold whole vectors."""
    if not isinstance(vectors, types.IntegerLiteral) or not isinstance(like, types.Float) or \
            not all(isinstance(t, types.BaseTuple) for t in (s, d, x)):
        return None
    sig = types.void(vectors, s, d, x, like)
    NV = vectors.literal_value

    def codegen(context, builder, signature, args):
        s_v, lds_v, d_v, idx_v, val_v, count_v = (
            v for t, arg in zip(signature.args[1:4], args[1:4])
            for v in int64s(context, builder, t, arg))
        fl = context.get_value_type(signature.args[4])
        vt, _, size, fma = _vector_helpers(context, builder, fl)[:4]
        i64 = ir.IntType(64)

        def vector_at(addr, v):
            return builder.inttoptr(builder.add(addr, ir.Constant(i64, v * VECTOR_BYTES)),
                                    vt.as_pointer())

        d_vecs = [builder.load(vector_at(d_v, v), align=size) for v in range(NV)]
        idx = builder.inttoptr(idx_v, ir.IntType(32).as_pointer())
        val = builder.inttoptr(val_v, fl.as_pointer())
        row_bytes = builder.mul(lds_v, ir.Constant(i64, size))
        with cgutils.for_range(builder, count_v) as loop:
            k = builder.sext(builder.load(builder.gep(idx, [loop.index])), i64)
            x_p = _splat(builder, builder.load(builder.gep(val, [loop.index])), vt)
            row = builder.add(s_v, builder.mul(k, row_bytes))
            for v in range(NV):
                at = vector_at(row, v)
                builder.store(builder.call(fma, [x_p, d_vecs[v], builder.load(at, align=size)]),
                              at, align=size)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _scatter_of(vectors, s, d, x, like):
    """:func:`_scatter` with ``vectors`` (1 .. MAX_VECTORS) as a literal."""
    if vectors == 4:
        _scatter(4, s, d, x, like)
    elif vectors == 3:
        _scatter(3, s, d, x, like)
    elif vectors == 2:
        _scatter(2, s, d, x, like)
    else:
        _scatter(1, s, d, x, like)


@njit(cache=True, nogil=True)
def sparse_rank_update(C, rows, csr, D, alpha, beta, S):
    """C (k, n) = alpha * X[rows].T @ D + beta * C (beta 0: C is only written), X given by its
    rows' non-zeros ``csr`` = (ptr, idx, val) and D (m, n) (a layer's dz, m = len(rows)): the
    weight gradient of a first layer. Summed by rows into the scratch S (at least (k, n)),
    then combined. n must be a whole number of vectors; C, D and S need unit stride along their
    rows; one float dtype throughout."""
    k, n = C.shape
    T = C.dtype.type
    lanes = VECTOR_BYTES // C.itemsize
    chunk = MAX_VECTORS * lanes
    lds = S.strides[0] // S.itemsize
    for r in range(k):
        for j in range(n):
            S[r, j] = T(0)
    for i in range(rows.shape[0]):
        x = _entries(csr, rows[i])
        for j0 in range(0, n, chunk):
            _scatter_of(min(chunk, n - j0) // lanes, (S.ctypes.data + j0 * S.itemsize, lds),
                        (D.ctypes.data + i * D.strides[0] + j0 * D.itemsize,), x, T(0))
    a, b = T(alpha), T(beta)
    for r in range(k):
        for j in range(n):
            C[r, j] = a * S[r, j] + b * C[r, j] if beta != 0 else a * S[r, j]


def compress_rows(X):
    """CSR of a 2-D float array X: (ptr int64, idx int32, val of X's dtype), the columns and
    values of each row's non-zeros (see the module doc). X needs fewer than 2**31 columns."""
    n, k = X.shape
    ptr = np.empty(n + 1, np.int64)
    _count_rows(ptr, X)
    nnz = int(ptr[-1])
    csr = (ptr, np.empty(nnz + k, np.int32), np.empty(nnz + k, X.dtype))
    _fill_rows(csr, X)
    return ptr, csr[1][:nnz], csr[2][:nnz]


def compress_columns(csr, n_cols):
    """CSC of the matrix of ``n_cols`` columns whose CSR is ``csr``: the rows and values of each
    column's non-zeros, rows in increasing order. It needs fewer than 2**31 rows."""
    nnz = csr[1].shape[0]
    csc = (np.zeros(n_cols + 1, np.int64), np.empty(nnz, np.int32), np.empty(nnz, csr[2].dtype))
    _transpose(csc, csr)
    return csc


def compress(X):
    """(csr, csc) of a 2-D float array X (:func:`compress_rows`, :func:`compress_columns`)."""
    csr = compress_rows(X)
    return csr, compress_columns(csr, X.shape[1])


class CompressedX:
    """An X's share of non-zeros, its CSR and its CSC, each made on first use and kept while
    the same array comes back: the pieces of one training call, and the calls of one ``fit``,
    train on one X. Another array starts afresh."""

    def __init__(self):
        self._X, self._density, self._csr, self._csc = None, None, None, None

    def _for(self, X):
        if X is not self._X:
            self._X, self._density, self._csr, self._csc = X, None, None, None

    def density(self, X):
        """The share of X's elements that are not zero."""
        self._for(X)
        if self._density is None:
            self._density = np.count_nonzero(X) / max(1, X.size)
        return self._density

    def mostly_zeros(self, X, max_density):
        """Whether X can be compressed here (in memory, under 2**31 rows and columns) and at
        most ``max_density`` of its elements are not zero."""
        return (not isinstance(X, np.memmap) and max(X.shape) < 2 ** 31
                and self.density(X) <= max_density)

    def rows(self, X):
        """X's CSR (:func:`compress_rows`)."""
        self._for(X)
        if self._csr is None:
            self._csr = compress_rows(X)
        return self._csr

    def columns(self, X):
        """X's CSC (:func:`compress_columns`), from its CSR."""
        csr = self.rows(X)
        if self._csc is None:
            self._csc = compress_columns(csr, X.shape[1])
        return self._csc
