"""Products with SIMD lanes along the reduction, for layers of few units.

The tiles of :mod:`.tiles` put a layer's units in the lanes of their vectors: a layer of 20
units fills one vector of 16 float32 and a fifth of the next, and reads each element of A as a
scalar. The notebooks' nets have 10-25 hidden units, and their first layer's products then run
at a third of the core's rate. Here the lanes run along the reduction (the input features), so
any number of units fills them:

- :func:`dot_rows_epilogue`: ``C = A @ Wt.T``, then + b and relu as in
  :func:`.tiles.matmul_rows_epilogue`: each C[r, j] = sum_k A[r, k] * Wt[j, k] is a dot product
  of two unit-stride rows, summed lane by lane over the vectors of k and the lanes then added
  in a fixed tree (:func:`_lane_sum`). A tile holds ``DOT_ROWS`` x ``DOT_COLS`` sums in
  registers.
- :func:`dot_rank_update`: ``Gt = D.T @ A`` (or added to Gt), the weight gradient kept
  transposed (one row of Gt per unit): Gt[j, k:k + lanes] += D[r, j] * A[r, k:k + lanes] for
  each row r in turn, one multiply-add of a broadcast element of D and a vector of A's row. A
  tile holds ``DOT_COLS`` rows of Gt x ``DOT_VECTORS`` vectors in registers over all rows r. It
  can also make a plain SGD step with the sums at once, ``Wt -= lr * (D.T @ A)``.

Rows of A are given by address, as for the tiles (rows of X picked by the shuffled order, read
where they lie). Both orders of summation are fixed by the shapes alone.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .intrinsics import int64s
from .tiles import (_AVX512, EPI_BIAS, EPI_BIAS_RELU, VECTOR_BYTES, _address, _splat,
                    _vector_helpers)

# AVX-512 (32 registers): tiles of 4 rows x 5 units (20 sums, 4 + 5 loads per 20 multiply-adds)
# and rank tiles of 5 units x 4 vectors (20 sums, 4 vectors of A + 5 broadcasts per row); AVX2
# (16 registers): 3 x 3 and 3 x 3 (9 sums; 12 sums and the 7 vectors they are fed from do not fit
# and one sum goes through memory each step)
DOT_ROWS, DOT_COLS, DOT_VECTORS = (4, 5, 4) if _AVX512 else (3, 3, 3)
# the products here pay from this many vectors of reduction, and where the tiles would leave
# more than this share of their lanes empty (docs/performance.md, "Dot products for narrow
# layers")
DOT_MIN_VECTORS = 4
DOT_MAX_FILLED = 7 / 8
# what dot_rank_update does with its sums S = D.T @ A: Gt = S, Gt = Gt + S, or the plain SGD
# step Wt = Wt - lr * S, rounded as optimizer_update rounds it from a stored gradient (np.int64,
# not literals: one compiled version for all three)
RANK_WRITE, RANK_ADD, RANK_STEP = (np.int64(mode) for mode in range(3))
# cache lines of a rank tile's chunk of a row (the most one rank tile fetches ahead per row)
FETCH_LINES = -(-DOT_VECTORS * VECTOR_BYTES // 64)


def dots_pay(k, n, itemsize):
    """Whether a product with reduction ``k`` and ``n`` columns of ``itemsize``-byte floats
    runs faster here than through :mod:`.tiles`: a long reduction, and few enough columns that
    the tiles' last vector would stay partly empty (20 float32 columns fill 20 of 32 lanes)."""
    lanes = VECTOR_BYTES // itemsize
    filled = n / (-(-n // lanes) * lanes) if n else 1.0
    return k >= DOT_MIN_VECTORS * lanes and filled <= DOT_MAX_FILLED


def _lane_sum(builder, v):
    """The sum of a vector's lanes in a fixed tree: halves added until one lane is left."""
    i32 = ir.IntType(32)
    width = v.type.count
    while width > 1:
        width //= 2
        lo = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, width),
                                                      list(range(width))))
        hi = builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(i32, width),
                                                      list(range(width, 2 * width))))
        v = builder.fadd(lo, hi)
    return builder.extract_element(v, ir.Constant(i32, 0))


def _prefetch(builder):
    """A function of an int64 address that emits a prefetch of its cache line (read, kept in
    all levels, data)."""
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0i8")

    def fetch(addr):
        builder.call(fn, [builder.inttoptr(addr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
    return fetch


@intrinsic
def _dot_tile(typingctx, height, c, a, b, sizes, epi, ahead, like):
    """One tile of C[r, j] = sum_k A(r, k) * B[j, k] for r < ``height`` (a literal, at most
    DOT_ROWS) and j < n <= DOT_COLS, with c = (c_addr, ldc), a = (a_rows,), b = (b_addr, ldb,
    n), sizes = (depth,), epi = (epi, e_addr) and ``like`` a float of the elements' type. Row r
    of A is at address a_rows[r]; B's row j at b_addr + j * ldb elements. Units past n are
    computed from the last real one again and not stored. ``epi``: + b[j] (b[0] at address
    e_addr) with EPI_BIAS, then relu with EPI_BIAS_RELU; EPI_NONE stores the sums as they are.
    ``ahead`` = (rows, count): the next tile's rows of A, whose addresses start at ``rows``, are
    fetched into the cache, one prefetch per 64-byte line of the reduction (``rows`` must point
    at a valid address also when ``count`` is 0)."""
    if not isinstance(height, types.IntegerLiteral) or not isinstance(like, types.Float) or not all(
            isinstance(t, types.BaseTuple) for t in (c, a, b, sizes, epi, ahead)):
        return None
    sig = types.void(height, c, a, b, sizes, epi, ahead, like)
    MR, NR = height.literal_value, DOT_COLS
    PER_LINE = max(1, 64 // VECTOR_BYTES)       # vectors per cache line

    def codegen(context, builder, signature, args):
        _, c_t, a_t, b_t, sizes_t, epi_t, ahead_t, _ = args
        c_v, ldc_v, rows_v, b_v, ldb_v, n_v, depth_v, epi_v, e_v, next_v, count_v = (
            v for t, arg in zip(signature.args[1:7], (c_t, a_t, b_t, sizes_t, epi_t, ahead_t))
            for v in int64s(context, builder, t, arg))
        fl = context.get_value_type(signature.args[7])
        vt, lanes, size, fma, masked_load, _, lanes_below = _vector_helpers(context, builder, fl)
        i64 = ir.IntType(64)
        zero = ir.Constant(vt, [ir.Constant(fl, 0.0)] * lanes)
        align = ir.Constant(ir.IntType(32), size)

        def const(v):
            return ir.Constant(i64, v)

        def vector_at(addr):
            return builder.inttoptr(addr, vt.as_pointer())

        rows = builder.inttoptr(rows_v, i64.as_pointer())
        a_starts = [builder.load(builder.gep(rows, [const(r)])) for r in range(MR)]
        b_starts = [builder.add(b_v, builder.mul(builder.mul(
            builder.select(builder.icmp_signed("<", const(j), n_v), const(j),
                           builder.sub(n_v, const(1))), ldb_v), const(size))) for j in range(NR)]
        sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(NR)] for _ in range(MR)]
        prefetch = _prefetch(builder)
        next_rows = builder.inttoptr(next_v, i64.as_pointer())
        # rows past ``count`` fetch this tile's own rows again (already in L1)
        next_starts = [builder.select(
            builder.icmp_signed("<", const(r), count_v),
            builder.load(builder.gep(next_rows, [builder.select(
                builder.icmp_signed("<", const(r), count_v), const(r), const(0))])),
            a_starts[r]) for r in range(MR)]

        def step(offset, mask, fetch=True):
            if mask is None and fetch:
                for start in next_starts:
                    prefetch(builder.add(start, offset))
            def load(start):
                addr = vector_at(builder.add(start, offset))
                if mask is None:
                    return builder.load(addr, align=size)
                return builder.call(masked_load, [addr, align, mask, zero])
            a_vecs = [load(s) for s in a_starts]
            b_vecs = [load(s) for s in b_starts]
            for r in range(MR):
                for j in range(NR):
                    builder.store(builder.call(fma, [a_vecs[r], b_vecs[j],
                                                     builder.load(sums[r][j])]), sums[r][j])

        # one prefetch per cache line: PER_LINE vectors a turn of the loop, then the rest
        whole = builder.sdiv(depth_v, const(lanes))
        turns = builder.sdiv(whole, const(PER_LINE))
        with cgutils.for_range(builder, turns) as loop:
            for v in range(PER_LINE):
                step(builder.mul(builder.add(builder.mul(loop.index, const(PER_LINE)), const(v)),
                                 const(VECTOR_BYTES)), None, v == 0)
        with cgutils.for_range(builder, builder.sub(whole, builder.mul(turns, const(PER_LINE)))
                               ) as loop:
            step(builder.mul(builder.add(builder.mul(turns, const(PER_LINE)), loop.index),
                             const(VECTOR_BYTES)), None, False)
        tail = builder.sub(depth_v, builder.mul(whole, const(lanes)))
        with builder.if_then(builder.icmp_signed(">", tail, const(0))):
            step(builder.mul(whole, const(VECTOR_BYTES)), lanes_below(tail))

        add_bias = builder.or_(builder.icmp_signed("==", epi_v, const(int(EPI_BIAS))),
                               builder.icmp_signed("==", epi_v, const(int(EPI_BIAS_RELU))))
        relu = builder.icmp_signed("==", epi_v, const(int(EPI_BIAS_RELU)))
        fzero = ir.Constant(fl, 0.0)
        out = cgutils.alloca_once_value(builder, fzero)
        for r in range(MR):
            for j in range(NR):
                with builder.if_then(builder.icmp_signed("<", const(j), n_v)):
                    builder.store(_lane_sum(builder, builder.load(sums[r][j])), out)
                    with builder.if_then(add_bias):
                        bias = builder.load(builder.inttoptr(
                            builder.add(e_v, const(j * size)), fl.as_pointer()))
                        builder.store(builder.fadd(builder.load(out), bias), out)
                    with builder.if_then(relu):     # z <= 0 -> 0, NaN stays NaN
                        z = builder.load(out)
                        builder.store(builder.select(builder.fcmp_ordered("<=", z, fzero),
                                                     fzero, z), out)
                    addr = builder.add(c_v, builder.mul(
                        builder.add(builder.mul(const(r), ldc_v), const(j)), const(size)))
                    builder.store(builder.load(out),
                                  builder.inttoptr(addr, fl.as_pointer()))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _dot_rank_tile(typingctx, masked, vectors, c, a, d, sizes, lr, ahead):
    """One tile of the sums S[j, :width] = sum_r D[r, j] * A(r, :width) for j < n <= DOT_COLS
    and width = ``vectors`` vectors (a literal, at most DOT_VECTORS), stored by ``mode``
    (RANK_WRITE: Gt = S, RANK_ADD: Gt += S, RANK_STEP: Gt -= lr * S), with c = (c_addr, ldc),
    a = (a_rows, m, a_off), d = (d_addr, ldd, n), sizes = (width, mode) and ``lr`` a float of
    the elements' type; A(r, i) = *(a_rows[r] + a_off + i) (offsets in elements). ``masked``
    (literal): only the first ``width`` elements are read and stored, else width is the whole
    tile. Units past n are computed from the last real one again and not stored.
    ``ahead`` = (rows, count, offset, lines): while it takes row r < count, the tile fetches
    ``lines`` (at most FETCH_LINES) cache lines of the row at address rows[r], from ``offset``
    bytes on, into the cache: the rows the next forward pass will read."""
    if not isinstance(masked, types.BooleanLiteral) or not isinstance(
            vectors, types.IntegerLiteral) or not isinstance(lr, types.Float) or not all(
            isinstance(t, types.BaseTuple) for t in (c, a, d, sizes, ahead)):
        return None
    sig = types.void(masked, vectors, c, a, d, sizes, lr, ahead)
    NR, NV, MASKED = DOT_COLS, vectors.literal_value, masked.literal_value

    def codegen(context, builder, signature, args):
        _, _, c_t, a_t, d_t, sizes_t, lr_v, ahead_t = args
        (c_v, ldc_v, rows_v, m_v, off_v, d_v, ldd_v, n_v, width_v, mode_v, next_v, count_v,
         from_v, lines_v) = (
            v for t, arg in zip(signature.args[2:6] + signature.args[7:8],
                                (c_t, a_t, d_t, sizes_t, ahead_t))
            for v in int64s(context, builder, t, arg))
        fl = context.get_value_type(signature.args[6])
        vt, lanes, size, fma, masked_load, masked_store, lanes_below = _vector_helpers(
            context, builder, fl)
        i64 = ir.IntType(64)
        zero = ir.Constant(vt, [ir.Constant(fl, 0.0)] * lanes)
        align = ir.Constant(ir.IntType(32), size)

        def const(v):
            return ir.Constant(i64, v)

        def vector_at(addr):
            return builder.inttoptr(addr, vt.as_pointer())

        masks = [lanes_below(builder.sub(width_v, const(v * lanes))) for v in range(NV)]

        def load(addr, v):
            if MASKED:
                return builder.call(masked_load, [vector_at(addr), align, masks[v], zero])
            return builder.load(vector_at(addr), align=size)

        def store(value, addr, v):
            if MASKED:
                builder.call(masked_store, [value, vector_at(addr), align, masks[v]])
            else:
                builder.store(value, vector_at(addr), align=size)

        units = [builder.select(builder.icmp_signed("<", const(j), n_v), const(j),
                                builder.sub(n_v, const(1))) for j in range(NR)]
        sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(NV)] for _ in range(NR)]
        rows = builder.inttoptr(rows_v, i64.as_pointer())
        next_rows = builder.inttoptr(next_v, i64.as_pointer())
        a_shift = builder.mul(off_v, const(size))
        prefetch = _prefetch(builder)
        with cgutils.for_range(builder, m_v) as loop:
            r = loop.index
            with builder.if_then(builder.icmp_signed("<", r, count_v)):
                line = builder.add(builder.load(builder.gep(next_rows, [r])), from_v)
                for i in range(FETCH_LINES):
                    with builder.if_then(builder.icmp_signed("<", const(i), lines_v)):
                        prefetch(builder.add(line, const(64 * i)))
            start = builder.add(builder.load(builder.gep(rows, [r])), a_shift)
            a_vecs = [load(builder.add(start, const(v * VECTOR_BYTES)), v) for v in range(NV)]
            d_row = builder.add(d_v, builder.mul(builder.mul(r, ldd_v), const(size)))
            for j in range(NR):
                dj = builder.load(builder.inttoptr(
                    builder.add(d_row, builder.mul(units[j], const(size))), fl.as_pointer()))
                dj = _splat(builder, dj, vt)
                for v in range(NV):
                    builder.store(builder.call(fma, [dj, a_vecs[v], builder.load(sums[j][v])]),
                                  sums[j][v])
        add = builder.icmp_signed("==", mode_v, const(int(RANK_ADD)))
        step = builder.icmp_signed("==", mode_v, const(int(RANK_STEP)))
        rate = _splat(builder, lr_v, vt)
        out = cgutils.alloca_once_value(builder, zero)
        for j in range(NR):
            with builder.if_then(builder.icmp_signed("<", const(j), n_v)):
                row = builder.add(c_v, builder.mul(builder.mul(const(j), ldc_v), const(size)))
                for v in range(NV):
                    addr = builder.add(row, const(v * VECTOR_BYTES))
                    builder.store(builder.load(sums[j][v]), out)
                    with builder.if_then(add):
                        builder.store(builder.fadd(load(addr, v), builder.load(out)), out)
                    with builder.if_then(step):     # Gt - (lr * S): two roundings, no FMA
                        builder.store(builder.fsub(load(addr, v), builder.fmul(
                            rate, builder.load(out))), out)
                    store(builder.load(out), addr, v)
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _dot_tile_of(c, a_rows, m, b, sizes, epi, ahead, like):
    """:func:`_dot_tile` over the m <= DOT_ROWS rows of A at addresses a_rows[0 .. m], as high
    as they are: no row computed twice (10 rows are tiles of 4, 4 and 2 rows, not 4, 4 and 4)."""
    if m == DOT_ROWS:
        _dot_tile(DOT_ROWS, c, (a_rows,), b, sizes, epi, ahead, like)
    elif m == 3:
        _dot_tile(3, c, (a_rows,), b, sizes, epi, ahead, like)
    elif m == 2:
        _dot_tile(2, c, (a_rows,), b, sizes, epi, ahead, like)
    else:
        _dot_tile(1, c, (a_rows,), b, sizes, epi, ahead, like)


@njit(cache=True, nogil=True, inline="always")
def dot_rows_epilogue(C, A_rows, Wt, epi, e_addr):
    """C (m, n) = A @ Wt.T, where A is (m, k) with row i at address ``A_rows[i]`` and Wt is
    (n, k) (a layer's weights transposed: one row per unit), finished by ``epi``: EPI_NONE,
    EPI_BIAS (+ b, b[0] at address ``e_addr``) or EPI_BIAS_RELU (relu(. + b)). C and Wt need
    unit stride along their rows; one float dtype throughout."""
    _dot_rows(C[:, :], A_rows, Wt[:, :], np.int64(epi), np.int64(e_addr))


@njit(cache=True, nogil=True)
def _dot_rows(C, A_rows, Wt, epi, e_addr):
    """The body of :func:`dot_rows_epilogue`, on operands of layout "A" (one version per dtype,
    as for the products of :mod:`.tiles`)."""
    m, n = C.shape
    k = Wt.shape[1]
    T = C.dtype.type
    ldc = C.strides[0] // C.itemsize
    ldb = Wt.strides[0] // Wt.itemsize
    bias = epi == EPI_BIAS or epi == EPI_BIAS_RELU
    rows = A_rows.ctypes.data
    n_tiles = (n + DOT_COLS - 1) // DOT_COLS
    for i0 in range(0, m, DOT_ROWS):
        # the tiles of a row of tiles fetch the next row's rows of A while they run, each a
        # share of them: spread over the row, the reads ask less of memory at a time
        ahead = min(DOT_ROWS, max(0, m - i0 - DOT_ROWS))
        t = 0
        for j0 in range(0, n, DOT_COLS):
            f0, f1 = ahead * t // n_tiles, ahead * (t + 1) // n_tiles
            _dot_tile_of((_address(C, i0, j0), ldc), rows + i0 * 8, min(DOT_ROWS, m - i0),
                         (_address(Wt, j0, 0), ldb, min(DOT_COLS, n - j0)), (k,),
                         (epi, e_addr + j0 * C.itemsize if bias else e_addr),
                         (rows + (i0 + DOT_ROWS + f0 if f1 > f0 else i0) * 8, f1 - f0), T(0))
            t += 1


@njit(cache=True, nogil=True, inline="always")
def _dot_rank_tile_of(c, a, d, sizes, lr, lanes, ahead):
    """:func:`_dot_rank_tile` over sizes[0] elements of A's rows: a whole tile, or as many
    vectors as the last elements need, the last one masked (a reduction of 784 float32 ends in
    one vector, not a tile of 4)."""
    width = sizes[0]
    if width == DOT_VECTORS * lanes:
        _dot_rank_tile(False, DOT_VECTORS, c, a, d, sizes, lr, ahead)
    elif width > 3 * lanes:
        _dot_rank_tile(True, 4, c, a, d, sizes, lr, ahead)
    elif width > 2 * lanes:
        _dot_rank_tile(True, 3, c, a, d, sizes, lr, ahead)
    elif width > lanes:
        _dot_rank_tile(True, 2, c, a, d, sizes, lr, ahead)
    else:
        _dot_rank_tile(True, 1, c, a, d, sizes, lr, ahead)


@njit(cache=True, nogil=True, inline="always")
def dot_rank_update(Gt, A_rows, a_col, D, mode, lr, fetch_rows):
    """Gt (n, k) = D.T @ A (``mode`` RANK_WRITE: Gt is only written), Gt + D.T @ A (RANK_ADD)
    or Gt - lr * (D.T @ A) (RANK_STEP: a plain SGD step on a layer's transposed W, with the
    bits of :func:`fastmlp.engine.optimizer.optimizer_update` on the gradient), where A is
    (m, k), columns a_col .. a_col + k of the rows at addresses ``A_rows[i]``, and D is (m, n):
    D.T @ A is the weight gradient A.T @ D of a layer, transposed. Gt and D need unit stride
    along their rows; one float dtype throughout (``lr`` is cast to it).

    ``fetch_rows``: addresses of rows laid out as A's (the next block's rows of X), at most m,
    whose columns a_col .. a_col + k are fetched into the cache while the sums run, spread over
    the tiles (empty: none). The next forward pass then finds them there, not in memory."""
    _dot_rank_update(Gt[:, :], A_rows, np.int64(a_col), D[:, :], np.int64(mode),
                     np.float64(lr), fetch_rows)


@njit(cache=True, nogil=True)
def _dot_rank_update(Gt, A_rows, a_col, D, mode, lr, fetch_rows):
    """The body of :func:`dot_rank_update`, on operands of layout "A" (one version per dtype)."""
    n, k = Gt.shape
    m = D.shape[0]
    T = Gt.dtype.type
    chunk = DOT_VECTORS * VECTOR_BYTES // Gt.itemsize
    ldc = Gt.strides[0] // Gt.itemsize
    ldd = D.strides[0] // D.itemsize
    rows = (A_rows.ctypes.data, m)
    n_tiles = (n + DOT_COLS - 1) // DOT_COLS
    fetch = (fetch_rows.ctypes.data, min(fetch_rows.shape[0], m))
    for k0 in range(0, k, chunk):       # a chunk of every row of A stays in L1 for all units
        width = min(chunk, k - k0)
        # the chunk's lines of the rows to fetch, shared out among the tiles of units
        lines = (width * Gt.itemsize + 63) // 64
        per_tile = (lines + n_tiles - 1) // n_tiles
        t = 0
        for j0 in range(0, n, DOT_COLS):
            c = (_address(Gt, j0, k0), ldc)
            a = (rows[0], rows[1], a_col + k0)
            d = (_address(D, 0, j0), ldd, min(DOT_COLS, n - j0))
            first = min(lines, t * per_tile)
            ahead = (fetch[0], fetch[1], (a_col + k0) * Gt.itemsize + first * 64,
                     min(lines, first + per_tile) - first)
            _dot_rank_tile_of(c, a, d, (width, mode), T(lr), chunk // DOT_VECTORS, ahead)
            t += 1
