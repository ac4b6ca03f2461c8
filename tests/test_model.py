"""The MLP class: training, labels, heads, optimizers, determinism, real data, files, validation.

Every model-level test runs on both engines, the NumPy reference and the compiled one (the
``engine`` fixture of conftest.py).
"""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest

import fastmlp
from fastmlp import MLP, ModelFileError, NotFittedError

from helpers import MNIST_DIR, blobs, noisy_problem

# Measured with the NumPy engine (seeds 0-2): digits 0.93-0.95 after 5 epochs, MNIST 8000/2000
# 0.94-0.955 after 5 epochs. The thresholds leave a margin for other seeds and engines.
DIGITS_MIN_ACCURACY = 0.90
MNIST_MIN_ACCURACY = 0.92


def flat_params(model):
    return np.concatenate([t.ravel() for pair in model.params for t in pair])


# ---------------------------------------------------------------- fitting


def test_fit_returns_history_and_loss_decreases(engine):
    X, y = blobs()
    model = MLP([4, 16, 3], engine=engine, seed=0)
    history = model.fit(X, y, epochs=8, batch_size=16, lr=0.1)
    for key in ("epoch", "loss", "accuracy", "lr", "seconds"):
        assert len(history[key]) == 8, key
    assert history["epoch"] == list(range(1, 9))
    assert all(s >= 0 for s in history["seconds"])
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["accuracy"][-1] >= 0.95
    assert model.score(X, y) >= 0.95
    assert model.history_ == history


def test_fit_again_continues_from_current_weights(engine):
    X, y = blobs(seed=1, spread=1.5)
    model = MLP([4, 8, 3], engine=engine, seed=3)
    first = model.fit(X, y, epochs=5, batch_size=32, lr=0.05, momentum=0.9)
    second = model.fit(X, y, epochs=2, batch_size=32, lr=0.05, momentum=0.9)
    drop = first["loss"][0] - first["loss"][-1]
    assert drop > 0
    # The second call starts near where the first ended, not from scratch.
    assert abs(second["loss"][0] - first["loss"][-1]) < 0.25 * drop
    assert model.history_["epoch"] == [1, 2, 3, 4, 5, 6, 7]
    # With the same optimizer the momentum and the shuffling stream carry over: 5 + 2 epochs
    # are exactly 7 epochs in one call.
    once = MLP([4, 8, 3], engine=engine, seed=3)
    once.fit(X, y, epochs=7, batch_size=32, lr=0.05, momentum=0.9)
    np.testing.assert_array_equal(flat_params(once), flat_params(model))


def test_params_readable_and_assignable(engine):
    model = MLP([3, 4, 2], engine=engine, seed=0)
    params = model.params
    assert [(W.shape, b.shape) for W, b in params] == [((3, 4), (4,)), ((4, 2), (2,))]
    assert all(W.dtype == np.float32 for W, _ in params)
    new = [(np.full((3, 4), 0.5), np.arange(4.0)), (np.ones((4, 2)), np.array([1.0, -1.0]))]
    model.params = new
    for (W, b), (W_new, b_new) in zip(model.params, new):
        np.testing.assert_array_equal(W, W_new)
        np.testing.assert_array_equal(b, b_new)
    # Assigning weights makes the model usable without fit: check predict against numpy.
    X = np.array([[1.0, 0.0, -1.0], [0.2, 0.3, 0.4]], dtype=np.float32)
    h = np.maximum(X @ new[0][0] + new[0][1], 0)
    z = h @ new[1][0] + new[1][1]
    p = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(model.predict_proba(X), p / p.sum(1, keepdims=True), rtol=1e-5)
    # Views write through.
    model.params[0][1][0] = 9.0
    assert model.params[0][1][0] == 9.0
    with pytest.raises(ValueError, match=r"params\[0\] W has shape \(4, 3\)"):
        model.params = [(np.ones((4, 3)), np.zeros(4)), new[1]]
    with pytest.raises(ValueError, match=r"params\[1\] b has shape"):
        model.params = [new[0], (np.ones((4, 2)), np.zeros(3))]
    with pytest.raises(ValueError, match="needs 2"):
        model.params = [new[0]]
    with pytest.raises(ValueError, match="finite"):
        model.params = [(np.full((3, 4), np.nan), np.zeros(4)), new[1]]


# ---------------------------------------------------------------- labels, probabilities, scores


@pytest.mark.parametrize("labels", [
    np.array(["cat", "dog", "emu"]),
    np.array([-7, 3, 1000]),
    np.array([2.0, 4.0, 8.0]),           # whole-number floats are labels too
])
def test_labels_may_be_strings_or_arbitrary_ints(engine, labels):
    X, idx = blobs()
    y = labels[idx]
    model = MLP([4, 16, 3], engine=engine)
    model.fit(X, y, epochs=5, batch_size=16, lr=0.1)
    np.testing.assert_array_equal(model.classes_, np.sort(labels))
    pred = model.predict(X)
    assert pred.dtype.kind == np.asarray(model.classes_).dtype.kind
    assert set(pred.tolist()) <= set(model.classes_.tolist())
    assert np.mean(pred == y) >= 0.95
    assert model.score(X, y) == pytest.approx(np.mean(pred == y))


def test_int_labels_subset_of_outputs_keep_their_meaning(engine):
    X, y = blobs(n_classes=3)
    model = MLP([4, 8, 5], engine=engine)          # 5 outputs, labels 0..2 only
    model.fit(X, y, epochs=5, batch_size=16, lr=0.1)
    np.testing.assert_array_equal(model.classes_, np.arange(5))
    assert model.predict_proba(X).shape == (len(X), 5)
    assert model.score(X, y) >= 0.95


def test_predict_proba_evaluate_score(engine):
    X, y = blobs()
    model = MLP([4, 16, 3], engine=engine)
    model.fit(X, y, epochs=5, batch_size=16, lr=0.1)
    proba = model.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert (proba >= 0).all()
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    result = model.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"}
    p_true = proba[np.arange(len(y)), y].astype(np.float64)
    assert result["loss"] == pytest.approx(-np.mean(np.log(p_true)), rel=1e-4)
    assert result["accuracy"] == pytest.approx(np.mean(proba.argmax(1) == y))
    assert model.score(X, y) == result["accuracy"]
    # Inputs may be ints, float64, Fortran-ordered or read-only.
    Xf = np.asfortranarray(X.astype(np.float64))
    Xf.setflags(write=False)
    np.testing.assert_allclose(model.predict_proba(Xf), proba, rtol=1e-6)


# ---------------------------------------------------------------- heads


@pytest.mark.parametrize("two_d", [False, True])
def test_regression_identity_head(engine, two_d):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    target = np.sin(X[:, 0]) + 0.5 * X[:, 1] * X[:, 2]
    Y = np.c_[target, X[:, 0] - X[:, 1]] if two_d else target
    n_out = 2 if two_d else 1
    model = MLP([3, 32, n_out], output="identity", engine=engine)
    history = model.fit(X, Y, epochs=40, batch_size=16, lr=0.05, momentum=0.9)
    assert "accuracy" not in history
    # Half squared error summed over outputs; predicting the mean would score 0.5 * total variance.
    baseline = 0.5 * np.var(Y.reshape(len(X), -1), axis=0).sum()
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["loss"][-1] < 0.1 * baseline
    pred = model.predict(X)
    assert pred.shape == Y.shape
    assert model.score(X, Y) > 0.95       # R^2; measured 0.988 (1-D) and 0.996 (2-D)
    assert set(model.evaluate(X, Y)) == {"loss"}
    with pytest.raises(ValueError, match="predict_proba is for classifiers"):
        model.predict_proba(X)


def test_sigmoid_head(engine):
    X, y = blobs(n_classes=3)
    model = MLP([4, 16, 3], output="sigmoid", activation="sigmoid", engine=engine)
    history = model.fit(X, y, epochs=20, batch_size=16, lr=2.0)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    proba = model.predict_proba(X)
    assert ((proba > 0) & (proba < 1)).all()
    assert model.score(X, y) >= 0.95
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))


def multilabel(n=240, seed=0):
    """Blobs with three overlapping 0/1 labels per sample (multilabel targets)."""
    X, idx = blobs(n=n, n_classes=4, seed=seed)
    Y = np.stack([idx == 0, (idx == 1) | (idx == 2), idx >= 2], axis=1).astype(np.int64)
    return X, Y


def test_logistic_head_multilabel(engine):
    X, Y = multilabel()
    model = MLP([4, 16, 3], output="logistic", engine=engine, dtype="float64", seed=1)
    history = model.fit(X, Y, epochs=20, batch_size=16, lr=0.1, validation_split=0.25)
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    assert {"accuracy", "val_loss", "val_accuracy"} <= set(history)
    proba = model.predict_proba(X)
    assert proba.shape == Y.shape and ((proba > 0) & (proba < 1)).all()
    pred = model.predict(X)
    assert pred.shape == Y.shape and pred.dtype == np.int64 and set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba > 0.5).astype(int))
    subset = float(np.mean(np.all(pred == Y, axis=1)))
    assert model.score(X, Y) == pytest.approx(subset) and subset >= 0.95
    # binary cross-entropy summed over labels, averaged over samples
    bce = -np.mean(np.sum(Y * np.log(proba) + (1 - Y) * np.log(1 - proba), axis=1))
    result = model.evaluate(X, Y.astype(bool))          # bool and float 0/1 matrices are accepted
    assert result == {"loss": pytest.approx(bce, rel=1e-9), "accuracy": pytest.approx(subset)}
    assert model.classes_ is None and model.is_classifier


def test_save_load_round_trip_logistic(engine, tmp_path):
    X, Y = multilabel(n=60)
    model = MLP([4, 8, 3], output="logistic", engine=engine, seed=2)
    model.fit(X, Y, epochs=2, batch_size=16, lr=0.1)
    model.save(tmp_path / "multilabel.npz")
    loaded = MLP.load(tmp_path / "multilabel.npz")
    assert loaded.get_config() == model.get_config() and loaded.output == "logistic"
    np.testing.assert_array_equal(flat_params(loaded), flat_params(model))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.classes_ is None and loaded.score(X, Y) == model.score(X, Y)
    before = flat_params(loaded)
    loaded.fit(X, Y, epochs=1, batch_size=16)           # a loaded model trains on
    assert not np.array_equal(flat_params(loaded), before)


# ---------------------------------------------------------------- optimizers and batching


@pytest.mark.parametrize("kwargs", [
    dict(optimizer="sgd", lr=0.1),
    dict(optimizer="sgd", lr=0.05, momentum=0.9),
    dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True),
    dict(optimizer="adam", lr=0.01),
    dict(optimizer="adam", lr=0.01, weight_decay=1e-4),
    dict(optimizer="sgd", lr=0.5, batch_size=None),
    dict(optimizer="sgd", lr=0.1, replacement=True),
    dict(optimizer="sgd", lr=0.1, shuffle=False),
    dict(optimizer="sgd", lr=0.1, lr_schedule={0: 0.2, 5: 0.05}),
    dict(optimizer="sgd", lr=0.2, lr_schedule="cosine"),
    dict(optimizer="sgd", lr=0.2, lr_schedule="invscaling"),
], ids=["sgd", "momentum", "nesterov", "adam", "adam-decay", "full-batch", "replacement",
        "no-shuffle", "piecewise", "cosine", "invscaling"])
def test_optimizers_and_batching_learn(engine, kwargs):
    X, y = blobs(spread=1.0)
    kwargs = dict(kwargs)
    batch_size = kwargs.pop("batch_size", 16)
    epochs = 40 if batch_size is None else 10
    model = MLP([4, 16, 3], engine=engine, seed=1)
    history = model.fit(X, y, epochs=epochs, batch_size=batch_size, **kwargs)
    assert history["loss"][-1] < 0.5 * history["loss"][0], kwargs
    assert model.score(X, y) >= 0.9, kwargs
    if "lr_schedule" in kwargs and isinstance(kwargs["lr_schedule"], dict):
        assert history["lr"] == [0.2] * 5 + [0.05] * 5


def test_full_batch_is_one_update_per_epoch(engine):
    """A full batch takes X's rows in order and draws no order from the model's generator."""
    X, y = blobs(n=60)
    a = MLP([4, 5, 3], engine=engine, seed=0)
    b = MLP([4, 5, 3], engine=engine, seed=0)
    untouched = MLP([4, 5, 3], engine=engine, seed=0)._rng.bit_generator.state
    a.fit(X, y, epochs=2, batch_size=None, lr=0.1)
    b.fit(X, y, epochs=2, batch_size=len(X), lr=0.1, shuffle=False)
    assert np.array_equal(flat_params(a), flat_params(b))
    assert a._rng.bit_generator.state == untouched
    c = MLP([4, 5, 3], engine=engine, seed=0)
    c.fit(X, y, epochs=2, batch_size=len(X) - 1, lr=0.1)
    assert c._rng.bit_generator.state != untouched


def test_momentum_is_not_an_optimizer_name():
    """Momentum and Nesterov are options of optimizer='sgd' (momentum=, nesterov=)."""
    X, y = blobs(n=30)
    with pytest.raises(ValueError, match="'sgd', 'adam'"):
        MLP([4, 3], engine="numpy").fit(X, y, optimizer="momentum")


# ---------------------------------------------------------------- determinism


def test_same_seed_bitwise_identical_different_seed_differs(engine):
    X, y = blobs(spread=1.0)

    def trained(seed):
        model = MLP([4, 16, 3], engine=engine, seed=seed)
        model.fit(X, y, epochs=3, batch_size=16, lr=0.1, momentum=0.9)
        return flat_params(model)

    first = trained(5)
    np.testing.assert_array_equal(first, trained(5))
    assert not np.array_equal(first, trained(6))
    assert not np.array_equal(flat_params(MLP([4, 16, 3], seed=5)), flat_params(MLP([4, 16, 3], seed=6)))


def test_float64_models(engine):
    X, y = blobs()
    model = MLP([4, 8, 3], dtype="float64", engine=engine)
    model.fit(X, y, epochs=3, batch_size=16, lr=0.1)
    assert all(W.dtype == np.float64 for W, _ in model.params)
    assert model.predict_proba(X).dtype == np.float64
    assert model.score(X, y) >= 0.9


# ---------------------------------------------------------------- real data


def test_digits_accuracy(engine):
    from sklearn.datasets import load_digits

    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    order = np.random.default_rng(0).permutation(len(X))     # paired shuffle
    X, y = X[order], y[order]
    model = MLP([64, 32, 10], engine=engine, seed=0)
    model.fit(X[:1400], y[:1400], epochs=5, batch_size=32, lr=0.1)
    accuracy = model.score(X[1400:], y[1400:])
    assert accuracy >= DIGITS_MIN_ACCURACY, f"digits held-out accuracy {accuracy:.3f}"


def read_idx(path, header_bytes):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    return raw[:header_bytes], np.frombuffer(raw, dtype=np.uint8, offset=header_bytes)


def test_mnist_accuracy(engine):
    images_path = MNIST_DIR / "t10k-images-idx3-ubyte.gz"
    labels_path = MNIST_DIR / "t10k-labels-idx1-ubyte.gz"
    if not (images_path.exists() and labels_path.exists()):
        pytest.skip(f"the MNIST test set is not available at {MNIST_DIR} "
                    f"(t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz)")
    header, pixels = read_idx(images_path, 16)
    assert np.frombuffer(header, ">u4").tolist() == [2051, 10000, 28, 28]
    header, y = read_idx(labels_path, 8)
    assert np.frombuffer(header, ">u4").tolist() == [2049, 10000]
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    X = pixels.reshape(10000, 784).astype(np.float32) / 255.0

    order = np.random.default_rng(0).permutation(len(X))     # same permutation for X and y
    X, y = X[order], y[order]
    model = MLP([784, 128, 10], engine=engine, seed=0)
    model.fit(X[:8000], y[:8000], epochs=5, batch_size=64, lr=0.1, momentum=0.9)
    accuracy = model.score(X[8000:], y[8000:])
    assert accuracy >= MNIST_MIN_ACCURACY, f"MNIST held-out accuracy {accuracy:.4f}"


# ---------------------------------------------------------------- save / load


def trained_classifier(engine, labels=None):
    X, idx = blobs()
    y = idx if labels is None else np.asarray(labels)[idx]
    model = MLP([4, 8, 3], engine=engine, seed=2)
    model.fit(X, y, epochs=2, batch_size=16, lr=0.1)
    return model, X, y


@pytest.mark.parametrize("labels", [None, ["ant", "bee", "cow"], [10, 20, 30]])
def test_save_load_round_trip_is_exact(engine, tmp_path, labels):
    model, X, y = trained_classifier(engine, labels)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(flat_params(loaded), flat_params(model))
    assert loaded.classes_.dtype == model.classes_.dtype
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert loaded.history_ == model.history_
    # A loaded model trains on like the original.
    loaded.fit(X, y, epochs=1, batch_size=16)
    assert os.listdir(tmp_path) == ["model.npz"]


def test_save_load_regression_keeps_target_shape(engine, tmp_path):
    X = np.random.default_rng(0).normal(size=(50, 2))
    model = MLP([2, 4, 1], output="identity", engine=engine, dtype="float64")
    model.fit(X, X[:, 0] - X[:, 1], epochs=2, batch_size=10, lr=0.05)
    model.save(str(tmp_path / "reg.npz"))           # str paths work too
    loaded = MLP.load(str(tmp_path / "reg.npz"))
    assert loaded.predict(X).shape == (50,)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.classes_ is None


def test_save_is_atomic_and_overwrites(tmp_path):
    model, X, _ = trained_classifier("numpy")
    path = tmp_path / "model.npz"
    (tmp_path / "other.txt").write_text("keep me")
    model.save(path)
    model.params = [(W * 0, b * 0) for W, b in model.params]
    model.save(path)                                  # overwrite in place
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "other.txt"]   # no temp files left
    assert (flat_params(MLP.load(path)) == 0).all()
    # A failed write leaves the old file intact and no temp file behind.
    with pytest.raises(TypeError):
        fastmlp.io.write_npz_atomic(path, {"bad": object()}, {})
    assert sorted(os.listdir(tmp_path)) == ["model.npz", "other.txt"]
    assert (flat_params(MLP.load(path)) == 0).all()


def saved_bytes(tmp_path):
    model, _, _ = trained_classifier("numpy")
    model.save(tmp_path / "good.npz")
    return (tmp_path / "good.npz").read_bytes()


def test_load_truncated_file(tmp_path):
    data = saved_bytes(tmp_path)
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated") as info:
        MLP.load(bad)
    assert isinstance(info.value, ValueError)
    assert "truncated.npz" in str(info.value)


@pytest.mark.parametrize("content", [
    b"layers: [4, 8, 3]\nthis is a text file, not a model\n",
    b"",
    b"\x93NUMPY",                                  # the start of a .npy header
], ids=["text", "empty", "npy-start"])
def test_load_non_npz_file(tmp_path, content):
    bad = tmp_path / "model.npz"
    bad.write_bytes(content)
    with pytest.raises(ModelFileError, match="not a .npz file"):
        MLP.load(bad)


def test_load_npy_file_renamed(tmp_path):
    bad = tmp_path / "model.npz"
    with open(bad, "wb") as f:
        np.save(f, np.arange(5.0))
    with pytest.raises(ModelFileError, match="not a .npz file"):
        MLP.load(bad)


def test_load_foreign_npz(tmp_path):
    bad = tmp_path / "foreign.npz"
    np.savez(bad, weights=np.ones(3), bias=np.zeros(2))
    with pytest.raises(ModelFileError, match="not a fastmlp model"):
        MLP.load(bad)
    np.savez(bad, config=np.array(json.dumps({"format": "something-else"})))
    with pytest.raises(ModelFileError, match="not a fastmlp model"):
        MLP.load(bad)


def test_load_refuses_pickles(tmp_path):
    bad = tmp_path / "pickled.npz"
    np.savez(bad, config=np.array(json.dumps({"format": "fastmlp-model", "format_version": 1})),
             params=np.array([{"payload": "runs code on load"}], dtype=object))
    with pytest.raises(ModelFileError, match="pickle"):
        MLP.load(bad)


def test_load_newer_format_asks_to_upgrade(tmp_path):
    model, _, _ = trained_classifier("numpy")
    model.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    config = json.loads(str(arrays.pop("config")))
    config["format_version"] = 999
    np.savez(tmp_path / "future.npz", config=np.array(json.dumps(config)), **arrays)
    with pytest.raises(ModelFileError, match="[Uu]pgrade"):
        MLP.load(tmp_path / "future.npz")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here.npz"):
        MLP.load(tmp_path / "nothing-here.npz")


# ---------------------------------------------------------------- validation


def _fit(X, y, layers=(4, 8, 3), **kwargs):
    return lambda engine: MLP(list(layers), engine=engine).fit(X, y, **{"epochs": 1, "batch_size": 8, **kwargs})


_X, _y = blobs(n=30)
_X_nan = _X.copy()
_X_nan[3, 2] = np.nan

VALIDATION_CASES = [
    ("nan-in-X", _fit(_X_nan, _y), ValueError, r"NaN or Inf \(first at row 3, column 2"),
    ("length-mismatch", _fit(_X, _y[:-1]), ValueError, "X has 30 samples but y has 29"),
    ("label-2.5", _fit(_X, np.r_[_y[:-1], 2.5]), ValueError, "2.5 is not a whole number"),
    ("single-class", _fit(_X, np.zeros(30, int)), ValueError, "single class"),
    ("empty-X", _fit(np.zeros((0, 4)), np.zeros(0, int)), ValueError, "X is empty"),
    ("1-D-X", _fit(_X[:, 0], _y), ValueError, r"must be 2-D .*reshape"),
    ("wrong-features", _fit(_X[:, :3], _y), ValueError, "3 features but the model's input layer has 4"),
    ("string-X", _fit(np.full((30, 4), "a"), _y), TypeError, "real numbers"),
    ("lr-zero", _fit(_X, _y, lr=0.0), ValueError, r"lr must be in \(0"),
    ("lr-negative", _fit(_X, _y, lr=-0.1), ValueError, r"lr must be in \(0"),
    ("lr-string", _fit(_X, _y, lr="0.1"), TypeError, "lr must be a number"),
    ("batch-size-0", _fit(_X, _y, batch_size=0), ValueError, "batch_size must be in"),
    ("epochs-0", _fit(_X, _y, epochs=0), ValueError, "epochs must be in"),
    ("epochs-float", _fit(_X, _y, epochs=2.5), TypeError, "epochs must be an integer"),
    ("rellu", lambda engine: MLP([4, 8, 3], activation="rellu", engine=engine), ValueError,
     "activation='rellu' is not supported.*Did you mean 'relu'"),
    ("unknown-output", lambda engine: MLP([4, 3], output="softmx", engine=engine), ValueError,
     "Did you mean 'softmax'"),
    ("bad-layers", lambda engine: MLP([4, 0, 3], engine=engine), ValueError, r"layers\[1\] = 0"),
    ("predict-before-fit", lambda engine: MLP([4, 8, 3], engine=engine).predict(_X), NotFittedError,
     "not been trained"),
    ("too-many-string-classes", _fit(_X, np.array(["a", "b", "c", "d", "e"])[np.arange(30) % 5]),
     ValueError, r"y has 5 classes .* output layer has 3 units"),
    ("unknown-label-at-evaluate", None, ValueError, "not one of the model's classes"),
    ("logistic-1-D-labels", lambda engine: MLP([4, 3], output="logistic", engine=engine).fit(_X, _y),
     ValueError, r"shape \(30,\) but output='logistic' with 3 outputs.*use output='softmax'"),
    ("logistic-wrong-width", lambda engine: MLP([4, 3], output="logistic", engine=engine).fit(
        _X, np.eye(3, dtype=int)[_y][:, :2]), ValueError, r"shape \(30, 2\) .* \(n_samples, 3\)"),
    ("logistic-not-0-1", lambda engine: MLP([4, 3], output="logistic", engine=engine).fit(
        _X, 2 * np.eye(3, dtype=int)[_y]), ValueError, r"y\[0, 0\] = 2; .* 0s and 1s only"),
    ("logistic-length-mismatch", lambda engine: MLP([4, 3], output="logistic", engine=engine).fit(
        _X, np.eye(3)[_y][:-1]), ValueError, "X has 30 samples but y has 29"),
]


@pytest.mark.parametrize("name,action,error,pattern", VALIDATION_CASES, ids=[c[0] for c in VALIDATION_CASES])
def test_validation_errors(engine, name, action, error, pattern):
    if action is None:       # a case that needs a trained model
        model = MLP([4, 8, 3], engine=engine)
        model.fit(_X, _y, epochs=1, batch_size=8)
        action = lambda engine: model.evaluate(_X, np.r_[_y[:-1], 7])  # noqa: E731
    with pytest.raises(error, match=pattern):
        action(engine)


def test_not_fitted_error_is_a_value_error():
    assert issubclass(NotFittedError, ValueError)
    assert issubclass(ModelFileError, ValueError)
    with pytest.raises(NotFittedError):
        MLP([4, 3], engine="numpy").predict_proba(_X)


# ---------------------------------------------------------------- early stopping and callbacks


def test_early_stopping_restores_best_weights(engine):
    X, y, X_val, y_val = noisy_problem(seed=0)
    model = MLP([4, 64, 64, 2], engine=engine, seed=0)
    patience = 3
    history = model.fit(X, y, epochs=200, batch_size=8, lr=0.3, validation_data=(X_val, y_val),
                        early_stopping=patience)
    val = history["val_loss"]
    assert len(val) < 200, "early stopping never triggered"
    assert len(history["val_accuracy"]) == len(val)
    best = int(np.argmin(val))
    assert len(val) - 1 - best == patience
    assert model.evaluate(X_val, y_val)["loss"] == pytest.approx(min(val), rel=1e-6)


def test_early_stopping_keeps_best_weights_when_epochs_run_out(engine):
    """Patience never runs out within 30 epochs, yet the model ends with its best weights."""
    X, y, X_val, y_val = noisy_problem(seed=1)
    model = MLP([4, 64, 64, 2], engine=engine, seed=0)
    history = model.fit(X, y, epochs=30, batch_size=8, lr=0.3, validation_data=(X_val, y_val),
                        early_stopping=1000)
    val = history["val_loss"]
    assert len(val) == 30
    assert np.argmin(val) < 29, "the last epoch was the best: the test proves nothing"
    assert model.evaluate(X_val, y_val)["loss"] == pytest.approx(min(val), rel=1e-6)


def test_early_stopping_needs_validation_data():
    X, y = blobs(n=30)
    with pytest.raises(ValueError, match="early_stopping needs validation data"):
        MLP([4, 3], engine="numpy").fit(X, y, early_stopping=2)


def test_callbacks_called_each_epoch_and_can_stop(engine):
    X, y = blobs(n=60)
    calls = []

    def record(model, epoch, logs):
        calls.append((epoch, sorted(logs)))

    class StopAtThree:
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, model, epoch, logs):
            self.epochs.append(epoch)
            return epoch == 3

    stopper = StopAtThree()
    model = MLP([4, 8, 3], engine=engine)
    history = model.fit(X, y, epochs=10, batch_size=8, callbacks=[record, stopper])
    assert [e for e, _ in calls] == [1, 2, 3]
    assert stopper.epochs == [1, 2, 3]
    assert calls[0][1] == ["accuracy", "engine", "epoch", "loss", "lr", "samples", "seconds"]
    assert history["epoch"] == [1, 2, 3]

    # Setting model.stop_training from a callback stops too.
    def stop_now(model, epoch, logs):
        model.stop_training = True

    history = MLP([4, 8, 3], engine=engine).fit(X, y, epochs=10, batch_size=8, callbacks=[stop_now])
    assert history["epoch"] == [1]


class KerasStyle:
    """A callback written for Keras: hooks of (epoch, logs) / (batch, logs) / (logs), and
    self.model to stop with."""

    def __init__(self, stop_at_batch=None):
        self.events, self.stop_at_batch = [], stop_at_batch

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch, logs["size"]))
        if batch == self.stop_at_batch:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch, logs["epoch"]))

    def on_train_end(self, logs=None):
        self.events.append(("train_end", sorted(logs)))


def test_keras_style_callbacks_get_every_hook_and_the_same_weights(engine):
    X, y = blobs(n=60)
    keras = KerasStyle()
    lam = []
    model = MLP([4, 8, 3], engine=engine, seed=3)
    history = model.fit(X, y, epochs=2, batch_size=25,
                        callbacks=[keras, lambda epoch, logs: lam.append(epoch)])
    assert keras.model is model and lam == [0, 1]
    assert keras.events == [("train_begin",),
                            ("epoch_begin", 0), ("batch_end", 0, 25), ("batch_end", 1, 25),
                            ("batch_end", 2, 10), ("epoch_end", 0, 1),
                            ("epoch_begin", 1), ("batch_end", 0, 25), ("batch_end", 1, 25),
                            ("batch_end", 2, 10), ("epoch_end", 1, 2),
                            ("train_end", ["accuracy", "engine", "epoch", "loss", "lr", "samples", "seconds"])]
    assert history["samples"] == [60, 60]
    # on_batch_end makes each minibatch an engine call of its own: the same steps, the same bits
    plain = MLP([4, 8, 3], engine=engine, seed=3)
    plain.fit(X, y, epochs=2, batch_size=25)
    np.testing.assert_array_equal(model._flat, plain._flat)


def test_keras_style_callback_stops_after_a_minibatch(engine):
    X, y = blobs(n=60)
    keras = KerasStyle(stop_at_batch=1)
    history = MLP([4, 8, 3], engine=engine).fit(X, y, epochs=5, batch_size=10, callbacks=keras)
    assert history["epoch"] == [1] and history["samples"] == [20]
    assert keras.events[-2:] == [("epoch_end", 0, 1), ("train_end", ["accuracy", "engine", "epoch", "loss", "lr", "samples", "seconds"])]


def test_ctrl_c_mid_epoch_keeps_a_partial_epoch_marked_as_such(engine):
    """Ctrl-C (SIGINT, here sent from a callback after the third minibatch) ends fit after that
    minibatch; the epoch's logs count the samples it trained and its line says it is partial."""
    import os
    import signal

    from fastmlp.progress import format_logs

    class CtrlC:
        def on_batch_end(self, batch, logs=None):
            if batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    X, y = blobs(n=60)
    model = MLP([4, 8, 3], engine=engine)
    history = model.fit(X, y, epochs=5, batch_size=10, callbacks=CtrlC())
    assert model.interrupted_ and history["epoch"] == [1] and history["samples"] == [30]
    assert model.epoch_samples_ == 60
    line = format_logs({k: v[0] for k, v in history.items()}, 60)
    assert line.startswith("epoch 1 (partial: 30 of 60 samples)  loss ")
    assert "partial" not in format_logs(dict(epoch=2, loss=0.5, lr=0.1, seconds=1.0, samples=60), 60)
    # with a validation split (cut per class) a whole epoch trains exactly epoch_samples_
    whole = MLP([4, 8, 3], engine=engine)
    split = whole.fit(X, y, epochs=1, batch_size=10, validation_split=0.15)
    assert split["samples"] == [whole.epoch_samples_] and whole.epoch_samples_ < 60


@pytest.mark.parametrize("callback, message", [
    (lambda: None, r"cannot be called as f\(model, epoch, logs\) or f\(epoch, logs\)"),
    (type("NoArgs", (), {"on_epoch_end": lambda self: None})(),
     r"callbacks\[0\].on_epoch_end cannot be called as on_epoch_end\(epoch, logs\); define it as "
     r"def on_epoch_end\(self, epoch, logs=None\)"),
    (type("BatchNoArgs", (), {"on_batch_end": lambda self, logs: None})(),
     r"on_batch_end cannot be called as on_batch_end\(batch, logs\)"),
    (object(), r"neither callable nor has an on_epoch_end method"),
])
def test_callbacks_of_other_shapes_are_refused_before_training(callback, message):
    X, y = blobs(n=30)
    model = MLP([4, 3], engine="numpy", seed=0)
    before = model._flat.copy()
    with pytest.raises(TypeError, match=message):
        model.fit(X, y, callbacks=[callback])
    np.testing.assert_array_equal(model._flat, before)
