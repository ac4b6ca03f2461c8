"""fastmlp.plots: the NumPy confusion matrix, and that each plot writes a real PNG file."""

import sys

import numpy as np
import pytest

from fastmlp import plots
from fastmlp.plots import confusion_matrix, image_grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def needs_matplotlib():
    pytest.importorskip("matplotlib", reason='matplotlib is an optional extra: pip install "fastmlp[plot]"')


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG file (starts with {data[:8]!r})"
    assert len(data) > 1000, f"{path.name} is only {len(data)} bytes"


# ---------------------------------------------------------------- confusion matrix (NumPy only)


def test_confusion_matrix_counts():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    matrix = confusion_matrix(y_true, y_pred, [0, 1, 2])
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert matrix.dtype == np.int64
    assert matrix.sum() == len(y_true)


def test_confusion_matrix_keeps_the_order_of_classes_and_empty_classes():
    matrix = confusion_matrix(["b", "a", "b"], ["b", "b", "b"], ["b", "c", "a"])
    assert matrix.tolist() == [[2, 0, 0], [0, 0, 0], [1, 0, 0]]


def test_confusion_matrix_rejects_unknown_labels_and_length_mismatch():
    with pytest.raises(ValueError, match="label 7"):
        confusion_matrix([0, 7], [0, 1], [0, 1])
    with pytest.raises(ValueError, match="y_pred has 1"):
        confusion_matrix([0, 1], [0], [0, 1])


def test_image_grid_needs_square_images():
    assert image_grid(np.zeros((3, 64))).shape == (3, 8, 8)
    assert image_grid(np.zeros((2, 784))).shape == (2, 28, 28)
    with pytest.raises(ValueError, match="not a square number"):
        image_grid(np.zeros((2, 50)))


def test_missing_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)     # makes the import fail
    with pytest.raises(ImportError, match=r'pip install "fastmlp\[plot\]"'):
        plots.plot_history({"epoch": [1], "loss": [1.0]}, tmp_path / "curves.png")


# ---------------------------------------------------------------- plots


def test_plot_history_with_and_without_validation(tmp_path):
    needs_matplotlib()
    history = {"epoch": [1, 2, 3], "loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8],
               "val_loss": [1.1, 0.8, 0.7], "val_accuracy": [0.45, 0.6, 0.7]}
    path = plots.plot_history(history, tmp_path / "curves.png", title="test")
    assert path == str(tmp_path / "curves.png")
    assert_png(tmp_path / "curves.png")
    # regression history: loss only, no validation
    plots.plot_history({"epoch": [1, 2], "loss": [2.0, 1.0]}, tmp_path / "loss.png")
    assert_png(tmp_path / "loss.png")


def test_plot_history_rejects_an_empty_history(tmp_path):
    needs_matplotlib()
    with pytest.raises(ValueError, match="empty"):
        plots.plot_history({}, tmp_path / "curves.png")


def test_plot_confusion(tmp_path):
    needs_matplotlib()
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 10, 200))
    matrix = confusion_matrix(y_true, y_pred, range(10))
    plots.plot_confusion(matrix, list(range(10)), tmp_path / "confusion.png")
    assert_png(tmp_path / "confusion.png")
    with pytest.raises(ValueError, match="10 classes"):
        plots.plot_confusion(matrix[:3, :3], list(range(10)), tmp_path / "bad.png")


@pytest.mark.parametrize("side", [8, 28])
def test_plot_images(tmp_path, side):
    needs_matplotlib()
    rng = np.random.default_rng(side)
    X = rng.random((5, side * side)).astype(np.float32)
    y_true = np.array([0, 1, 2, 3, 4])
    y_pred = np.array([0, 1, 2, 3, 9])          # one wrong: titled in red
    plots.plot_images(X, y_true, y_pred, tmp_path / "images.png")
    assert_png(tmp_path / "images.png")
    plots.plot_images(X, None, y_pred, tmp_path / "no_truth.png")      # unlabelled data
    assert_png(tmp_path / "no_truth.png")
    with pytest.raises(ValueError, match="5 images need 5 predictions"):
        plots.plot_images(X, None, y_pred[:2], tmp_path / "bad.png")


def test_plots_leave_pyplot_alone(tmp_path):
    """Drawing on the Agg canvas directly neither opens pyplot figures nor changes its backend."""
    needs_matplotlib()
    import matplotlib

    backend = matplotlib.get_backend()
    plots.plot_history({"epoch": [1], "loss": [1.0]}, tmp_path / "curves.png")
    assert matplotlib.get_backend() == backend
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
