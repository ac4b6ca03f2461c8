"""A first layer that skips the zeros of X, against the engine's dense products, one thread.

MNIST's pixels are 81% zeros (Fashion-MNIST's 50%). The engine's first layer multiplies every
element of X. This probe measures what skipping the zeros would give, before the engine takes
it: prototype kernels on X in compressed rows (CSR: per row, the columns and values of its
non-zeros) and compressed columns (CSC), float32, over ``rows`` rows of X in blocks of 128 (the
rows scheme's block), for a layer of 784 inputs and each N units:

- forward, CSR: ``Z[i] = relu(b + sum_p x_p * W[k_p])``, one vector multiply-add per non-zero and
  vector of W's row k_p (W row-major, in L1/L2); the sums in CHAINS independent registers;
- weight gradient, CSR scatter: ``dW[k_p] += x_p * dz[i]`` for each non-zero of each row (a load,
  multiply-add and store of dW's row k_p, up to MAX_VECTORS vectors of units a pass); only for
  N a multiple of the vector's lanes (a masked store per non-zero was several times slower on
  this machine: docs/performance.md, "Sparse inputs");
- weight gradient, CSC: ``dW[k] = sum_p x_p * dz[r_p]`` over the non-zeros of column k of X,
  the sums in registers (dz of all rows kept: a pass over all rows before the gradient).

Dense: the engine's products for that layer (``dots_pay``: dot products, else the tiles), as
benchmarks/tools/narrow_products.py runs them. Milliseconds per pass over the rows, medians of
paired, interleaved rounds; each sparse result is checked against NumPy first.

    python -m benchmarks.tools.sparse_inputs [--data mnist|fashion] [--units 10 20 128]
    python -m benchmarks.tools.sparse_inputs --data fashion --density 0.3   # the crossover

``--density D`` zeroes a random share of X's non-zeros (fixed seed) until D of its elements
are non-zero: the same pixels' layout, thinned, to find the density where sparse stops paying.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from fastmlp.engine.lowlevel.dots import dots_pay
from fastmlp.engine.lowlevel.intrinsics import int64s
from fastmlp.engine.lowlevel.tiles import EPI_BIAS_RELU, VECTOR_BYTES, _splat, _vector_helpers

from .narrow_products import BLOCK, _blocks

# independent sums per vector of the forward and CSC sums (a multiply-add's latency is four of
# its issue slots): max(1, CHAINS // vectors) sets of registers, added at the end
CHAINS = 4
LANES = VECTOR_BYTES // 4                       # float32 lanes per vector
MAX_VECTORS = 4                                 # vectors of units per pass over a row's non-zeros


def _io(context, builder, fl, n_v, vectors, masked):
    """(vt, zero, fma, load(addr, v), store(value, addr, v), const): vector v < ``vectors`` of a
    row of n_v elements at int64 address ``addr``, the last one masked with ``masked``."""
    vt, lanes, size, fma, masked_load, masked_store, lanes_below = _vector_helpers(
        context, builder, fl)
    i64 = ir.IntType(64)
    zero = ir.Constant(vt, [ir.Constant(fl, 0.0)] * lanes)
    align = ir.Constant(ir.IntType(32), size)
    mask = (lanes_below(builder.sub(n_v, ir.Constant(i64, (vectors - 1) * lanes))) if masked
            else None)

    def load(addr, v):
        p = builder.inttoptr(addr, vt.as_pointer())
        if masked and v == vectors - 1:
            return builder.call(masked_load, [p, align, mask, zero])
        return builder.load(p, align=size)

    def store(value, addr, v):
        p = builder.inttoptr(addr, vt.as_pointer())
        if masked and v == vectors - 1:
            builder.call(masked_store, [value, p, align, mask])
        else:
            builder.store(value, p, align=size)

    return vt, zero, fma, load, store, lambda v: ir.Constant(i64, v)


def _entries(builder, x_v, fl, vt):
    """A function of an entry's int64 index p giving (column or row index, value splat) of a
    compressed row or column x = (idx_addr (int32), val_addr)."""
    idx = builder.inttoptr(x_v[0], ir.IntType(32).as_pointer())
    val = builder.inttoptr(x_v[1], fl.as_pointer())

    def entry(p):
        k = builder.sext(builder.load(builder.gep(idx, [p])), ir.IntType(64))
        return k, _splat(builder, builder.load(builder.gep(val, [p])), vt)
    return entry


@intrinsic
def _compressed_sums(typingctx, vectors, out, w, x, like):
    """out[:n] = sum_p val[p] * B[idx[p], :n] (+ b and relu when out = (addr, b_addr, 1)) over
    the ``count`` entries of x = (idx_addr, val_addr, count), B at w = (addr, ldb, n); ``vectors``
    (literal) vectors of units, the last one loaded and stored through a mask. A CSR
    row of X times W (the forward pass) or a CSC column of X times dz (a row of the weight
    gradient)."""
    if not isinstance(vectors, types.IntegerLiteral):
        return None
    sig = types.void(vectors, out, w, x, like)
    NV = vectors.literal_value
    S = max(1, CHAINS // NV)

    def codegen(context, builder, signature, args):
        out_v, b_v, relu_v, w_v, ldb_v, n_v, idx_v, val_v, count_v = (
            v for t, arg in zip(signature.args[1:4], args[1:4])
            for v in int64s(context, builder, t, arg))
        fl = context.get_value_type(signature.args[4])
        vt, zero, fma, load, store, const = _io(context, builder, fl, n_v, NV, True)
        entry = _entries(builder, (idx_v, val_v), fl, vt)
        sums = [[cgutils.alloca_once_value(builder, zero) for _ in range(NV)] for _ in range(S)]
        row_bytes = builder.mul(ldb_v, const(4))

        def take(p, s):
            k, xv = entry(p)
            row = builder.add(w_v, builder.mul(k, row_bytes))
            for v in range(NV):
                bv = load(builder.add(row, const(v * VECTOR_BYTES)), v)
                builder.store(builder.call(fma, [xv, bv, builder.load(sums[s][v])]), sums[s][v])

        turns = builder.sdiv(count_v, const(S))
        with cgutils.for_range(builder, turns) as loop:
            for s in range(S):
                take(builder.add(builder.mul(loop.index, const(S)), const(s)), s)
        with cgutils.for_range(builder, builder.sub(count_v, builder.mul(turns, const(S)))) as loop:
            take(builder.add(builder.mul(turns, const(S)), loop.index), 0)
        finish = builder.icmp_signed("!=", relu_v, const(0))
        total = cgutils.alloca_once_value(builder, zero)
        for v in range(NV):
            builder.store(builder.load(sums[0][v]), total)
            for s in range(1, S):
                builder.store(builder.fadd(builder.load(total), builder.load(sums[s][v])), total)
            with builder.if_then(finish):           # + b, then relu (z <= 0 -> 0)
                bias = load(builder.add(b_v, const(v * VECTOR_BYTES)), v)
                z = builder.fadd(builder.load(total), bias)
                builder.store(builder.select(builder.fcmp_ordered("<=", z, zero), zero, z), total)
            store(builder.load(total), builder.add(out_v, const(v * VECTOR_BYTES)), v)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _scatter(typingctx, vectors, g, d, x, like):
    """G[idx[p], :vectors * lanes] += val[p] * d over the ``count`` entries of x = (idx_addr,
    val_addr, count), G at g = (addr, ldg), d = (d_addr,) a row of dz; ``vectors`` a literal;
    no mask."""
    if not isinstance(vectors, types.IntegerLiteral):
        return None
    sig = types.void(vectors, g, d, x, like)
    NV = vectors.literal_value

    def codegen(context, builder, signature, args):
        g_v, ldg_v, d_v, idx_v, val_v, count_v = (
            v for t, arg in zip(signature.args[1:4], args[1:4])
            for v in int64s(context, builder, t, arg))
        fl = context.get_value_type(signature.args[4])
        vt, zero, fma, load, store, const = _io(context, builder, fl, ldg_v, NV, False)
        entry = _entries(builder, (idx_v, val_v), fl, vt)
        dv = [load(builder.add(d_v, const(v * VECTOR_BYTES)), v) for v in range(NV)]
        row_bytes = builder.mul(ldg_v, const(4))
        with cgutils.for_range(builder, count_v) as loop:
            k, xv = entry(loop.index)
            row = builder.add(g_v, builder.mul(k, row_bytes))
            for v in range(NV):
                addr = builder.add(row, const(v * VECTOR_BYTES))
                store(builder.call(fma, [xv, dv[v], load(addr, v)]), addr, v)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _sums_of(vectors, out, w, x):
    """:func:`_compressed_sums` with ``vectors`` (1 .. MAX_VECTORS) as a literal."""
    if vectors == 4:
        _compressed_sums(4, out, w, x, np.float32(0))
    elif vectors == 3:
        _compressed_sums(3, out, w, x, np.float32(0))
    elif vectors == 2:
        _compressed_sums(2, out, w, x, np.float32(0))
    else:
        _compressed_sums(1, out, w, x, np.float32(0))


@njit
def _sparse_forward(Z, ptr, idx, val, W, b, r0, r1):
    """Z[i - r0] = relu(X[i] @ W + b) for rows r0 .. r1 of X in CSR (ptr, idx, val)."""
    n = W.shape[1]
    for i in range(r0, r1):
        x = (idx.ctypes.data + ptr[i] * 4, val.ctypes.data + ptr[i] * 4, ptr[i + 1] - ptr[i])
        for j0 in range(0, n, MAX_VECTORS * LANES):
            width = min(MAX_VECTORS * LANES, n - j0)
            out = (Z.ctypes.data + (i - r0) * Z.strides[0] + j0 * 4, b.ctypes.data + j0 * 4, 1)
            w = (W.ctypes.data + j0 * 4, W.shape[1], width)
            _sums_of((width + LANES - 1) // LANES, out, w, x)


@njit
def _scatter_gradient(G, ptr, idx, val, D, r0, r1):
    """G += X[r0:r1].T @ D[:r1 - r0] by rows of X in CSR; G's width a multiple of LANES."""
    n = G.shape[1]
    for i in range(r0, r1):
        x = (idx.ctypes.data + ptr[i] * 4, val.ctypes.data + ptr[i] * 4, ptr[i + 1] - ptr[i])
        for j0 in range(0, n, MAX_VECTORS * LANES):
            g = (G.ctypes.data + j0 * 4, n)
            d = (D.ctypes.data + (i - r0) * D.strides[0] + j0 * 4,)
            # the literal number of vectors, as _sums_of gives it
            vectors = min(MAX_VECTORS * LANES, n - j0) // LANES
            if vectors == 4:
                _scatter(4, g, d, x, np.float32(0))
            elif vectors == 3:
                _scatter(3, g, d, x, np.float32(0))
            elif vectors == 2:
                _scatter(2, g, d, x, np.float32(0))
            else:
                _scatter(1, g, d, x, np.float32(0))


@njit
def _column_gradient(G, ptr, idx, val, D):
    """G = X.T @ D by columns of X in CSC (ptr, idx, val), D holding dz of all rows."""
    n = G.shape[1]
    for k in range(G.shape[0]):
        x = (idx.ctypes.data + ptr[k] * 4, val.ctypes.data + ptr[k] * 4, ptr[k + 1] - ptr[k])
        for j0 in range(0, n, MAX_VECTORS * LANES):
            width = min(MAX_VECTORS * LANES, n - j0)
            out = (G.ctypes.data + k * G.strides[0] + j0 * 4, 0, 0)
            d = (D.ctypes.data + j0 * 4, D.shape[1], width)
            _sums_of((width + LANES - 1) // LANES, out, d, x)


@njit
def _sparse_pass(Z, G, csr, W, b, D, forward, scatter):
    """Over all rows of X in blocks of BLOCK: the forward pass, then (``scatter``) the block's
    weight gradient by rows, as the rows scheme would run them."""
    ptr, idx, val = csr
    n_rows = ptr.shape[0] - 1
    for r0 in range(0, n_rows, BLOCK):
        r1 = min(r0 + BLOCK, n_rows)
        if forward:
            _sparse_forward(Z, ptr, idx, val, W, b, r0, r1)
        if scatter:
            _scatter_gradient(G, ptr, idx, val, D, r0, r1)


def compressed(X):
    """(ptr, idx, val): X's non-zeros by rows (CSR); of X.T for its columns (CSC)."""
    rows, cols = np.nonzero(X)
    ptr = np.zeros(X.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=X.shape[0]), out=ptr[1:])
    return ptr, cols.astype(np.int32), np.ascontiguousarray(X[rows, cols], dtype=np.float32)


def thinned(X, density, seed=0):
    """X with a random share of its non-zeros set to zero, so that ``density`` of its elements
    are non-zero (X itself when it has no more than that)."""
    rows, cols = np.nonzero(X)
    keep = int(round(density * X.size))
    if keep >= rows.size:
        return X
    drop = np.random.default_rng(seed).choice(rows.size, rows.size - keep, replace=False)
    X = X.copy()
    X[rows[drop], cols[drop]] = 0.0
    return X


def _data(name, n_rows):
    """The first ``n_rows`` images of MNIST (../shared/data/mnist, or FASTMLP_MNIST_DIR) or of
    Fashion-MNIST, in [0, 1], float32."""
    from fastmlp.bench import FASHION_MNIST_DIR
    from fastmlp.data import load

    folder = FASHION_MNIST_DIR if name == "fashion" else (
        os.environ.get("FASTMLP_MNIST_DIR")
        or str(Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"))
    X = np.asarray(load(folder).X_train[:n_rows], dtype=np.float32)
    return np.ascontiguousarray(X / 255.0 if X.max() > 1.0 else X)


def compare(X, n, rounds):
    """{what: median ms per pass over X's rows} for a layer of n units, sparse and dense."""
    k, n_rows = X.shape[1], X.shape[0]
    rng = np.random.default_rng(0)
    W = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    b = (rng.standard_normal(n) * 0.05).astype(np.float32)
    D_all = rng.standard_normal((n_rows, n)).astype(np.float32)
    D = D_all[:BLOCK].copy()
    Z, G = np.zeros((BLOCK, n), np.float32), np.zeros((k, n), np.float32)
    csr, csc = compressed(X), compressed(np.ascontiguousarray(X.T))
    scatter = n % LANES == 0
    # checked against NumPy on the last block and on all rows before any timing
    _sparse_pass(Z, G, csr, W, b, D, True, scatter)
    last = (n_rows - 1) // BLOCK * BLOCK
    np.testing.assert_allclose(Z[:n_rows - last], np.maximum(X[last:] @ W + b, 0), atol=1e-4)
    if scatter:
        expect = sum(X[r0:r0 + BLOCK].T @ D[:len(X[r0:r0 + BLOCK])]
                     for r0 in range(0, n_rows, BLOCK))
        np.testing.assert_allclose(G, expect, rtol=1e-4, atol=1e-2)
    _column_gradient(G, *csc, D_all)
    np.testing.assert_allclose(G, X.T @ D_all, rtol=1e-4, atol=1e-2)

    dots = dots_pay(k, n, 4)
    B = np.ascontiguousarray(W.T) if dots else W
    G_dense = np.zeros_like(B)
    addr = np.zeros(BLOCK, np.int64)
    runs = {
        "dense": lambda: _blocks(X, B, b, Z, D, G_dense, addr, 1, dots, True, True),
        "sparse forward": lambda: _sparse_pass(Z, G, csr, W, b, D, True, False),
        "sparse gradient, CSC": lambda: _column_gradient(G, *csc, D_all),
    }
    if scatter:
        runs["sparse gradient, scatter"] = lambda: _sparse_pass(Z, G, csr, W, b, D, False, True)
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(1e3 * (time.perf_counter() - start))
    return {name: float(np.median(t)) for name, t in times.items()}, dots


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("mnist", "fashion"), default="mnist")
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--units", type=int, nargs="+", default=[10, 20, 25, 32, 128])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--density", type=float, default=None,
                        help="thin X's non-zeros at random to this share of its elements")
    args = parser.parse_args(argv)
    X = _data(args.data, args.rows)
    if args.density is not None:
        X = thinned(X, args.density)
    print(f"{args.data}: {X.shape[0]} rows, {np.mean(X != 0):.0%} non-zero; ms per pass over "
          f"the rows, medians of {args.rounds} interleaved rounds, 1 thread\n")
    print("| N | dense (its products) | sparse forward | sparse gradient, scatter | "
          "sparse gradient, CSC | sparse forward + best gradient |\n|---|---|---|---|---|---|")
    for n in args.units:
        ms, dots = compare(X, n, args.rounds)
        scatter = ms.get("sparse gradient, scatter")
        best = min(scatter or np.inf, ms["sparse gradient, CSC"])
        print(f"| {n} | {ms['dense']:.2f} ({'dots' if dots else 'tiles'}) | "
              f"{ms['sparse forward']:.2f} | {'-' if scatter is None else f'{scatter:.2f}'} | "
              f"{ms['sparse gradient, CSC']:.2f} | {ms['sparse forward'] + best:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
