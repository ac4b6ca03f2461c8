"""Register-tiled matrix products on rows given by address, for the small minibatches of training.

BLAS multiplies a 32-row minibatch at 60-85% of the core's peak: each call checks its arguments,
packs its operands and splits the work for one product, and it needs the rows of A gathered into
one array first. The two products of a hidden layer's training step have a shape known in
advance, so here they are multiplied straight from where the rows lie:

- :func:`matmul_rows`: ``C = alpha * A @ W + beta * C`` (the forward pass, A the minibatch);
- :func:`rank_update`: ``C = alpha * A.T @ D + beta * C`` (the weight step, ``W -= lr * A.T @ dz``);
- :func:`matmul_rows_epilogue`: ``C = A @ W`` with the layer's bias and relu (forward) or the
  relu derivative (backward) applied in registers before the store, not in a pass of their own.

Row i of A is read at the address ``A_rows[i]``: rows of X picked by the shuffled order, read in
place (no gathered copy), or the rows of an activation buffer. The work is cut into tiles of
6 (or 4) rows of C by up to ``VECTORS`` SIMD vectors of columns; a tile's sums stay in
registers over the whole reduction, one SIMD fused multiply-add per vector of W or D and
broadcast element of A (the BLIS micro-kernel scheme, without the packing); their rates against
OpenBLAS are in docs/performance.md, "Tiles".

The tile is one intrinsic emitting LLVM vector code (Numba has no SIMD types); columns past a
multiple of the vector width go through masked loads and stores, rows past a multiple of the
tile height through a tile that reads its last row again and stores only its real ones.
"""

import math

import llvmlite.binding as llvm_binding
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic

from .intrinsics import int64s


def _has_avx512():
    """Whether the CPU Numba compiles for has AVX-512: this machine's, unless NUMBA_CPU_NAME
    names another (portable caches use "generic"), in which case only NUMBA_CPU_FEATURES tells."""
    if config.CPU_NAME:
        return "+avx512f" in (config.CPU_FEATURES or "")
    return bool(llvm_binding.get_host_cpu_features().get("avx512f", False))


# AVX-512: 32 vector registers of 64 bytes, tiles of up to 6 rows x 4 vectors (24 sums, 4
# vectors of W, 1 broadcast); elsewhere 16 registers of 32 bytes (AVX2), 6 rows x 2 vectors.
_AVX512 = _has_avx512()
VECTOR_BYTES = 64 if _AVX512 else 32
VECTORS = 4 if _AVX512 else 2
# rows of W (matmul_rows) and of D (rank_update) per pass over the tiles: a block of up to 64
# rows of 4 vectors of float32 (16 KiB) stays in the 48 KiB L1 cache while every tile of rows
# reads it, unless its rows are a power-of-two stride apart and fall into the same few sets
# of the 12-way cache; see _depth
DEPTH = 64
# what matmul_rows_epilogue does to each element of C before storing it (see _tile); np.int64,
# not literals, so that every call site shares one compiled version (see kernels.ZERO)
EPI_NONE, EPI_BIAS, EPI_BIAS_RELU, EPI_RELU_MASK = (np.int64(code) for code in range(4))
NO_ADDRESS = np.int64(0)                        # e_addr of EPI_NONE
# rows of A read at once by matmul_rows: each is a stream through memory, and the hardware
# prefetcher follows a few dozen (docs/performance.md, "Tiles")
ROW_GROUP = 16


def _vector_helpers(context, builder, fl):
    """(vt, lanes, size, fma, masked_load, masked_store, lane_masks) for float type ``fl``."""
    size = context.get_abi_sizeof(fl)
    lanes = VECTOR_BYTES // size
    vt = ir.VectorType(fl, lanes)
    i1, i32, i64 = ir.IntType(1), ir.IntType(32), ir.IntType(64)
    suffix = f"v{lanes}{'f32' if size == 4 else 'f64'}"
    mvt = ir.VectorType(i1, lanes)
    fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                         f"llvm.fma.{suffix}")
    masked_load = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(vt, [vt.as_pointer(), i32, mvt, vt]),
        f"llvm.masked.load.{suffix}.p0{suffix}")
    masked_store = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [vt, vt.as_pointer(), i32, mvt]),
        f"llvm.masked.store.{suffix}.p0{suffix}")
    ivt = ir.VectorType(i64, lanes)
    iota = ir.Constant(ivt, [ir.Constant(i64, i) for i in range(lanes)])

    def lanes_below(count):
        """The mask of lanes i < count (an int64 value)."""
        one = builder.insert_element(ir.Constant(ivt, ir.Undefined), count, ir.Constant(i32, 0))
        splat = builder.shuffle_vector(one, ir.Constant(ivt, ir.Undefined),
                                       ir.Constant(ir.VectorType(i32, lanes), [0] * lanes))
        return builder.icmp_signed("<", iota, splat)

    return vt, lanes, size, fma, masked_load, masked_store, lanes_below


def _splat(builder, x, vt):
    """x in every lane of a vector of type ``vt``."""
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vt, ir.Undefined), x, ir.Constant(i32, 0))
    return builder.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vt.count), [0] * vt.count))


@intrinsic
def _tile(typingctx, height, vectors, masked, by_row, c, a, b, sizes, alpha, beta, epi):
    """One tile of ``height`` rows and ``vectors`` SIMD vectors (literals), with c = (c_addr,
    ldc), a = (a_rows, m, a_off), b = (b_addr, ldb), sizes = (depth, n), epi = (epi, e_addr):
    C[r, :n] = alpha * sum_p A(r, p) * B[p, :n] + beta * C[r, :n] for r < m <= height and
    n <= vectors * lanes (beta 0: C is not read), where for p < depth
        by_row:     A(r, p) = *(a_rows[r] + a_off + p)   (rows of A, a slice of the K range)
        not by_row: A(r, p) = *(a_rows[p] + a_off + r)   (columns of A: rows of A.T)
    Addresses are int64, element offsets are in elements, ld* are row strides in elements.
    Rows r >= m are computed from row m - 1 again and not stored; ``masked`` (literal) masks
    the columns past n (in the last vector: n > (vectors - 1) * lanes), else n is vectors *
    lanes. ``epi`` (see EPI_*) finishes each stored value: + b[j] (b's column 0 at address
    e_addr), then relu; or times (a > 0) with a at the stored element's address + e_addr
    bytes."""
    if not (isinstance(height, types.IntegerLiteral) and isinstance(vectors, types.IntegerLiteral)
            and isinstance(masked, types.BooleanLiteral)
            and isinstance(by_row, types.BooleanLiteral)):
        return None
    if not isinstance(alpha, types.Float) or not all(
            isinstance(t, types.BaseTuple) for t in (c, a, b, sizes, epi)):
        return None
    sig = types.void(height, vectors, masked, by_row, c, a, b, sizes, alpha, alpha, epi)
    MR, NV = height.literal_value, vectors.literal_value
    MASKED, BY_ROW = masked.literal_value, by_row.literal_value
    tuple_types = (c, a, b, sizes, epi)

    def codegen(context, builder, signature, args):
        _, _, _, _, c_t, a_t, b_t, sizes_t, alpha_v, beta_v, epi_t = args
        c_v, ldc_v, rows_v, m_v, off_v, b_v, ldb_v, depth_v, n_v, epi_v, e_v = (
            v for t, arg in zip(tuple_types, (c_t, a_t, b_t, sizes_t, epi_t))
            for v in int64s(context, builder, t, arg))
        fl = context.get_value_type(signature.args[8])      # alpha's float type
        vt, lanes, size, fma, masked_load, masked_store, _ = _vector_helpers(context, builder, fl)
        i32, i64 = ir.IntType(32), ir.IntType(64)
        zero = ir.Constant(vt, [ir.Constant(fl, 0.0)] * lanes)
        align = ir.Constant(i32, size)

        def const(v):
            return ir.Constant(i64, v)

        def splat(x, of=vt):
            return _splat(builder, x, of)

        def vector_at(addr):
            return builder.inttoptr(addr, vt.as_pointer())

        # lane masks of the column vectors: column v * lanes + lane < n
        ivt = ir.VectorType(i64, lanes)
        n_splat = splat(n_v, ivt)
        masks = [builder.icmp_signed("<", ir.Constant(ivt, [const(v * lanes + i)
                                                            for i in range(lanes)]), n_splat)
                 for v in range(NV)]

        # only the last vector can reach past column n: the others load and store whole
        def load(addr, v):
            if MASKED and v == NV - 1:
                return builder.call(masked_load, [vector_at(addr), align, masks[v], zero])
            return builder.load(vector_at(addr), align=size)

        def store(value, addr, v):
            if MASKED and v == NV - 1:
                builder.call(masked_store, [value, vector_at(addr), align, masks[v]])
            else:
                builder.store(value, vector_at(addr), align=size)

        sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(NV)] for _ in range(MR)]
        rows = builder.inttoptr(rows_v, i64.as_pointer())
        last = builder.sub(m_v, const(1))
        # row r of the tile, for r >= m the last real row again
        which = [builder.select(builder.icmp_signed("<", const(r), m_v), const(r), last)
                 for r in range(MR)]
        if BY_ROW:
            starts = [builder.add(builder.load(builder.gep(rows, [which[r]])),
                                  builder.mul(off_v, const(size))) for r in range(MR)]
        with cgutils.for_range(builder, depth_v) as loop:
            p = loop.index
            b_row = builder.add(b_v, builder.mul(builder.mul(p, ldb_v), const(size)))
            b_vecs = [load(builder.add(b_row, const(v * VECTOR_BYTES)), v) for v in range(NV)]
            if not BY_ROW:
                row = builder.add(builder.load(builder.gep(rows, [p])),
                                  builder.mul(off_v, const(size)))
            for r in range(MR):
                if BY_ROW:
                    addr = builder.add(starts[r], builder.mul(p, const(size)))
                else:
                    addr = builder.add(row, builder.mul(which[r], const(size)))
                a = splat(builder.load(builder.inttoptr(addr, fl.as_pointer())))
                for v in range(NV):
                    builder.store(builder.call(fma, [a, b_vecs[v], builder.load(sums[r][v])]),
                                  sums[r][v])
        alphas = splat(alpha_v)
        betas = splat(beta_v)
        ones = ir.Constant(vt, [ir.Constant(fl, 1.0)] * lanes)
        keep_c = builder.fcmp_ordered("!=", beta_v, ir.Constant(fl, 0.0))
        add_bias = builder.or_(builder.icmp_signed("==", epi_v, const(int(EPI_BIAS))),
                               builder.icmp_signed("==", epi_v, const(int(EPI_BIAS_RELU))))
        relu = builder.icmp_signed("==", epi_v, const(int(EPI_BIAS_RELU)))
        relu_mask = builder.icmp_signed("==", epi_v, const(int(EPI_RELU_MASK)))
        out = cgutils.alloca_once_value(builder, zero)
        for r in range(MR):
            with builder.if_then(builder.icmp_signed("<", const(r), m_v)):
                c_row = builder.add(c_v, builder.mul(builder.mul(const(r), ldc_v), const(size)))
                for v in range(NV):
                    addr = builder.add(c_row, const(v * VECTOR_BYTES))
                    builder.store(builder.fmul(alphas, builder.load(sums[r][v])), out)
                    # beta * C + alpha * sum, or alpha * sum alone when beta is 0 (C may hold NaN)
                    with builder.if_then(keep_c):
                        builder.store(builder.call(fma, [betas, load(addr, v), builder.load(out)]),
                                      out)
                    with builder.if_then(add_bias):
                        bias = load(builder.add(e_v, const(v * VECTOR_BYTES)), v)
                        builder.store(builder.fadd(builder.load(out), bias), out)
                    with builder.if_then(relu):     # z <= 0 -> 0 (NaN stays NaN, as np.maximum)
                        z = builder.load(out)
                        builder.store(builder.select(builder.fcmp_ordered("<=", z, zero), zero, z),
                                      out)
                    with builder.if_then(relu_mask):    # dz * relu'(a): 1 where a > 0, else 0
                        a_out = load(builder.add(addr, e_v), v)
                        keep = builder.select(builder.fcmp_ordered(">", a_out, zero), ones, zero)
                        builder.store(builder.fmul(builder.load(out), keep), out)
                    store(builder.load(out), addr, v)
        return context.get_dummy_value()

    return sig, codegen



@njit(cache=True, nogil=True, inline="always")
def _depth(row_bytes):
    """Rows per block of an operand whose rows are ``row_bytes`` apart, such that a block takes
    at most 8 lines of any set of a 64-set L1 cache: rows g lines apart (g = gcd(row_bytes / 64,
    64)) put depth * g / 64 lines in each set they use (docs/performance.md, "Tiles")."""
    if row_bytes % 64:
        return DEPTH
    return max(8, min(DEPTH, 512 // math.gcd(row_bytes // 64, 64)))


def row_stride(width, itemsize):
    """Row stride, in elements, for a buffer of ``width`` columns whose rows the products here
    read in blocks: ``width``, plus one cache line when rows that far apart would share so few
    L1 sets that :func:`_depth` must cut the block (784-512-256-10: dz of the first layer, rows
    2 KiB apart, went through its weight step in blocks of 16 rows instead of 64)."""
    if _depth.py_func(width * itemsize) == DEPTH:
        return width
    return width + 64 // itemsize


@njit(cache=True, nogil=True, inline="always")
def _address(A, i, j):
    """Address of A[i, j] (in bounds, or one past) of a 2-D array with unit column stride."""
    return A.ctypes.data + i * A.strides[0] + j * A.itemsize


@njit(cache=True, nogil=True)
def row_addresses(out, A, rows):
    """out[i] = address of A[rows[i], 0], for the ``A_rows`` argument of the products here; with
    ``rows`` empty, of A[i, 0] for every row i of A. The caller keeps A alive while they are
    used."""
    n = rows.shape[0] if rows.shape[0] else A.shape[0]
    for i in range(n):
        out[i] = _address(A, rows[i] if rows.shape[0] else i, 0)


@njit(cache=True, nogil=True)
def _scale(C, beta):
    """C = beta * C (0 when beta is 0, whatever C held): a product over an empty sum."""
    T = C.dtype.type
    for i in range(C.shape[0]):
        for j in range(C.shape[1]):
            C[i, j] = T(0) if beta == 0 else T(beta) * C[i, j]


@njit(cache=True, nogil=True, inline="always")
def _tile_of(height, by_row, c, a, b, sizes, lanes, alpha, beta, epi):
    """One tile (literal ``height`` and ``by_row``; other arguments as for :func:`_tile`) over
    n <= VECTORS * lanes columns, with as many vectors as the columns need: a tile of 4 vectors
    over 16 columns would spend 3/4 of its multiply-adds on masked-off lanes."""
    n = sizes[1]
    if n == VECTORS * lanes:
        _tile(height, VECTORS, False, by_row, c, a, b, sizes, alpha, beta, epi)
    elif n > 3 * lanes:
        _tile(height, 4, True, by_row, c, a, b, sizes, alpha, beta, epi)
    elif n > 2 * lanes:
        _tile(height, 3, True, by_row, c, a, b, sizes, alpha, beta, epi)
    elif n > lanes:
        _tile(height, 2, True, by_row, c, a, b, sizes, alpha, beta, epi)
    else:
        _tile(height, 1, True, by_row, c, a, b, sizes, alpha, beta, epi)


@njit(cache=True, nogil=True, inline="always")
def _column_of_tiles(by_row, c, a, b, sizes, itemsize, alpha, beta, epi):
    """Tiles down m rows of C over one block of n <= VECTORS * lanes columns: c = (address of C's
    block, ldc), a = (a_rows, m, a_off), the rest as for :func:`_tile`. Tiles are 6 rows high, or
    4 where that fits the rest better, so at most one row of the last tile is computed again
    (32 rows: 6+6+6+6+4+4)."""
    c_addr, ldc = c
    a_rows, m, a_off = a
    lanes = VECTOR_BYTES // itemsize
    i0 = 0
    while i0 < m:
        left = m - i0
        c_i = (c_addr + i0 * ldc * itemsize, ldc)
        rows = a_rows + i0 * 8 if by_row else a_rows
        off = a_off if by_row else a_off + i0
        if left <= 4 or left == 7 or left == 8:
            _tile_of(4, by_row, c_i, (rows, min(4, left), off), b, sizes, lanes, alpha, beta,
                     epi)
            i0 += 4
        else:
            _tile_of(6, by_row, c_i, (rows, min(6, left), off), b, sizes, lanes, alpha, beta,
                     epi)
            i0 += 6


@njit(cache=True, nogil=True, inline="always")
def matmul_rows(C, A_rows, W, alpha, beta):
    """C (m, n) = alpha * A @ W + beta * C (beta 0: C is only written), where A is (m, k) with
    row i at address ``A_rows[i]`` and W is (k, n). C and W need unit stride along their rows (a
    block of columns of a C-contiguous array is fine); one float dtype throughout."""
    _product_rows(C[:, :], A_rows, W[:, :], np.float64(alpha), np.float64(beta), EPI_NONE,
                  NO_ADDRESS)


@njit(cache=True, nogil=True, inline="always")
def matmul_rows_epilogue(C, A_rows, W, epi, e_addr):
    """C = A @ W (as :func:`matmul_rows`, k >= 1) finished in the tiles' registers before it is
    stored, by ``epi``: EPI_BIAS_RELU (C = relu(A @ W + b)) or EPI_BIAS with b's column 0 at
    address ``e_addr`` (the columns of b match C's), or EPI_RELU_MASK: C = (A @ W) * (a > 0)
    with a's element at the address of C's plus ``e_addr`` bytes (a laid out like C: dz of a
    layer and its relu output). Saves the pass over C that would apply them after the product.
    Pass ``e_addr`` as an int64: an address difference taken in Numba's uint64 wraps."""
    _product_rows(C[:, :], A_rows, W[:, :], 1.0, 0.0, np.int64(epi), e_addr)


# The public products here are inlined wrappers that slice their 2-D operands to layout "A"
# before calling the compiled body: the body reads them only through their addresses and row
# strides, and one compiled version per dtype serves callers passing C-contiguous arrays, blocks
# of columns and any mix of both (8 versions of the epilogue product before, 2.4-3.9 s each;
# docs/performance.md, "The test run").
@njit(cache=True, nogil=True)
def _product_rows(C, A_rows, W, alpha, beta, epi, e_addr):
    """The body of :func:`matmul_rows` (epi EPI_NONE) and :func:`matmul_rows_epilogue` (alpha 1,
    beta 0)."""
    m, n = C.shape
    k = W.shape[0]
    T = C.dtype.type
    if k == 0:
        _scale(C, beta)
        return
    width = VECTORS * VECTOR_BYTES // C.itemsize
    depth = _depth(W.strides[0])
    bias = epi == EPI_BIAS or epi == EPI_BIAS_RELU
    for i0 in range(0, m, ROW_GROUP):
        rows = min(ROW_GROUP, m - i0)
        for j0 in range(0, n, width):
            for k0 in range(0, k, depth):        # one block of W's rows at a time, from L1
                last = k0 + depth >= k           # the epilogue goes with the last block
                _column_of_tiles(True, (_address(C, i0, j0), C.strides[0] // C.itemsize),
                                 (A_rows.ctypes.data + i0 * 8, rows, k0),
                                 (_address(W, k0, j0), W.strides[0] // W.itemsize),
                                 (min(depth, k - k0), min(width, n - j0)), C.itemsize, T(alpha),
                                 T(beta) if k0 == 0 else T(1),
                                 (epi if last else EPI_NONE,
                                  e_addr + j0 * C.itemsize if bias else e_addr))


@njit(cache=True, nogil=True, inline="always")
def rank_update(C, A_rows, a_col, D, alpha, beta):
    """C (k, n) = alpha * A.T @ D + beta * C (beta 0: C is only written), where A is (m, k),
    columns a_col .. a_col + k of the rows at addresses ``A_rows[i]``, and D is (m, n). The weight
    step ``W -= lr * A.T @ dz`` is alpha = -lr, beta = 1. Layout as for :func:`matmul_rows`."""
    _rank_update(C[:, :], A_rows, np.int64(a_col), D[:, :], np.float64(alpha), np.float64(beta))


@njit(cache=True, nogil=True)
def _rank_update(C, A_rows, a_col, D, alpha, beta):
    """The body of :func:`rank_update`, on operands of layout "A" (one version per dtype)."""
    k, n = C.shape
    m = D.shape[0]
    T = C.dtype.type
    if m == 0:
        _scale(C, beta)
        return
    width = VECTORS * VECTOR_BYTES // C.itemsize
    depth = _depth(D.strides[0])
    for j0 in range(0, n, width):
        for p0 in range(0, m, depth):            # one block of D's rows at a time, from L1
            _column_of_tiles(False, (_address(C, 0, j0), C.strides[0] // C.itemsize),
                             (A_rows.ctypes.data + p0 * 8, k, a_col),
                             (_address(D, p0, j0), D.strides[0] // D.itemsize),
                             (min(depth, m - p0), min(width, n - j0)), C.itemsize, T(alpha),
                             T(beta) if p0 == 0 else T(1), (EPI_NONE, NO_ADDRESS))
