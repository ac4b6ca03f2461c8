"""Load training data: the built-in digits, MNIST-style IDX files, .npz archives and CSV files.

:func:`load` picks the reader from the path:

- ``None`` or ``"digits"``: scikit-learn's bundled 8x8 digits (1797 images, no download),
  split 80/20 into train and test, stratified, with seed 0.
- a directory holding the MNIST / Fashion-MNIST IDX files (``train-images-idx3-ubyte[.gz]``,
  ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]``,
  ``t10k-labels-idx1-ubyte[.gz]``). Names are matched loosely ("train" / "t10k" or "test",
  "image" / "label"); a directory with only one pair gives a train set and no test set.
- one IDX images file, gzip or raw; its labels file is the one beside it named with
  "labels-idx1" for "images-idx3", or the one passed as ``labels=``.
- ``.npz``: Keras' ``mnist.npz`` (x_train, y_train, x_test, y_test) or any archive with
  X and y (also x / y, X_train / y_train / X_test / y_test).
- ``.npy``: an images array, memory-mapped rather than read (for data larger than memory: see
  :mod:`fastmlp.mapped`), with its labels in the ``.npy`` beside it (``y.npy`` for ``X.npy``,
  ``y_train.npy`` for ``x_train.npy``, ``labels.npy`` for ``images.npy``, or
  ``NAME_labels.npy``) or the one passed as ``labels=``. ``X_train`` is then a
  :class:`~fastmlp.mapped.MappedRows`: uint8 pixels are divided by 255 as each slice is read.
- ``.csv`` (or ``.csv.gz``): one image per line. The first line is a header when it names a
  label column ("label", "class", "target" or "y") or is mostly non-numeric; the label is the
  column so named, and a header without one (Kaggle's test.csv) gives ``y = None``. Without a
  header the first column is the label (Colab's ``mnist_train_small.csv``).

Images come back as float32 rows ``(n, features)``: an ``(n, h, w)`` array is flattened to
``(n, h*w)``. Pixels stored as uint8, or as whole numbers in 0..255 (some above 1), as in
CSV files, are divided by 255 so they lie in [0, 1]; other values are kept as they are (the
digits, 0..16, are divided by 16). Labels come back as int64 class numbers.

A file that cannot be read raises :class:`DataError` (a ValueError) naming the file, and for
CSV the line, saying what is wrong and how to fix it.
"""

import gzip
import importlib.util
import math
import os
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .io import check_npz_sizes
from .mapped import MappedRows, select_rows

# IDX type byte -> big-endian NumPy dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
LABEL_NAMES = ("label", "labels", "class", "target", "y")
# the largest class number a file may hold: labels are class numbers, not ids
MAX_CLASS = 1_000_000
FORMATS = (
    "a directory of MNIST IDX files, one IDX images file (.gz or raw), "
    ".npz with X and y (or Keras' x_train, y_train, x_test, y_test), .npy images with their "
    "labels .npy beside them, .csv, or 'digits'"
)


class DataError(ValueError):
    """A data file is missing, malformed or in a format fastmlp does not read."""


@dataclass(repr=False)
class Dataset:
    """Train images and labels, an optional test set, and where they came from."""

    X_train: np.ndarray
    y_train: "np.ndarray | None"
    X_test: "np.ndarray | None" = None
    y_test: "np.ndarray | None" = None
    name: str = ""
    source: str = ""

    def __repr__(self):
        test = None if self.X_test is None else self.X_test.shape
        return (f"Dataset(name={self.name!r}, train={self.X_train.shape}, test={test}, "
                f"source={self.source!r})")


# ---------------------------------------------------------------- public functions

def load(path=None, *, labels=None, split=None):
    """Load a data set from ``path`` (see the module docstring) as a :class:`Dataset`.

    ``labels`` names the labels file of a single IDX or .npy images file when it is not beside
    it.
    ``split`` (0 < split < 1) holds out that fraction of the train set as the test set,
    stratified, with seed 0; it applies to data without a test set of its own, and sets the
    test fraction of the built-in digits (default 0.2).
    """
    if split is not None and not 0 < split < 1:
        raise ValueError(f"split={split!r} must be a fraction between 0 and 1, e.g. 0.2")
    if path is None or str(path) == "digits":
        if labels is not None:
            raise ValueError("labels= applies to an IDX or .npy images file, not to the built-in "
                             "digits")
        return _load_digits(0.2 if split is None else split)

    path = Path(path).expanduser()
    data = _load_path(path, labels)
    if split is None:
        return data
    if data.X_test is not None:
        raise DataError(f"{path}: already holds a test set; leave split=None to use it")
    X_train, y_train, X_test, y_test = train_test_split(data.X_train, data.y_train, split, 0)
    return replace(data, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)


def read_idx(path):
    """Read one IDX file, gzip-compressed or raw, into an array of the shape its header gives.

    The header is two zero bytes, a type byte (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), a dimension count, then each dimension as a big-endian uint32.
    The header is checked against the file's size before the data is read, and no more data
    than the header describes is ever decompressed.
    """
    with _open_stream(path) as (f, stored):
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in IDX_TYPES or head[3] == 0:
            raise DataError(
                f"{path}: not an IDX file (it starts with bytes {head[:4].hex(' ') or 'nothing'}; "
                f"an IDX file starts with 00 00, a type byte such as 08, and a dimension count); "
                f"pass an MNIST-style file such as train-images-idx3-ubyte.gz"
            )
        dtype = np.dtype(IDX_TYPES[head[2]])
        dims = f.read(4 * head[3])
        if len(dims) < 4 * head[3]:
            raise DataError(f"{path}: truncated IDX file (it ends inside its header); "
                            f"download it again")
        header = 4 + len(dims)
        shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
        expected = math.prod(shape) * dtype.itemsize
        if stored is None and os.path.getsize(path) - header < expected:
            raise DataError(f"{path}: truncated IDX file (its header promises {shape}, {expected} "
                            f"bytes of data, but only {os.path.getsize(path) - header} follow); "
                            f"download it again")
        # a gzip file's trailer gives its data's size (mod 4 GiB): read no more than that either
        limit = expected if stored is None else min(expected, max(stored - header, 0) % 2 ** 32)
        data = _read_at_most(f, limit + 1, path)
    if len(data) < expected:
        kind = "gzip" if stored is not None else "IDX"
        raise DataError(f"{path}: truncated {kind} file (its header promises {shape}, {expected} "
                        f"bytes of data, but only {len(data)} follow); download it again")
    if len(data) > expected:
        raise DataError(f"{path}: more bytes follow the {shape} data its header describes; it "
                        f"is not a valid IDX file, download it again")
    values = np.frombuffer(data, dtype, math.prod(shape)).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


@contextmanager
def _open_stream(path):
    """(binary stream, uncompressed size mod 2^32 from the gzip trailer or None) of a file,
    decompressing as it is read when it starts with the gzip magic bytes 1f 8b."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file; check the path") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with raw:
        if raw.read(2) != b"\x1f\x8b":
            raw.seek(0)
            yield raw, None
            return
        raw.seek(-min(4, os.fstat(raw.fileno()).st_size), os.SEEK_END)
        stored = int.from_bytes(raw.read(4), "little")
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw) as f:
                yield f, stored
        except EOFError:
            raise DataError(f"{path}: truncated gzip file (it ends before the compressed data "
                            f"does); download it again") from None
        except (OSError, zlib.error) as exc:
            raise DataError(f"{path}: corrupt gzip file ({exc}); download it again") from None


def _read_at_most(f, limit, path, chunk=1 << 24):
    """Up to ``limit`` bytes of ``f``, read in chunks: memory grows with what the file holds,
    never with what a header claims."""
    parts, size = [], 0
    while size < limit:
        part = f.read(min(chunk, limit - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
    return b"".join(parts)


def as_float_images(X):
    """Return images as float32 rows (n, features), pixel intensities 0..255 divided by 255.

    (n, h, w, ...) is flattened to (n, h*w*...). X is divided by 255 when its dtype is uint8,
    or when its values are whole numbers in 0..255 and some exceed 1; otherwise it is only
    converted to float32 (values already scaled, e.g. to [0, 1], are kept).
    """
    X = np.asarray(X)
    if X.ndim < 2:
        raise ValueError(f"images must be (n, features) or (n, h, w), got shape {X.shape}")
    X = X.reshape(len(X), -1)
    scale = X.dtype == np.uint8
    if not scale and X.size and X.dtype.kind in "iuf":
        low, high = X.min(), X.max()
        scale = 0 <= low and 1 < high <= 255 and (X.dtype.kind != "f" or np.all(X == np.round(X)))
    if not scale:
        return X.astype(np.float32, copy=False)
    return np.divide(X, np.float32(255), dtype=np.float32)


def train_test_split(X, y, test_fraction=0.2, seed=0, stratify=True):
    """Shuffle the rows of X and y together and split them into ``(X_a, y_a, X_b, y_b)``.

    b gets about ``test_fraction`` of the rows. With labels and ``stratify``, each class is
    split in that proportion on its own, and a class of 2 or more samples gets at least one on
    each side. The same seed gives the same split; ``y`` may be None.
    """
    if not isinstance(X, MappedRows):
        X = np.asarray(X)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction!r} must be between 0 and 1, e.g. 0.2")
    if len(X) < 2:
        raise ValueError(f"cannot split {len(X)} rows; need at least 2")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)} labels")

    rng = np.random.default_rng(seed)
    if y is not None and stratify:
        _, inverse = np.unique(y, return_inverse=True)
        by_class = np.argsort(inverse.ravel(), kind="stable")
        groups = np.split(by_class, np.cumsum(np.bincount(inverse.ravel()))[:-1])
    else:
        groups = [np.arange(len(X))]
    rows_a, rows_b = [], []
    for rows in groups:
        rows = rng.permutation(rows)
        n_b = math.floor(len(rows) * test_fraction + 0.5)
        n_b = min(max(n_b, 1), len(rows) - 1)     # one on each side when possible
        rows_a.append(rows[n_b:])
        rows_b.append(rows[:n_b])
    a = rng.permutation(np.concatenate(rows_a))
    b = rng.permutation(np.concatenate(rows_b))
    X_a, X_b = select_rows(X, a), select_rows(X, b)
    if y is None:
        return X_a, None, X_b, None
    return X_a, y[a], X_b, y[b]


# ---------------------------------------------------------------- readers

def _load_digits(test_fraction):
    """scikit-learn's 8x8 digits, scaled from 0..16 to [0, 1], split with seed 0."""
    X, y = _read_digits()
    X = (X / 16).astype(np.float32)
    X_train, y_train, X_test, y_test = train_test_split(X, y.astype(np.int64), test_fraction, 0)
    return Dataset(X_train, y_train, X_test, y_test, name="digits", source="builtin:digits")


DIGITS_SHAPE = (1797, 65)   # scikit-learn's digits.csv.gz: 64 pixels in 0..16, then the label


def _read_digits():
    """The digits' pixels (1797, 64) in 0..16 and labels, as scikit-learn's ``load_digits``.

    Read from the file scikit-learn ships them in without importing scikit-learn (about 2 s,
    the file 20 ms); ``load_digits`` itself where that file is not as expected.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise ImportError(
            'the built-in digits data set comes with scikit-learn: pip install "fastmlp[sklearn]"'
        )
    table = None
    for folder in spec.submodule_search_locations or ():
        try:
            with gzip.open(Path(folder, "datasets", "data", "digits.csv.gz"), "rt") as f:
                table = np.loadtxt(f, delimiter=",")
        except (OSError, ValueError, EOFError):
            continue
        break
    if (table is not None and table.shape == DIGITS_SHAPE
            and np.all((table >= 0) & (table <= 16) & (table == np.round(table)))
            and table[:, -1].max() <= 9):
        return table[:, :-1], table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits
    return load_digits(return_X_y=True)


def _load_path(path, labels):
    """Pick the reader for ``path`` from whether it is a directory, its suffix, or its bytes."""
    if not path.exists():
        raise DataError(f"{path}: no such file or directory; give {FORMATS}")
    suffix = _suffix(path)
    if labels is not None and (path.is_dir() or suffix in (".npz", ".csv")):
        raise ValueError(f"labels= applies to an IDX or .npy images file, not to {path}")
    if path.is_dir():
        return _load_idx_dir(path)
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".npy":
        return _load_npy(path, labels)
    if suffix == ".csv":
        return _csv_loader()(path)
    if _looks_like_idx(path) or "idx" in path.name.lower() or "ubyte" in path.name.lower():
        return _load_idx_file(path, labels)
    raise DataError(f"{path}: unknown format (suffix {path.suffix or 'none'!r}); give {FORMATS}")


def _load_idx_dir(folder):
    """A directory of IDX files: the train pair and, when present, the t10k (test) pair."""
    found = {}
    for file in sorted(folder.iterdir()):
        name = file.name.lower()
        part = "train" if "train" in name else "test" if "t10k" in name or "test" in name else None
        kind = "images" if "image" in name else "labels" if "label" in name else None
        if part and kind and file.is_file() and _looks_like_idx(file):
            found.setdefault((part, kind), []).append(file)
    if not found:
        raise DataError(
            f"{folder}: no MNIST-style IDX files found; expected train-images-idx3-ubyte.gz, "
            f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; "
            f"to read a .csv or .npz file, pass the file itself"
        )
    files = {key: _one_file(folder, key, candidates) for key, candidates in found.items()}
    pairs = {}
    for part in ("train", "test"):
        images, labels = files.get((part, "images")), files.get((part, "labels"))
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            have, missing = (images, "labels") if labels is None else (labels, "images")
            raise DataError(f"{have}: found no matching {part} {missing} file beside it in "
                            f"{folder}; the images and labels files come in pairs")
        pairs[part] = _check_idx_pair(read_idx(images), images, read_idx(labels), labels)
    X_train, y_train = pairs.pop("train", None) or pairs.pop("test")
    X_test, y_test = pairs.get("test", (None, None))
    if X_test is not None and X_test.shape[1] != X_train.shape[1]:
        raise DataError(f"{folder}: the train images have {X_train.shape[1]} pixels but the "
                        f"test images have {X_test.shape[1]}; they must be the same size")
    return Dataset(X_train, y_train, X_test, y_test, name=folder.name, source=str(folder))


def _one_file(folder, key, candidates):
    """The one file for (part, kind); of a raw file and its .gz copy, the raw one."""
    names = {f.name for f in candidates}
    candidates = [f for f in candidates if not (f.name.endswith(".gz") and f.name[:-3] in names)]
    if len(candidates) > 1:
        names = ", ".join(f.name for f in candidates)
        raise DataError(f"{folder}: several {key[0]} {key[1]} files ({names}); keep only one "
                        f"or pass the file itself")
    return candidates[0]


def _load_idx_file(images_path, labels_path):
    """One IDX images file with the labels file beside it, or the one given."""
    images = read_idx(images_path)
    if labels_path is None:
        tried = [images_path.with_name(name) for name in _labels_names(images_path.name)]
        labels_path = next((path for path in tried if path.is_file()), None)
        if labels_path is None:
            looked = ", ".join(path.name for path in tried) or "a name with labels-idx1"
            raise DataError(f"{images_path}: no labels file found beside it (looked for "
                            f"{looked}); pass it as load(path, labels='...labels-idx1-ubyte.gz')")
    labels_path = Path(labels_path).expanduser()
    X, y = _check_idx_pair(images, images_path, read_idx(labels_path), labels_path)
    return Dataset(X, y, name=_stem_name(images_path), source=str(images_path))


def _labels_names(name):
    """Names the labels file of images file ``name`` may have, most likely first."""
    names = []
    for old, new in (("images-idx3", "labels-idx1"), ("images", "labels"), ("idx3", "idx1")):
        if old in name:
            names.append(name.replace(old, new))
    names += [n[:-3] if n.endswith(".gz") else n + ".gz" for n in names]
    return list(dict.fromkeys(names))


def _check_idx_pair(images, images_path, labels, labels_path):
    """Images and labels read from two IDX files, checked to match and converted."""
    if images.ndim < 2:
        raise DataError(f"{images_path}: holds a 1-D array {images.shape}, which looks like "
                        f"labels; pass the images file (images-idx3)")
    _check_labels_match(len(images), images_path, labels, labels_path,
                        "; pass the labels file (labels-idx1)")
    return _images(images, images_path), _labels(labels, labels_path)


def _check_labels_match(n_images, images_path, labels, labels_path, hint=""):
    """Labels read from their own file: 1-D, one per image."""
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: holds an array of shape {labels.shape}, not 1-D "
                        f"labels{hint}")
    if len(labels) != n_images:
        raise DataError(f"{images_path} has {n_images} images but {labels_path} has "
                        f"{len(labels)} labels; use the images and labels files of one set")


def _load_npy(path, labels_path):
    """A .npy images file, memory-mapped, with its labels from ``labels_path`` or beside it."""
    try:
        X = MappedRows.open(path)
    except (TypeError, ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot map it as an images array: {exc}") from None
    if labels_path is None:
        tried = [path.with_name(name) for name in _npy_labels_names(path.name)]
        labels_path = next((p for p in tried if p.is_file() and p != path), None)
        if labels_path is None:
            raise DataError(f"{path}: no labels file found beside it (looked for "
                            f"{', '.join(p.name for p in tried)}); pass it as "
                            f"load(path, labels='labels.npy') or --labels")
    labels_path = Path(labels_path).expanduser()
    try:
        labels = np.load(labels_path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{labels_path}: cannot read it as a .npy array of labels: {exc}") from None
    _check_labels_match(len(X), path, labels, labels_path)
    return Dataset(X, _labels(labels, labels_path), name=_stem_name(path), source=str(path))


def _npy_labels_names(name):
    """Names the labels .npy of images file ``name`` may have, most likely first: x -> y,
    x_train -> y_train, images -> labels, train_images -> train_labels, NAME -> NAME_labels."""
    stem = name[:-len(".npy")]
    names = []
    if stem[:1] in "xX" and stem[1:2] in ("", "_", "-"):
        names.append("y" + stem[1:])
    for old, new in (("images", "labels"), ("image", "label"), ("Images", "Labels")):
        if old in stem:
            names.append(stem.replace(old, new))
    names += [f"{stem}_labels", f"{stem}-labels", f"{stem}.labels"]
    return [n + ".npy" for n in dict.fromkeys(names)]


def _load_npz(path):
    """Keras' mnist.npz (x_train, y_train, x_test, y_test) or an archive with X and y."""
    try:
        with open(path, "rb") as file:
            start = file.read(4)
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    # np.load would read any other bytes as a .npy or a pickle and blame pickling: say what it is.
    if start[:2] != b"PK" and start[:4] != b"\x93NUM":
        what = "is empty" if not start else f"starts with bytes {start.hex(' ')}, not a zip signature"
        raise DataError(f"{path}: not a .npz archive (it {what}); it may be truncated or another "
                        f"kind of file; write one with np.savez('data.npz', X=X, y=y)")
    if start[:2] == b"PK":
        check_npz_sizes(path, DataError)        # headers against sizes, before any allocation
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot be read as a .npz archive ({exc}); "
                        f"write one with np.savez('data.npz', X=X, y=y)") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not a .npz archive of X and y; "
                        f"write one with np.savez('data.npz', X=X, y=y)")
    with archive:
        keys = {key.lower(): key for key in archive.files}

        def pair(x_key, y_key):
            if x_key not in keys or y_key not in keys:
                have, missing = (x_key, y_key) if x_key in keys else (y_key, x_key)
                raise DataError(f"{path}: has {keys[have]!r} but no {missing!r}; "
                                f"save both, e.g. np.savez('data.npz', X=X, y=y)")
            try:
                X, y = archive[keys[x_key]], archive[keys[y_key]]
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
                raise DataError(f"{path}: cannot read {keys[x_key]!r} / {keys[y_key]!r} "
                                f"({exc}); write the file again") from None
            where = f"{path} [{keys[x_key]!r}, {keys[y_key]!r}]"
            for key, a in ((x_key, X), (y_key, y)):
                if a.ndim == 0:
                    raise DataError(f"{where}: {keys[key]!r} is a single value, not an array "
                                    f"with one row per image")
            if len(X) == 0:
                raise DataError(f"{where}: holds no images (0 rows)")
            if len(X) != len(y):
                raise DataError(f"{where}: {len(X)} images but {len(y)} labels; "
                                f"X and y must have the same number of rows")
            return _images(X, where), _labels(y, where)

        if "x_train" in keys or "y_train" in keys:
            X_train, y_train = pair("x_train", "y_train")
            has_test = "x_test" in keys or "y_test" in keys
            X_test, y_test = pair("x_test", "y_test") if has_test else (None, None)
        elif "x" in keys or "y" in keys:
            (X_train, y_train), X_test, y_test = pair("x", "y"), None, None
        else:
            raise DataError(f"{path}: has arrays {', '.join(map(repr, archive.files)) or 'none'} "
                            f"but no X and y; save them as np.savez('data.npz', X=X, y=y) "
                            f"(or x_train, y_train, x_test, y_test)")
    if X_test is not None and X_test.shape[1] != X_train.shape[1]:
        raise DataError(f"{path}: the train images have {X_train.shape[1]} pixels but the "
                        f"test images have {X_test.shape[1]}; they must be the same size")
    return Dataset(X_train, y_train, X_test, y_test, name=_stem_name(path), source=str(path))


def _images(X, where):
    """Images from a file as float32 rows, or a DataError naming ``where``."""
    X = np.asarray(X)
    if X.ndim < 2 or X.dtype.kind not in "biuf":
        raise DataError(f"{where}: images must be numbers of shape (n, features) or "
                        f"(n, h, w), got {X.dtype} of shape {X.shape}")
    images = as_float_images(X)
    if not np.isfinite(images).all():
        row, column = np.argwhere(~np.isfinite(images))[0]
        raise DataError(f"{where}: image {row} has {images[row, column]} at pixel {column}; "
                        f"images must hold finite numbers, fix or drop that row")
    return images


def _labels(y, where):
    """Labels from a file as int64 class numbers, or a DataError naming ``where``."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = "; for one-hot labels pass y.argmax(axis=1)" if y.ndim == 2 else ""
        raise DataError(f"{where}: labels must be a 1-D array of class numbers, "
                        f"got shape {y.shape}{hint}")
    if y.dtype.kind not in "biuf":
        raise DataError(f"{where}: labels must be class numbers 0, 1, 2, ..., got {y.dtype}; "
                        f"map each class name to a number first")
    if y.size and (not np.all((y >= 0) & (y <= MAX_CLASS))
                   or (y.dtype.kind == "f" and np.any(y != np.round(y)))):
        raise DataError(f"{where}: labels must be whole numbers from 0 to {MAX_CLASS}, "
                        f"got values from {y.min():g} to {y.max():g}")
    return y.astype(np.int64)


def _read_bytes(path):
    """The bytes of a file, decompressed when it starts with the gzip magic bytes 1f 8b."""
    with _open_stream(path) as (f, _):
        return f.read()


def _looks_like_idx(path):
    """Whether a file starts like an IDX file (00 00) or a gzip file (1f 8b)."""
    try:
        with open(path, "rb") as file:
            return file.read(2) in (b"\0\0", b"\x1f\x8b")
    except OSError:
        return False


def _suffix(path):
    """The lower-case suffix under a trailing .gz: 'train.csv.gz' -> '.csv'."""
    name = Path(path).name.lower()
    return Path(name.removesuffix(".gz")).suffix


def _stem_name(path):
    """The file name without .gz and a .csv / .npz suffix: 'train.csv.gz' -> 'train'."""
    name = Path(path).name
    name = name[:-3] if name.lower().endswith(".gz") else name
    return Path(name).stem if _suffix(path) in (".npz", ".npy", ".csv") else name


def _csv_loader():
    """fastmlp.csvfiles.load_csv (imported on first use: it imports this module)."""
    from .csvfiles import load_csv

    return load_csv
