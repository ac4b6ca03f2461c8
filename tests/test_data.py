"""Tests of fastmlp.data: each reader on small files written here, the split, and bad files."""

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp import data as data_module
from fastmlp.data import DataError, Dataset, as_float_images, load, read_idx, train_test_split
from fastmlp.mapped import MappedRows
from helpers import MNIST_DIR

IDX_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C,
             "float32": 0x0D, "float64": 0x0E}


# ---------------------------------------------------------------- helpers

def idx_bytes(array):
    """The IDX encoding of ``array``: header, then big-endian data."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype.name], array.ndim])
    header += np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, compress=None):
    """Write ``array`` as an IDX file, gzip-compressed when the name ends in .gz (by default)."""
    data = idx_bytes(array)
    if compress is None:
        compress = path.name.endswith(".gz")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def make_images(n, size=4, seed=0):
    """n uint8 images (n, size, size) and labels 0, 1, 2, 0, ...; pixel 0 of image i is i."""
    images = np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)
    images[:, 0, 0] = np.arange(n)
    return images, (np.arange(n) % 3).astype(np.uint8)


def write_mnist_dir(folder, n_train=12, n_test=6, parts=("train", "t10k"), suffix=".gz"):
    """A directory of MNIST-style IDX files; returns {part: (images, labels)}."""
    folder.mkdir(exist_ok=True)
    written = {}
    for part, n in (("train", n_train), ("t10k", n_test)):
        if part in parts:
            images, labels = make_images(n, seed=n)
            write_idx(folder / f"{part}-images-idx3-ubyte{suffix}", images)
            write_idx(folder / f"{part}-labels-idx1-ubyte{suffix}", labels)
            written[part] = (images, labels)
    return written


def write_csv(path, rows, header=None):
    lines = ([header] if header else []) + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_rows(n=8, n_pixels=6, seed=0):
    """Label-first rows of whole-number pixels 0..255 (row i has label i % 3)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (n, n_pixels))
    pixels[0, 0] = 255
    return np.column_stack([np.arange(n) % 3, pixels])


def error_of(call, *args, **kwargs):
    """The message of the DataError that call(*args, **kwargs) raises."""
    with pytest.raises(DataError) as info:
        call(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------- IDX

def test_read_idx_reads_gzip_and_raw_alike_by_magic_bytes_not_name(tmp_path):
    images, _ = make_images(5)
    gz = write_idx(tmp_path / "gzip-without-suffix", images, compress=True)
    raw = write_idx(tmp_path / "raw-with-suffix.gz", images, compress=False)
    for path in (gz, raw):
        got = read_idx(path)
        assert got.dtype == np.uint8 and got.shape == (5, 4, 4)
        np.testing.assert_array_equal(got, images)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "float32", "float64"])
def test_read_idx_reads_every_idx_type(tmp_path, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", array))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_load_directory_of_four_idx_files(tmp_path):
    written = write_mnist_dir(tmp_path / "mnist")
    data = load(tmp_path / "mnist")
    assert isinstance(data, Dataset) and data.name == "mnist"
    assert data.source == str(tmp_path / "mnist")
    for X, y, (images, labels) in ((data.X_train, data.y_train, written["train"]),
                                   (data.X_test, data.y_test, written["t10k"])):
        assert X.dtype == np.float32 and X.shape == (len(images), 16)
        assert y.dtype == np.int64
        np.testing.assert_allclose(X, images.reshape(len(images), -1) / 255, rtol=1e-6)
        np.testing.assert_array_equal(y, labels)


def test_load_directory_with_only_the_t10k_pair_gives_a_train_set(tmp_path):
    written = write_mnist_dir(tmp_path / "mnist", parts=("t10k",), suffix="")
    data = load(tmp_path / "mnist")
    assert data.X_train.shape == (6, 16) and data.X_test is None and data.y_test is None
    np.testing.assert_array_equal(data.y_train, written["t10k"][1])


def test_load_directory_with_raw_and_gz_copies_reads_one_of_each(tmp_path):
    write_mnist_dir(tmp_path / "raw", suffix="")
    write_mnist_dir(tmp_path / "raw", suffix=".gz")
    (tmp_path / "raw" / "README.txt").write_text("not data")
    data = load(tmp_path / "raw")
    assert data.X_train.shape == (12, 16) and data.X_test.shape == (6, 16)


def test_load_directory_matches_names_loosely(tmp_path):
    images, labels = make_images(7)
    write_idx(tmp_path / "Train_Images.gz", images)
    write_idx(tmp_path / "train_labels.gz", labels)
    write_idx(tmp_path / "test_images", images[:3])
    write_idx(tmp_path / "test_labels", labels[:3])
    data = load(tmp_path)
    assert data.X_train.shape == (7, 16) and data.X_test.shape == (3, 16)


def test_load_single_idx_file_finds_its_labels_beside_it(tmp_path):
    written = write_mnist_dir(tmp_path)
    data = load(tmp_path / "t10k-images-idx3-ubyte.gz")
    assert data.X_train.shape == (6, 16) and data.X_test is None
    assert data.name == "t10k-images-idx3-ubyte"
    np.testing.assert_array_equal(data.y_train, written["t10k"][1])


def test_load_single_idx_file_with_labels_passed_explicitly(tmp_path):
    images, labels = make_images(5)
    write_idx(tmp_path / "pictures.idx", images)
    write_idx(tmp_path / "classes.idx", labels)
    data = load(tmp_path / "pictures.idx", labels=tmp_path / "classes.idx")
    np.testing.assert_array_equal(data.y_train, labels)


# ---------------------------------------------------------------- npz

def test_load_keras_mnist_npz(tmp_path):
    (x_train, y_train), (x_test, y_test) = make_images(10), make_images(4, seed=1)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    data = load(path)
    assert data.name == "mnist"
    assert data.X_train.shape == (10, 16) and data.X_test.shape == (4, 16)
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    np.testing.assert_allclose(data.X_test, x_test.reshape(4, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y_test, y_test)


@pytest.mark.parametrize("x_key, y_key", [("X", "y"), ("x", "y"), ("X_train", "y_train")])
def test_load_generic_npz(tmp_path, x_key, y_key):
    X = np.random.default_rng(0).random((9, 5))          # already scaled: kept as is
    y = np.arange(9) % 2
    np.savez(tmp_path / "d.npz", **{x_key: X, y_key: y})
    data = load(tmp_path / "d.npz")
    np.testing.assert_allclose(data.X_train, X, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, y)
    assert data.X_test is None


def test_load_generic_npz_with_test_arrays(tmp_path):
    X, y = np.arange(40).reshape(10, 4), np.arange(10) % 2   # whole numbers 0..255: / 255
    np.savez(tmp_path / "d.npz", X_train=X, y_train=y, X_test=X[:3], y_test=y[:3])
    data = load(tmp_path / "d.npz")
    np.testing.assert_allclose(data.X_train, X / 255, rtol=1e-6)
    assert data.X_test.shape == (3, 4)


# ---------------------------------------------------------------- CSV

def test_load_kaggle_csv_with_header_and_its_label_less_test_csv(tmp_path):
    rows = csv_rows()
    pixel_names = ",".join(f"pixel{i}" for i in range(6))
    train = write_csv(tmp_path / "train.csv", rows, header="label," + pixel_names)
    test = write_csv(tmp_path / "test.csv", rows[:, 1:], header=pixel_names)

    data = load(train)
    assert data.name == "train" and data.X_train.dtype == np.float32
    np.testing.assert_allclose(data.X_train, rows[:, 1:] / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, rows[:, 0])
    assert data.y_train.dtype == np.int64

    unlabelled = load(test)
    assert unlabelled.y_train is None
    np.testing.assert_allclose(unlabelled.X_train, data.X_train)


def test_load_header_less_label_first_csv(tmp_path):
    rows = csv_rows()
    data = load(write_csv(tmp_path / "mnist_train_small.csv", rows))
    np.testing.assert_allclose(data.X_train, rows[:, 1:] / 255, rtol=1e-6)
    np.testing.assert_array_equal(data.y_train, rows[:, 0])


def test_load_csv_with_windows_line_ends_gzip_and_label_column_elsewhere(tmp_path):
    rows = csv_rows()
    text = "a,b,label,c,d,e,f\r\n" + "".join(
        ",".join(map(str, [*row[1:3], row[0], *row[3:]])) + "\r\n" for row in rows)
    path = tmp_path / "moved.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    data = load(path)
    assert data.name == "moved"
    np.testing.assert_array_equal(data.y_train, rows[:, 0])
    np.testing.assert_allclose(data.X_train, rows[:, 1:] / 255, rtol=1e-6)


def test_load_csv_with_decimal_pixels_already_scaled(tmp_path):
    path = tmp_path / "scaled.csv"
    path.write_text("1,0.5,0.25\n0,1.0,0\n")
    data = load(path)
    np.testing.assert_allclose(data.X_train, [[0.5, 0.25], [1.0, 0.0]])


# ---------------------------------------------------------------- built-in digits

def test_load_builtin_digits():
    data = load()
    assert data.name == "digits" and data.source == "builtin:digits"
    assert data.X_train.shape[1] == 64 and len(data.X_train) + len(data.X_test) == 1797
    assert abs(len(data.X_test) / 1797 - 0.2) < 0.01
    assert data.X_train.dtype == np.float32 and data.y_train.dtype == np.int64
    assert data.X_train.min() == 0 and data.X_train.max() == 1
    assert set(data.y_train) == set(data.y_test) == set(range(10))
    again = load("digits")
    np.testing.assert_array_equal(data.X_test, again.X_test)
    np.testing.assert_array_equal(data.y_test, again.y_test)


def test_load_digits_with_other_split():
    data = load(split=0.5)
    assert abs(len(data.X_test) - 1797 / 2) < 10


def test_digits_read_from_scikit_learns_file_are_load_digits(monkeypatch):
    """The file read without importing scikit-learn, and load_digits where it is not as
    expected, give the same pixels and labels as scikit-learn's own loader."""
    load_digits = pytest.importorskip("sklearn.datasets").load_digits
    X_expected, y_expected = load_digits(return_X_y=True)
    X, y = data_module._read_digits()
    np.testing.assert_array_equal(X, X_expected)
    np.testing.assert_array_equal(y, y_expected)
    monkeypatch.setattr(data_module, "DIGITS_SHAPE", (1797, 66))    # the file "changed"
    X, y = data_module._read_digits()
    np.testing.assert_array_equal(X, X_expected)
    np.testing.assert_array_equal(y, y_expected)


def test_builtin_digits_without_scikit_learn_say_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)       # as if not installed
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[sklearn\]"'):
        load()


def test_builtin_digits_load_without_importing_scikit_learn():
    """Importing scikit-learn took 2 of the 2.6 s of ``fastmlp train``."""
    pytest.importorskip("sklearn")
    code = ("import sys; from fastmlp.data import load; load(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=root), check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- split

def labelled_rows(counts):
    """X whose row i is (i, i) and y with counts[c] rows of class c, shuffled."""
    y = np.random.default_rng(1).permutation(np.repeat(np.arange(len(counts)), counts))
    X = np.repeat(np.arange(len(y))[:, None], 2, axis=1)
    return X, y


def test_split_keeps_each_row_with_its_label():
    X, y = labelled_rows([30, 20, 50])
    X_a, y_a, X_b, y_b = train_test_split(X, y, 0.2, seed=3)
    assert len(X_a) + len(X_b) == len(X)
    np.testing.assert_array_equal(y_a, y[X_a[:, 0]])
    np.testing.assert_array_equal(y_b, y[X_b[:, 0]])
    assert sorted(np.concatenate([X_a[:, 0], X_b[:, 0]])) == list(range(len(X)))


def test_split_is_stratified():
    X, y = labelled_rows([100, 40, 60, 2, 3])
    _, y_a, _, y_b = train_test_split(X, y, 0.25, seed=0)
    np.testing.assert_array_equal(np.bincount(y_b), [25, 10, 15, 1, 1])
    np.testing.assert_array_equal(np.bincount(y_a), [75, 30, 45, 1, 2])


def test_split_gives_every_class_of_two_or_more_a_sample_on_each_side():
    X, y = labelled_rows([2, 2, 5, 1])
    _, y_a, _, y_b = train_test_split(X, y, 0.05, seed=0)
    assert set(y_b) == {0, 1, 2} and set(y_a) == {0, 1, 2, 3}


def test_split_is_deterministic_for_a_seed():
    X, y = labelled_rows([50, 50])
    first = train_test_split(X, y, 0.3, seed=7)
    again = train_test_split(X, y, 0.3, seed=7)
    other = train_test_split(X, y, 0.3, seed=8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], other[2])


def test_split_without_labels_or_stratification():
    X = np.arange(20).reshape(10, 2)
    X_a, y_a, X_b, y_b = train_test_split(X, None, 0.3, seed=0)
    assert y_a is None and y_b is None and len(X_b) == 3
    X, y = labelled_rows([10, 10])
    X_a, y_a, X_b, y_b = train_test_split(X, y, 0.3, seed=0, stratify=False)
    assert len(X_b) == 6
    np.testing.assert_array_equal(y_b, y[X_b[:, 0]])


def test_load_split_holds_out_part_of_data_without_a_test_set(tmp_path):
    rows = np.vstack([csv_rows(n=48, seed=s) for s in range(2)])     # 32 rows of each class
    data = load(write_csv(tmp_path / "d.csv", rows), split=0.25)
    assert len(data.X_train) == 72 and len(data.X_test) == 24
    np.testing.assert_array_equal(np.bincount(data.y_test), np.bincount(rows[:, 0]) // 4)


def test_load_split_refuses_data_with_its_own_test_set(tmp_path):
    write_mnist_dir(tmp_path / "mnist")
    assert "already holds a test set" in error_of(load, tmp_path / "mnist", split=0.2)
    with pytest.raises(ValueError, match="split"):
        load(split=1.5)


# ---------------------------------------------------------------- as_float_images

def test_as_float_images_scales_pixel_intensities_only():
    images = np.array([[[0, 255], [128, 1]]], dtype=np.uint8)
    np.testing.assert_allclose(as_float_images(images), [[0, 1, 128 / 255, 1 / 255]], rtol=1e-6)
    assert as_float_images(images).dtype == np.float32
    np.testing.assert_allclose(as_float_images(np.array([[0, 255]])), [[0, 1]])
    np.testing.assert_allclose(as_float_images(np.array([[0.0, 255.0]])), [[0, 1]])
    np.testing.assert_allclose(as_float_images(np.array([[0.2, 0.9]])), [[0.2, 0.9]], rtol=1e-6)
    np.testing.assert_allclose(as_float_images(np.array([[0, 1]])), [[0, 1]])
    np.testing.assert_allclose(as_float_images(np.array([[-3, 300]])), [[-3, 300]])


# ---------------------------------------------------------------- bad files

def test_csv_with_wrong_column_count_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("label,p0,p1\n1,2,3\n4,5\n")
    message = error_of(load, path)
    assert str(path) in message and "line 3" in message and "2 columns" in message


def test_csv_with_empty_line_names_it(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3\n\n4,5,6\n")
    message = error_of(load, path)
    assert str(path) in message and "line 2" in message and "empty" in message


@pytest.mark.parametrize("cell, shown", [("abc", "'abc'"), ("", "is empty"), ("7x", "'7x'")])
def test_csv_with_non_numeric_cell_names_file_line_and_column(tmp_path, cell, shown):
    path = tmp_path / "bad.csv"
    path.write_text(f"label,p0,p1\n1,2,3\n4,5,6\n7,8,{cell}\n")
    message = error_of(load, path)
    assert str(path) in message and "line 4" in message and "column 3" in message
    assert shown in message


@pytest.mark.parametrize("pixel", ["256", "-1", "nan"])
def test_csv_with_pixel_outside_0_255_names_file_and_line(tmp_path, pixel):
    path = tmp_path / "bad.csv"
    path.write_text(f"1,2,3\n4,{pixel},6\n")
    message = error_of(load, path)
    assert str(path) in message and "line 2" in message and "0..255" in message
    assert pixel in message and "column 2" in message


def test_csv_with_non_integer_label_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("1,2,3\n2.5,5,6\n")
    message = error_of(load, path)
    assert str(path) in message and "line 2" in message and "label" in message


def test_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n")
    assert "is empty" in error_of(load, path)


def test_truncated_gzip(tmp_path):
    images, _ = make_images(50)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    for call in (read_idx, load):
        message = error_of(call, path)
        assert str(path) in message and "truncated gzip" in message


def test_wrong_idx_magic(tmp_path):
    path = tmp_path / "images.idx"
    path.write_bytes(b"\x00\x00\x07\x03" + bytes(20))          # type byte 07 does not exist
    message = error_of(read_idx, path)
    assert str(path) in message and "not an IDX file" in message
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    message = error_of(load, path)
    assert str(path) in message and "not an IDX file" in message


def test_idx_data_shorter_than_its_header_says(tmp_path):
    images, _ = make_images(5)
    path = tmp_path / "images.idx"
    path.write_bytes(idx_bytes(images)[:-3])
    message = error_of(read_idx, path)
    assert str(path) in message and "truncated" in message


def test_image_and_label_count_mismatch_names_both_files(tmp_path):
    write_mnist_dir(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros(5, dtype=np.uint8))
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    for call in (lambda: load(tmp_path), lambda: load(images)):
        message = error_of(call)
        assert str(images) in message and str(labels) in message
        assert "6 images" in message and "5 labels" in message


def test_idx_images_without_labels(tmp_path):
    images, _ = make_images(3)
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    message = error_of(load, path)
    assert str(path) in message and "labels=" in message
    message = error_of(load, tmp_path)
    assert str(path) in message and "labels" in message


def test_npy_without_labels_names_the_files_it_looked_for(tmp_path):
    path = tmp_path / "X.npy"
    np.save(path, np.zeros((3, 4)))
    message = error_of(load, path)
    assert str(path) in message and "y.npy" in message and "labels=" in message


@pytest.mark.parametrize("images,labels", [("X.npy", "y.npy"), ("x_train.npy", "y_train.npy"),
                                           ("train_images.npy", "train_labels.npy"),
                                           ("big.npy", "big_labels.npy")])
def test_npy_images_are_mapped_with_the_labels_beside_them(tmp_path, images, labels):
    raw, y = make_images(6)
    np.save(tmp_path / images, raw)
    np.save(tmp_path / labels, y)
    data = load(tmp_path / images)
    assert isinstance(data.X_train, MappedRows) and data.X_train.shape == (6, 16)
    assert np.array_equal(data.X_train[:], as_float_images(raw))
    assert np.array_equal(data.y_train, y) and data.y_train.dtype == np.int64
    assert data.X_test is None
    split = load(tmp_path / images, split=0.5)
    assert isinstance(split.X_train, MappedRows) and len(split.X_train) + len(split.X_test) == 6
    assert np.array_equal(np.sort(np.r_[split.y_train, split.y_test]), np.sort(y))


def test_npy_labels_given_and_bad(tmp_path):
    raw, y = make_images(6)
    np.save(tmp_path / "a.npy", raw)
    np.save(tmp_path / "b.npy", y)
    assert np.array_equal(load(tmp_path / "a.npy", labels=tmp_path / "b.npy").y_train, y)
    np.save(tmp_path / "short.npy", y[:4])
    message = error_of(load, tmp_path / "a.npy", labels=tmp_path / "short.npy")
    assert "6 images" in message and "4 labels" in message
    np.save(tmp_path / "two.npy", np.zeros((6, 2)))
    assert "not 1-D labels" in error_of(load, tmp_path / "a.npy", labels=tmp_path / "two.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "a.npy").read_bytes()[:-10])
    assert "cut.npy" in error_of(load, tmp_path / "cut.npy", labels=tmp_path / "b.npy")
    np.save(tmp_path / "flat.npy", y)
    assert "flat.npy" in error_of(load, tmp_path / "flat.npy", labels=tmp_path / "b.npy")


def test_npz_without_x_and_y(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, images=np.zeros((3, 4)), targets=np.zeros(3))
    message = error_of(load, path)
    assert str(path) in message and "'images'" in message and "X=X, y=y" in message
    np.savez(path, X=np.zeros((3, 4)))
    assert "no 'y'" in error_of(load, path)
    np.savez(path, X=np.zeros((3, 4)), y=np.zeros(2))
    assert "3 images but 2 labels" in error_of(load, path)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.csv"
    message = error_of(load, path)
    assert str(path) in message and "no such file" in message


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.json"
    path.write_text("{}")
    message = error_of(load, path)
    assert str(path) in message and "unknown format" in message and ".npz" in message


def test_directory_without_idx_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    message = error_of(load, tmp_path)
    assert str(tmp_path) in message and "train-images-idx3-ubyte" in message


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


# ---------------------------------------------------------------- real data

def test_real_mnist_test_set():
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real MNIST test set not found at {MNIST_DIR}")
    data = load(MNIST_DIR)
    assert data.X_train.shape == (10000, 784) and data.X_test is None
    assert data.X_train.dtype == np.float32
    assert data.X_train.min() == 0 and data.X_train.max() == 1
    np.testing.assert_array_equal(
        np.bincount(data.y_train), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
