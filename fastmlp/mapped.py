"""Rows of a memory-mapped array, read and converted a slice at a time: data larger than memory.

    X = np.load("images.npy", mmap_mode="r")           # uint8 (n, 28, 28), say
    model.fit(X, y)                                    # never converted whole
    model.fit(MappedRows(X, pixels=True), y)           # divided by 255 as the loaders do

``MLP.fit``, ``evaluate`` and ``predict`` take an ``np.memmap`` (or a :class:`MappedRows`) and
read the rows of each compiled call (or each chunk of predictions) from the file, convert them to
the model's dtype (dividing by 255 when ``pixels``), and after the call tell the kernel that the
process no longer needs the mapped pages (``madvise(MADV_DONTNEED)``: they stay in the page
cache, but leave the process's resident memory). So memory holds one slice of converted rows, not
the file. The minibatches, and so the trained weights, are the same as from the array in memory.
"""

import mmap

import numpy as np

# Bytes of converted rows read from the file per compiled call (training) or chunk (predictions)
MAPPED_SLICE_BYTES = 64 * 2**20
# Bytes of the file mapped at most at once while a slice's rows are read (see MappedRows.take)
MAPPED_SPAN_BYTES = 32 * 2**20


class MappedRows:
    """The rows of ``array`` (an ``np.memmap`` of shape (n, ...), any real dtype) as an (n,
    features) matrix read a slice at a time; ``pixels=True`` divides them by 255 in float32 as
    :func:`fastmlp.data.as_float_images` does. ``rows`` picks a subset (in that order)."""

    ndim = 2

    def __init__(self, array, pixels=False, rows=None):
        if isinstance(array, MappedRows):
            raise TypeError("array is already a MappedRows; use it as it is.")
        if not isinstance(array, np.ndarray) or array.ndim < 2:
            raise TypeError("MappedRows takes a memory-mapped array of shape (n, features) or "
                            "(n, h, w): np.load(path, mmap_mode='r').")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"the mapped array has dtype {array.dtype}; it must hold real numbers.")
        if array.ndim > 2 and not array.flags.c_contiguous:
            raise TypeError("a mapped (n, h, w) array must be in C order to be read as rows.")
        self.array = array.reshape(array.shape[0], int(np.prod(array.shape[1:])))
        self.pixels = bool(pixels)
        self.rows = None if rows is None else _check_rows(rows, self.array.shape[0])
        self.finite_as = set()      # dtypes whose conversion was checked for NaN / Inf

    @classmethod
    def open(cls, path, pixels="auto"):
        """The array of the ``.npy`` file ``path``, mapped read-only; ``pixels="auto"`` divides
        uint8 files by 255 (as the loaders do) and keeps other dtypes as they are."""
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return cls(array, array.dtype == np.uint8 if pixels == "auto" else pixels)

    @property
    def shape(self):
        n = self.array.shape[0] if self.rows is None else self.rows.shape[0]
        return (n, self.array.shape[1])

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        return (f"MappedRows(shape={self.shape}, dtype={self.array.dtype}, pixels={self.pixels}, "
                f"file={getattr(self.array, 'filename', None)!r})")

    def __getitem__(self, key):
        """Rows by index or slice, read and converted to float32 (as the loaders give them)."""
        rows = np.arange(len(self))[key]
        return self.take(np.atleast_1d(rows), np.float32)[0 if np.ndim(rows) == 0 else slice(None)]

    def subset(self, rows):
        """These rows (indices into this matrix), still mapped."""
        rows = _check_rows(rows, len(self))
        return MappedRows(self.array, self.pixels, rows if self.rows is None else self.rows[rows])

    def slice_rows(self, dtype):
        """Rows per slice: about MAPPED_SLICE_BYTES once converted to ``dtype``."""
        return max(1, MAPPED_SLICE_BYTES // (self.shape[1] * np.dtype(dtype).itemsize))

    def take(self, rows, dtype, engine="numba"):
        """Rows ``rows`` converted: a C-contiguous (len(rows), features) array of ``dtype``,
        converted by the compiled kernel (or its NumPy twin with ``engine="numpy"``).

        Read in file order, MAPPED_SPAN_BYTES of the file at a time, releasing the mapped pages
        after each span: a page fault maps a whole page-cache folio (up to 2 MiB on recent
        Linux), so rows read at random from the whole file at once would map all of it."""
        src = rows if self.rows is None else self.rows[rows]
        out = np.empty((len(src), self.array.shape[1]), dtype=dtype)
        gather = _gather_convert(engine if self.array.dtype.isnative else "numpy")
        source = self.array.view(np.ndarray)
        by_place = np.argsort(src, kind="stable")
        placed = src[by_place]
        span_rows = max(1, MAPPED_SPAN_BYTES // max(self.array.strides[0], 1))
        cuts = np.flatnonzero(np.diff(placed // span_rows)) + 1
        with np.errstate(over="ignore", invalid="ignore"):
            for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(src)]):
                gather(out, source, placed[a:b], by_place[a:b], np.bool_(self.pixels))
                self.release()
        return out

    def blocks(self, dtype, raw=False, engine="numba"):
        """(start, rows) for consecutive slices of every row, converted (``raw``: as stored)."""
        n, step = self.shape[0], self.slice_rows(dtype)
        for start in range(0, n, step):
            stop = min(n, start + step)
            if raw:
                src = slice(start, stop) if self.rows is None else self.rows[start:stop]
                yield start, np.ascontiguousarray(self.array[src])
                self.release()
            else:
                yield start, self.take(np.arange(start, stop), dtype, engine)

    def release(self):
        """Drop the mapped pages from this process's resident memory (they stay in the page
        cache, and are mapped again when read). Only for an np.memmap shared with its file:
        in a copy-on-write one (mode "c") it would discard the changes made in memory. A no-op
        elsewhere and where the platform has no madvise."""
        raw = getattr(self.array, "_mmap", None)
        if (isinstance(raw, mmap.mmap) and getattr(self.array, "mode", "c") != "c"
                and hasattr(raw, "madvise") and hasattr(mmap, "MADV_DONTNEED")):
            raw.madvise(mmap.MADV_DONTNEED)


def _check_rows(rows, n):
    """Row indices as int64, each in 0..n-1: the compiled reads do no bounds checking."""
    rows = np.asarray(rows)
    if rows.ndim != 1 or rows.dtype.kind not in "iu":
        raise TypeError(f"rows must be a 1-D array of row indices; got {rows.dtype} of shape "
                        f"{rows.shape}.")
    if len(rows) and (rows.min() < 0 or rows.max() >= n):
        bad = rows[(rows < 0) | (rows >= n)][0]
        raise IndexError(f"row {bad} is out of range for {n} rows (0..{n - 1}).")
    return rows.astype(np.int64, copy=False)


def _gather_convert(engine):
    """The kernel that reads and converts rows: compiled, or its NumPy twin."""
    if engine == "numpy":
        from .reference import gather_convert
    else:
        from .engine.kernels import gather_convert
    return gather_convert


def select_rows(X, rows):
    """X[rows] of an array in memory; of a MappedRows, those rows still mapped."""
    return X.subset(rows) if isinstance(X, MappedRows) else X[rows]


def is_mapped(X):
    """Whether ``X`` is read a slice at a time: a MappedRows or an np.memmap."""
    return isinstance(X, MappedRows) or (isinstance(X, np.memmap) and X.ndim >= 2)


def as_mapped(X):
    """``X`` as a MappedRows (an np.memmap is wrapped as it is, not scaled)."""
    return X if isinstance(X, MappedRows) else MappedRows(X)
