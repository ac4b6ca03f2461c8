"""ONNX export (``MLP.to_onnx``, ``fastmlp export``) checked under onnxruntime against fastmlp's
own predictions for every activation and head, both dtypes; and ``MLP.summary``."""

import subprocess
import sys

import numpy as np
import pytest

from fastmlp import MLP
from fastmlp.codes import ACTIVATIONS
from helpers import blobs

onnx = pytest.importorskip("onnx", reason='ONNX export is an optional extra: pip install "fastmlp[onnx]"')
ort = pytest.importorskip("onnxruntime", reason="the exported graphs are checked under onnxruntime")

TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


def run_onnx(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": X})))


def fitted(layers, activation, output, dtype, y):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, layers[0])).astype(dtype)
    model = MLP(layers, activation=activation, output=output, dtype=dtype, seed=0, engine="numpy")
    model.fit(X, y, epochs=2, batch_size=10, lr=0.05)
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_classifier_graph_predicts_what_fastmlp_predicts(tmp_path, dtype, activation, output):
    y = np.arange(50) % 3
    model, X = fitted([6, 5, 4, 3], activation, output, dtype, y)
    model.to_onnx(tmp_path / "m.onnx")
    got = run_onnx(tmp_path / "m.onnx", X)
    assert got["probabilities"].dtype == np.dtype(dtype)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), rtol=0,
                               atol=TOLERANCE[dtype])
    np.testing.assert_array_equal(got["label"], model.predict(X))


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([10, 20, 30])])
def test_labels_map_through_classes(tmp_path, labels):
    y = labels[np.arange(50) % 3]
    model, X = fitted([6, 5, 3], "relu", "softmax", "float32", y)
    model.to_onnx(tmp_path / "m.onnx")
    label = run_onnx(tmp_path / "m.onnx", X)["label"]
    np.testing.assert_array_equal(label.astype(labels.dtype), model.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multilabel_and_regression_graphs(tmp_path, dtype):
    rng = np.random.default_rng(2)
    Y = (rng.random((50, 4)) > 0.5).astype(np.int64)
    model, X = fitted([6, 5, 4], "tanh", "logistic", dtype, Y)
    model.to_onnx(tmp_path / "ml.onnx")
    got = run_onnx(tmp_path / "ml.onnx", X)
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), atol=TOLERANCE[dtype])
    np.testing.assert_array_equal(got["label"], model.predict(X))
    for targets in (rng.normal(size=50), rng.normal(size=(50, 2))):
        n_out = 1 if targets.ndim == 1 else 2
        model, X = fitted([6, 5, n_out], "sigmoid", "identity", dtype, targets)
        model.to_onnx(tmp_path / "r.onnx")
        got = run_onnx(tmp_path / "r.onnx", X)["predictions"]
        assert got.shape == model.predict(X).shape
        np.testing.assert_allclose(got, model.predict(X), atol=TOLERANCE[dtype])


def test_an_untrained_model_is_refused_and_the_file_is_written_atomically(tmp_path):
    from fastmlp.model import NotFittedError

    with pytest.raises(NotFittedError, match="not been trained"):
        MLP([4, 3]).to_onnx(tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    X, y = blobs(n=30)
    model = MLP([4, 3], seed=0)
    model.fit(X, y, epochs=1)
    with pytest.raises(OSError, match="no/such"):
        model.to_onnx(tmp_path / "no" / "such" / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_without_the_onnx_package_the_error_says_what_to_install(monkeypatch, tmp_path):
    X, y = blobs(n=30)
    model = MLP([4, 3], seed=0)
    model.fit(X, y, epochs=1)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[onnx\]"'):
        model.to_onnx(tmp_path / "m.onnx")


def test_fastmlp_export_command(tmp_path):
    X, y = blobs(n=30)
    model = MLP([4, 6, 3], seed=0)
    model.fit(X, y, epochs=1)
    model.save(tmp_path / "m.npz")
    result = subprocess.run([sys.executable, "-m", "fastmlp", "export", "m.npz", "--onnx", "m.onnx"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "wrote m.onnx (ONNX opset" in result.stdout and "total parameters: 51" in result.stdout
    np.testing.assert_array_equal(run_onnx(tmp_path / "m.onnx", X)["label"], model.predict(X))


def test_summary_lists_layers_shapes_and_parameters():
    lines = []
    text = MLP([784, 128, 64, 10], activation="tanh").summary(print_fn=lines.append)
    assert lines == [text]
    rows = text.splitlines()
    assert rows[0] == "MLP 784-128-64-10, float32, engine numba (not trained yet)"
    assert rows[2].split() == ["dense", "1", "784", "->", "128", "tanh", "100,480"]
    assert rows[4].split() == ["dense", "3", "(output)", "64", "->", "10", "softmax", "650"]
    assert rows[5] == "total parameters: 109,386 (427.3 KiB)"
