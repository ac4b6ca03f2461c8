"""Training, evaluating and predicting from memory-mapped files (fastmlp.mapped): the same bits as
from the array in memory, a slice at a time, with clear errors for bad files."""

import numpy as np
import pytest
from helpers import blobs

from fastmlp import MLP, mapped, reference
from fastmlp.data import as_float_images
from fastmlp.engine.kernels import gather_convert
from fastmlp.mapped import MappedRows


@pytest.fixture
def small_slices(monkeypatch):
    """Slices of a few rows and spans of a few rows: every path through take() runs."""
    monkeypatch.setattr(mapped, "MAPPED_SLICE_BYTES", 40 * 4 * 16)
    monkeypatch.setattr(mapped, "MAPPED_SPAN_BYTES", 16 * 7)


def pixel_file(tmp_path, n=150, features=16, seed=0):
    """(path of a uint8 .npy file, its images as the loaders give them, labels)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    raw = np.clip(rng.normal(60 + 60 * y[:, None], 40, (n, features)), 0, 255).astype(np.uint8)
    path = tmp_path / "x.npy"
    np.save(path, raw)
    return path, as_float_images(raw), y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kwargs", [
    {"batch_size": 8},
    {"batch_size": None},
    {"batch_size": 5, "validation_split": 0.2},
    {"batch_size": 8, "replacement": True},
    {"batch_size": 8, "shuffle_block": 32},
    {"batch_size": 8, "sample_weight": np.linspace(0.5, 2, 150)},
], ids=["minibatch", "full", "val-split", "replacement", "shuffle-block", "weights"])
def test_fit_from_a_pixel_file_equals_fit_from_the_loaded_array(tmp_path, small_slices, dtype,
                                                                  kwargs):
    path, X, y = pixel_file(tmp_path)
    a, b = (MLP([16, 12, 3], dtype=dtype, seed=3) for _ in range(2))
    history_a = a.fit(X, y, epochs=2, lr=0.05, **kwargs)
    history_b = b.fit(MappedRows.open(path), y, epochs=2, lr=0.05, **kwargs)
    assert np.array_equal(a._flat, b._flat)
    # the epoch's loss adds up per compiled call, and the calls are cut otherwise from a file
    np.testing.assert_allclose(history_a["loss"], history_b["loss"], rtol=1e-12)
    if "validation_split" in kwargs:
        np.testing.assert_allclose(history_a["val_loss"], history_b["val_loss"], rtol=1e-6)


@pytest.mark.parametrize("engine", ["numba", "numpy"])
def test_a_plain_memmap_trains_unscaled_as_the_array_in_memory(tmp_path, small_slices, engine):
    X, y = blobs(n=120, n_features=5)
    np.save(tmp_path / "f.npy", X.astype(np.float64))
    a, b = (MLP([5, 8, 3], seed=1, engine=engine) for _ in range(2))
    a.fit(X, y, epochs=2, batch_size=16)
    b.fit(np.load(tmp_path / "f.npy", mmap_mode="r"), y, epochs=2, batch_size=16)
    assert np.array_equal(a._flat, b._flat)


def test_predict_evaluate_and_score_from_a_file(tmp_path, small_slices):
    path, X, y = pixel_file(tmp_path)
    model = MLP([16, 12, 3], seed=0)
    model.fit(X, y, epochs=3, batch_size=10, lr=0.05)
    Xm = MappedRows.open(path)
    # rows in chunks of another size: BLAS may round a row's products otherwise
    np.testing.assert_allclose(model.predict_proba(Xm), model.predict_proba(X), rtol=1e-5)
    assert np.array_equal(model.predict(Xm), model.predict(X))
    got, want = model.evaluate(Xm, y), model.evaluate(X, y)
    assert got["accuracy"] == want["accuracy"]
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
    assert model.score(Xm, y) == model.score(X, y)


def test_validation_data_from_a_file(tmp_path, small_slices):
    path, X, y = pixel_file(tmp_path)
    a, b = (MLP([16, 12, 3], seed=0) for _ in range(2))
    ha = a.fit(X[:100], y[:100], epochs=2, validation_data=(X[100:], y[100:]))
    hb = b.fit(X[:100], y[:100], epochs=2,
               validation_data=(MappedRows.open(path).subset(np.arange(100, 150)), y[100:]))
    np.testing.assert_allclose(ha["val_loss"], hb["val_loss"], rtol=1e-6)
    assert ha["val_accuracy"] == hb["val_accuracy"]


def test_checkpoint_resume_from_a_file_is_bitwise(tmp_path, small_slices):
    path, _, y = pixel_file(tmp_path)
    whole = MLP([16, 12, 3], seed=2)
    whole.fit(MappedRows.open(path), y, epochs=3, batch_size=10)
    def crash(model, epoch, logs):
        if epoch == 2:
            raise RuntimeError("a crash after the checkpoint of epoch 1")

    with pytest.raises(RuntimeError, match="a crash"):
        MLP([16, 12, 3], seed=2).fit(MappedRows.open(path), y, epochs=3, batch_size=10,
                                     checkpoint=tmp_path / "c.npz", callbacks=[crash])
    resumed = MLP([16, 12, 3], seed=2)
    resumed.fit(MappedRows.open(path), y, epochs=3, batch_size=10, resume=tmp_path / "c.npz")
    assert np.array_equal(whole._flat, resumed._flat)
    other = np.load(path)
    other[0, 0] ^= 1
    np.save(tmp_path / "other.npy", other)
    with pytest.raises(ValueError, match="data"):
        MLP([16, 12, 3], seed=2).fit(MappedRows.open(tmp_path / "other.npy"), y, epochs=3,
                                     batch_size=10, resume=tmp_path / "c.npz")


def test_shuffle_block_visits_blocks_whole_in_a_random_order():
    order = MLP([4, 3, 2], seed=0)._epoch_order(100, 32, False, 10)
    assert np.array_equal(order, MLP([4, 3, 2], seed=0)._epoch_order(100, 32, False, 10))
    blocks = [set(range(s, min(s + 32, 100))) for s in range(0, 100, 32)]
    seen, k = [], 0
    while k < 100:
        b = int(order[k]) // 32
        assert set(order[k:k + len(blocks[b])].tolist()) == blocks[b]
        seen.append(b)
        k += len(blocks[b])
    assert sorted(seen) == [0, 1, 2, 3]
    assert list(order) != sorted(order)


@pytest.mark.parametrize("kwargs,match", [
    ({"shuffle_block": 0}, "shuffle_block"),
    ({"shuffle_block": -1}, "shuffle_block"),
    ({"shuffle_block": 10, "replacement": True}, "shuffle_block applies"),
    ({"shuffle_block": 10, "shuffle": False}, "shuffle_block applies"),
])
def test_bad_shuffle_block(kwargs, match):
    X, y = blobs(n=30)
    with pytest.raises(ValueError, match=match):
        MLP([4, 3, 3]).fit(X, y, epochs=1, **kwargs)


def test_nan_in_a_float_file_is_refused_before_training(tmp_path, small_slices):
    X, y = blobs(n=60)
    X[47, 2] = np.nan
    np.save(tmp_path / "f.npy", X)
    model = MLP([4, 5, 3], seed=0)
    before = model._flat.copy()
    with pytest.raises(ValueError, match=r"NaN or Inf \(first at row 47, column 2"):
        model.fit(np.load(tmp_path / "f.npy", mmap_mode="r"), y, epochs=1)
    assert np.array_equal(model._flat, before)
    X = X.astype(np.float64)
    X[47, 2] = 1e39
    np.save(tmp_path / "g.npy", X)
    with pytest.raises(ValueError, match=r"X\[47, 2\] = .* too large for float32"):
        model.fit(np.load(tmp_path / "g.npy", mmap_mode="r"), y, epochs=1)


def test_mapped_shape_errors(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((10, 6), np.uint8))
    with pytest.raises(ValueError, match="6 features but the model's input layer has 4"):
        MLP([4, 3, 2]).fit(MappedRows.open(tmp_path / "f.npy"), np.arange(10) % 2)
    np.save(tmp_path / "e.npy", np.zeros((0, 4), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        MLP([4, 3, 2]).fit(np.load(tmp_path / "e.npy", mmap_mode="r"), np.zeros(0))
    np.save(tmp_path / "s.npy", np.array([["a", "b"]]))
    with pytest.raises(TypeError, match="real numbers"):
        MappedRows.open(tmp_path / "s.npy")
    with pytest.raises(TypeError, match="memory-mapped array"):
        MappedRows(np.zeros(5))


def test_images_files_are_flattened_and_pixels_auto(tmp_path):
    raw = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    np.save(tmp_path / "u.npy", raw)
    np.save(tmp_path / "i.npy", raw.astype(np.int16))
    u, i = MappedRows.open(tmp_path / "u.npy"), MappedRows.open(tmp_path / "i.npy")
    assert u.shape == (2, 12) and u.pixels and not i.pixels
    assert np.array_equal(u.take(np.array([1, 0]), np.float32), as_float_images(raw)[[1, 0]])
    assert np.array_equal(i.take(np.arange(2), np.float64), raw.reshape(2, 12).astype(np.float64))
    assert "pixels=True" in repr(u)


@pytest.mark.parametrize("src_dtype", ["uint8", "int16", "float64", "float32"])
@pytest.mark.parametrize("dst_dtype", ["float32", "float64"])
@pytest.mark.parametrize("pixels", [False, True])
def test_gather_convert_matches_its_twin(src_dtype, dst_dtype, pixels):
    rng = np.random.default_rng(0)
    src = (rng.random((40, 9)) * 255).astype(src_dtype)
    rows = rng.integers(0, 40, 25)
    at = rng.permutation(25)
    got = np.full((25, 9), -1, dst_dtype)
    want = got.copy()
    gather_convert(got, src, rows, at, np.bool_(pixels))
    reference.gather_convert(want, src, rows, at, pixels)
    assert np.array_equal(got, want)


def test_every_uint8_value_converts_as_the_loaders_do():
    values = np.arange(256, dtype=np.uint8).reshape(1, -1)
    got = np.empty((1, 256), np.float32)
    gather_convert(got, values, np.zeros(1, np.int64), np.zeros(1, np.int64), np.bool_(True))
    assert np.array_equal(got, as_float_images(values))


def test_subsets_out_of_range_are_refused(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((10, 4), np.uint8))
    X = MappedRows.open(tmp_path / "f.npy")
    with pytest.raises(IndexError, match="row 10 is out of range for 10 rows"):
        X.subset([0, 10])
    with pytest.raises(IndexError, match="row -1"):
        X.subset(np.array([-1]))
    with pytest.raises(TypeError, match="row indices"):
        X.subset([0.5])
    with pytest.raises(IndexError, match="row 3 is out of range for 3 rows"):
        X.subset([1, 2, 3]).subset([3])


def test_a_copy_on_write_memmap_keeps_its_changes(tmp_path, small_slices):
    X, y = blobs(n=60)
    np.save(tmp_path / "f.npy", X)
    mapped_copy = np.load(tmp_path / "f.npy", mmap_mode="c")
    mapped_copy[:, 0] = 7.0     # changed in memory only: madvise(DONTNEED) would drop it
    MLP([4, 5, 3]).fit(mapped_copy, y, epochs=2)
    assert (mapped_copy[:, 0] == 7.0).all()
    assert np.array_equal(np.load(tmp_path / "f.npy"), X)
