"""Pictures of a training run: learning curves, a confusion matrix, a grid of images.

matplotlib is an optional extra (``pip install "fastmlp[plot]"``); it is imported only when a
plot is drawn. Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so plotting
works without a display, leaves pyplot's global state and backend alone, and is safe from
threads. Each ``plot_*`` function writes one image file (the format follows the suffix: .png,
.svg, .pdf, ...) and returns its path.

:func:`confusion_matrix` needs only NumPy; the command line prints it as text.
"""

import math
import os

import numpy as np

INSTALL_HINT = 'plotting needs matplotlib: pip install "fastmlp[plot]"'


def require_matplotlib():
    """Import matplotlib's Figure and Agg canvas, or raise an ImportError that says how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return Figure, FigureCanvasAgg


def confusion_matrix(y_true, y_pred, classes):
    """Counts (len(classes), len(classes)) int64: row i, column j = samples of class
    ``classes[i]`` predicted as ``classes[j]``. Labels not in ``classes`` raise a ValueError."""
    classes = np.asarray(classes)
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} labels but y_pred has {len(y_pred)}")
    k = len(classes)
    order = np.argsort(classes, kind="stable")
    sorted_classes = classes[order]

    def index(labels, name):
        pos = np.minimum(np.searchsorted(sorted_classes, labels), max(k - 1, 0))
        unknown = sorted_classes[pos] != labels if k else np.ones(len(labels), bool)
        if unknown.any():
            raise ValueError(f"{name} contains the label {labels[np.argmax(unknown)].item()!r}, which is "
                             f"not one of the classes {classes.tolist()}")
        return order[pos]

    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (index(y_true, "y_true"), index(y_pred, "y_pred")), 1)
    return matrix


def plot_history(history, path, title=None):
    """Learning curves from a ``fit`` history: loss (and accuracy, for classifiers) per epoch,
    train and validation."""
    Figure, Canvas = require_matplotlib()
    epochs = history.get("epoch") or list(range(1, len(history.get("loss", [])) + 1))
    if not epochs:
        raise ValueError("the history is empty: train for at least one epoch before plotting it")
    panels = [("loss", "val_loss", "loss")]
    if history.get("accuracy"):
        panels.append(("accuracy", "val_accuracy", "accuracy"))
    fig = Figure(figsize=(5 * len(panels), 3.6), layout="constrained")
    Canvas(fig)
    for ax, (train_key, val_key, label) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        marker = "o" if len(epochs) <= 30 else None
        ax.plot(epochs, history[train_key], marker=marker, label="train")
        if history.get(val_key):
            ax.plot(epochs, history[val_key], marker=marker, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_confusion(matrix, classes, path, title="confusion matrix"):
    """A confusion matrix (rows: true class, columns: predicted) as a heat map with counts."""
    Figure, Canvas = require_matplotlib()
    matrix = np.asarray(matrix)
    k = len(classes)
    if matrix.shape != (k, k):
        raise ValueError(f"matrix has shape {matrix.shape} but there are {k} classes; "
                         f"it must be ({k}, {k})")
    size = min(3 + 0.5 * k, 14)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    Canvas(fig)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(image, ax=ax, shrink=0.8)
    names = [str(c) for c in classes]
    ax.set_xticks(range(k), names, rotation=90 if max(map(len, names), default=0) > 3 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if matrix[i, j] > threshold else "black")
    ax.set_title(title)
    return _save(fig, path)


def plot_images(X, y_true, y_pred, path, columns=None):
    """A grid of square images (rows of X, side = sqrt(n_features)) titled with the prediction
    and, when ``y_true`` is given, the truth; wrong predictions are titled in red."""
    Figure, Canvas = require_matplotlib()
    images = image_grid(X)
    n = len(images)
    if n == 0:
        raise ValueError("no images to plot")
    y_pred = np.asarray(y_pred).ravel()
    y_true = None if y_true is None else np.asarray(y_true).ravel()
    if len(y_pred) != n or (y_true is not None and len(y_true) != n):
        raise ValueError(f"{n} images need {n} predictions (and true labels); got "
                         f"{len(y_pred)}{'' if y_true is None else f' and {len(y_true)}'}")
    columns = columns or min(n, 8)
    rows = math.ceil(n / columns)
    fig = Figure(figsize=(1.3 * columns, 1.5 * rows), layout="constrained")
    Canvas(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for i, ax in enumerate(axes):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray_r", interpolation="nearest")
        wrong = y_true is not None and y_true[i] != y_pred[i]
        label = f"pred {y_pred[i]}" + ("" if y_true is None else f"\ntrue {y_true[i]}")
        ax.set_title(label, fontsize=8, color="red" if wrong else "black")
    return _save(fig, path)


def image_grid(X):
    """Rows of X as square images (n, side, side); a ValueError when they are not square."""
    X = np.asarray(X)
    if X.ndim == 3 and X.shape[1] == X.shape[2]:
        return X
    if X.ndim != 2:
        raise ValueError(f"images must be rows (n, features), got shape {X.shape}")
    side = math.isqrt(X.shape[1])
    if side * side != X.shape[1]:
        raise ValueError(f"cannot show rows of {X.shape[1]} features as images: "
                         f"{X.shape[1]} is not a square number (8x8 = 64, 28x28 = 784)")
    return X.reshape(len(X), side, side)


def _save(fig, path):
    path = os.fspath(path)
    fig.savefig(path, dpi=100)
    return path
