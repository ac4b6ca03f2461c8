"""Input checks that run in Python before any compiled kernel sees the data.

Numba does no bounds checking, so every shape, dtype, label and hyper-parameter is checked here;
each failure is a ValueError or TypeError naming the argument, the bad value and the fix.
"""

import math
import numbers
import os

import numpy as np

from .codes import OPTIMIZERS, code_of
from .params import param_count


def check_features(X, name="X", n_features=None, dtype=np.float32):
    """X as a C-contiguous, writable 2-D array of ``dtype``, copied only when it must be.

    Accepts any real numeric dtype (ints, float16, ...), any memory layout and read-only arrays.
    A read-only array is copied (an ``np.memmap`` is not): the kernels never write X, but Numba
    compiles each of them again for a read-only argument (17 s for a first full-batch fit and
    predict of a small net: docs/performance.md, "The test run").
    Rejects object/string arrays, empty arrays, arrays that are not 2-D, NaN and Inf.
    """
    if hasattr(X, "toarray") and hasattr(X, "nnz"):        # a scipy.sparse matrix or array
        rows, cols = X.shape
        raise TypeError(f"{name} is a scipy sparse matrix; fastmlp trains on dense arrays: pass "
                        f"{name}.toarray() ({rows} x {cols} floats, "
                        f"{rows * cols * np.dtype(dtype).itemsize / 2**20:.0f} MiB as {np.dtype(dtype)}).")
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a 2-D numeric array; could not convert it: {exc}") from None
    if X.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {X.dtype}; it must hold real numbers (int or float). "
            f"Convert it first, e.g. {name}.astype(np.float32)."
        )
    if X.ndim != 2:
        hint = (f" Flatten images with {name}.reshape(len({name}), -1)." if X.ndim > 2 else
                f" Use {name}.reshape(-1, 1) for a single feature or {name}.reshape(1, -1) for a single sample.")
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {X.shape}.{hint}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); pass at least one sample.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the model's input layer has {n_features}; "
            f"pass data with {n_features} columns or build the model with layers=[{X.shape[1]}, ...]."
        )
    original = X
    with np.errstate(over="ignore", invalid="ignore"):     # overflow is reported below
        X = np.ascontiguousarray(X, dtype=dtype)
    _check_finite(X, original, name, dtype)
    if not X.flags.writeable and not isinstance(original, np.memmap):
        X = X.copy()
    return X


def _check_finite(X, original, name, dtype, first_row=0):
    """Raise ValueError at the first NaN / Inf of ``X`` (``original`` converted to ``dtype``;
    its row 0 is row ``first_row`` of the argument ``name``)."""
    if X.dtype.kind != "f" or _all_finite(X):
        return
    bad = tuple(np.argwhere(~np.isfinite(X))[0])
    value = original[bad]
    row = first_row + int(bad[0])
    if np.isfinite(value):
        raise ValueError(
            f"{name}[{row}, {bad[1]}] = {value!r} is too large for {np.dtype(dtype).name} "
            f"(it overflows to inf); scale the features first, e.g. standardize each column, "
            f"or build the model with dtype='float64'."
        )
    raise ValueError(
        f"{name} contains NaN or Inf (first at row {row}, column {bad[1]}: "
        f"{value}); remove or impute those values before training."
    )


def check_rows(X, name="X", n_features=None, dtype=np.float32):
    """X as :func:`check_features` returns it, except that a memory-mapped array (an np.memmap
    or a :class:`fastmlp.mapped.MappedRows`) comes back as a MappedRows, checked (shape, dtype,
    and NaN / Inf one slice at a time) but not converted or read into memory."""
    from .mapped import as_mapped, is_mapped

    if not is_mapped(X):
        return check_features(X, name, n_features, dtype)
    X = as_mapped(X)
    n, features = X.shape
    if n == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); pass at least one sample.")
    if n_features is not None and features != n_features:
        raise ValueError(
            f"{name} has {features} features but the model's input layer has {n_features}; "
            f"pass data with {n_features} columns or build the model with layers=[{features}, ...]."
        )
    if X.array.dtype.kind == "f" and np.dtype(dtype) not in X.finite_as:
        for start, part in X.blocks(dtype):
            if not _all_finite(part):           # the stored values only to name the culprit
                stored = X.take(np.arange(start, start + len(part)), X.array.dtype)
                _check_finite(part, stored, name, dtype, start)
        X.finite_as.add(np.dtype(dtype))
    return X


def _all_finite(X):
    """np.isfinite(X).all() without its full-size boolean temporary (25% of a float32 dataset):
    a float64 sum is NaN or Inf exactly when some entry is, unless finite float64 entries
    overflow it, and only then are the entries checked one by one."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(X, dtype=np.float64)):
            return True
    return all(np.isfinite(X[s:s + 4096]).all() for s in range(0, X.shape[0], 4096))


def check_same_length(X, y, x_name="X", y_name="y"):
    if len(X) != len(y):
        raise ValueError(
            f"{x_name} has {len(X)} samples but {y_name} has {len(y)}; they must have one label per row."
        )


# float labels convert to int64 exactly up to 2^53; larger ones are not class numbers anyone means
MAX_LABEL = 2 ** 53


def check_labels(y, name="y"):
    """Class labels as a 1-D array (ints, strings, or floats that are whole numbers)."""
    if y is None:
        raise TypeError(f"{name} is None; pass one class label per sample (an array of ints or strings).")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = f" For one-hot rows pass {name}.argmax(axis=1)." if y.ndim == 2 else ""
        raise ValueError(f"{name} must be 1-D (one class label per sample); got shape {y.shape}.{hint}")
    if y.size == 0:
        raise ValueError(f"{name} is empty; pass one class label per sample.")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or Inf; every sample needs a class label.")
        frac = y != np.round(y)
        if frac.any():
            raise ValueError(
                f"{name} holds class labels, but {name}[{int(np.argmax(frac))}] = "
                f"{y[np.argmax(frac)]} is not a whole number; pass integer or string classes "
                f"(for regression use output='identity')."
            )
        big = np.abs(y) > MAX_LABEL
        if big.any():
            raise ValueError(f"{name}[{int(np.argmax(big))}] = {y[np.argmax(big)]} is too large for a "
                             f"class label (at most {MAX_LABEL:.0e} in magnitude); pass integer "
                             f"or string classes.")
        y = y.astype(np.int64)
    elif y.dtype.kind == "u" and y.dtype.itemsize == 8 and (y > MAX_LABEL).any():
        raise ValueError(f"{name} holds a label above {MAX_LABEL:.0e}; pass smaller integers or strings.")
    elif y.dtype.kind == "O":
        if not all(isinstance(v, str) for v in y):
            raise TypeError(f"{name} mixes types; pass class labels that are all integers or all strings.")
        y = y.astype(str)
    elif y.dtype.kind not in "biuU":
        raise TypeError(f"{name} has dtype {y.dtype}; class labels must be integers or strings.")
    return y


def check_targets(Y, n_outputs, name="y", dtype=np.float32):
    """Regression targets as a C-contiguous (n, n_outputs) float array."""
    if Y is None:
        raise TypeError(f"{name} is None; pass the regression targets, shape (n_samples, {n_outputs}).")
    Y = np.asarray(Y)
    if Y.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {Y.dtype}; regression targets must be numbers.")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[1] != n_outputs:
        raise ValueError(
            f"{name} has shape {Y.shape} but the model has {n_outputs} outputs; pass targets of "
            f"shape (n_samples, {n_outputs}) or change the last entry of layers."
        )
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if not np.isfinite(Y).all():
        raise ValueError(f"{name} contains NaN or Inf; remove those samples before training.")
    return Y


def check_label_matrix(Y, n_outputs, name="y", dtype=np.float32):
    """Multilabel targets (the logistic head) as a C-contiguous (n, n_outputs) float array of
    0s and 1s: row i, column j is 1 when sample i has label j."""
    if Y is None:
        raise TypeError(f"{name} is None; pass a 0/1 label matrix of shape (n_samples, {n_outputs}).")
    Y = np.asarray(Y)
    if Y.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {Y.dtype}; output='logistic' takes a 0/1 label matrix "
                        f"(bool, int or float), shape (n_samples, {n_outputs}).")
    if Y.ndim != 2 or Y.shape[1] != n_outputs:
        hint = ""
        if Y.ndim == 1:
            hint = (f" For a single label pass {name}.reshape(-1, 1)." if n_outputs == 1 else
                    " For one class label per sample use output='softmax'.")
        raise ValueError(
            f"{name} has shape {Y.shape} but output='logistic' with {n_outputs} outputs takes a "
            f"0/1 label matrix of shape (n_samples, {n_outputs}) (one column per label; change "
            f"the last entry of layers to match).{hint}"
        )
    if Y.shape[0] == 0:
        raise ValueError(f"{name} is empty; pass one row of 0/1 labels per sample.")
    bad = (Y != 0) & (Y != 1)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{name}[{i}, {j}] = {Y[i, j].item()!r}; output='logistic' takes a label "
                         f"matrix of 0s and 1s only (1 where the sample has the label).")
    return np.ascontiguousarray(Y, dtype=dtype)


def check_number(value, name, *, low=None, high=None, low_open=False, high_open=False,
                 integer=False, allow_none=False, example=None):
    """A finite real (or integer) in the given range; bools are rejected.

    ``example`` (e.g. "0.1") is shown as the fix: "... Pass e.g. lr=0.1."
    """
    if value is None and allow_none:
        return None
    kind = "an integer" if integer else "a number"
    lo = "" if low is None else ("(" if low_open else "[") + f"{low}"
    hi = "" if high is None else f"{high}" + (")" if high_open else "]")
    rng = f"{lo or '(-inf'}, {hi or 'inf)'}"
    fix = f" Pass e.g. {name}={example}." if example is not None else ""
    ok_type = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        raise TypeError(f"{name} must be {kind} in {rng}; got {value!r} of type "
                        f"{type(value).__name__}.{fix}")
    if not integer and not math.isfinite(value):
        raise ValueError(f"{name} must be finite, in {rng}; got {value!r}.{fix}")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be in {rng}; got {value!r}.{fix}")
    return int(value) if integer else float(value)


def check_layers(layers):
    """Layer widths as a tuple of at least two positive ints."""
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__len__"):
        raise TypeError(f"layers must be a list of layer widths like [784, 128, 10]; got {layers!r}.")
    if len(layers) < 2:
        raise ValueError(f"layers needs at least an input and an output width, e.g. [784, 10]; got {list(layers)}.")
    out = []
    for i, w in enumerate(layers):
        if isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1:
            raise ValueError(f"layers[{i}] = {w!r}; every layer width must be a positive integer.")
        out.append(int(w))
    return tuple(out)


def check_batch_size(batch_size, n):
    """Rows per minibatch for n samples: a positive int, clipped to n as scikit-learn clips it
    (a batch larger than the data is one full batch), or None for full batch (n)."""
    batch = check_number(batch_size, "batch_size", low=1, integer=True, allow_none=True)
    return n if batch is None else min(batch, n)


def check_sample_weight(sample_weight, n, dtype):
    """``sample_weight`` as a C-contiguous ``dtype`` vector of n finite weights >= 0, not all 0
    (None stays None: uniform weights)."""
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"sample_weight must be an array of n_samples={n} numbers; got "
                         f"{type(sample_weight).__name__}.") from None
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must be 1-D with one weight per sample: shape ({n},); "
                         f"got shape {w.shape}.")
    if not np.isfinite(w).all():
        raise ValueError(f"sample_weight must be finite; sample {int(np.argmin(np.isfinite(w)))} "
                         f"has {w[np.argmin(np.isfinite(w))]}.")
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ValueError(f"sample_weight must be >= 0; sample {i} has {w[i]}.")
    if not w.any():
        raise ValueError("sample_weight is all zero: at least one sample needs a positive weight.")
    return np.ascontiguousarray(w, dtype=dtype)


def class_indices(labels, classes, n_out, name="y"):
    """Each label's index in the sorted ``classes`` (a model's classes_), checked: the indices go
    straight into compiled kernels, which do no bounds checking."""
    if np.ndim(classes) != 1 or len(classes) > n_out:
        # Class indices go straight into compiled kernels, which do no bounds checking.
        raise ValueError(f"model.classes_ has shape {np.shape(classes)} but the output layer has "
                         f"{n_out} units; set classes_ to at most {n_out} labels (or refit).")
    if labels.dtype.kind != classes.dtype.kind and not (labels.dtype.kind in "iub" and classes.dtype.kind in "iub"):
        raise ValueError(f"{name} holds {labels.dtype} labels but the model was trained on {classes.dtype} classes {classes[:5]}...")
    idx = np.searchsorted(classes, labels)
    idx = np.minimum(idx, len(classes) - 1)
    unknown = classes[idx] != labels
    if unknown.any():
        bad = labels[np.argmax(unknown)].item()
        raise ValueError(
            f"{name} contains the label {bad!r}, which is not one of the model's classes "
            f"{_short(classes)}; the output layer has {n_out} units. Remove those samples or "
            f"build a model whose last layer matches the classes."
        )
    return idx.astype(np.int64)


def classes_for(labels, n_out):
    """Integers 0..n_out-1 keep their meaning (a subset may be present); anything else maps
    to the sorted unique labels, which must number exactly the output width."""
    found = np.unique(labels)
    if len(found) < 2:
        raise ValueError(f"y has a single class {found[0].item()!r}; a classifier needs at least two classes.")
    if labels.dtype.kind in "iub" and found.min() >= 0 and found.max() < n_out:
        return np.arange(n_out, dtype=np.int64)
    if len(found) != n_out:
        raise ValueError(
            f"y has {len(found)} classes {_short(found)} but the output layer has {n_out} units; "
            f"set the last entry of layers to {len(found)}, or use labels 0..{n_out - 1}."
        )
    return found


def _short(values, k=10):
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values[:k])
    return f"[{shown}{', ...' if len(values) > k else ''}]"


def check_classes(classes, n_out, output):
    """A model's ``classes_``: the n_out sorted, distinct labels (integers or strings) its output
    units stand for; only classifiers have them."""
    if output in ("identity", "logistic"):
        raise ValueError(f"output={output!r} has no classes_; leave it None.")
    arr = np.asarray(classes)
    if (arr.ndim != 1 or arr.dtype.kind not in "biuU" or len(arr) != n_out
            or (len(arr) > 1 and not (arr[1:] > arr[:-1]).all())):
        raise ValueError(f"classes_ must be the {n_out} sorted, distinct labels (integers or "
                         f"strings) of the output units; got {_short(arr.ravel())} "
                         f"(shape {arr.shape}).")
    return arr


def check_fit_args(epochs, batch_size, lr, optimizer, momentum, nesterov,
                   weight_decay, beta1, beta2, eps, early_stopping, verbose):
    """fit's hyper-parameters, each checked: a dict of the values the engine takes."""
    return {
        "epochs": check_number(epochs, "epochs", low=1, integer=True, example=10),
        "batch_size": check_number(batch_size, "batch_size", low=1, integer=True, allow_none=True,
                                   example=32),
        "lr": check_number(lr, "lr", low=0, low_open=True, example=0.1),
        "optimizer": code_of(OPTIMIZERS, optimizer, "optimizer"),
        "momentum": check_number(momentum, "momentum", low=0, high=1, high_open=True),
        "nesterov": bool(nesterov),
        "weight_decay": check_number(weight_decay, "weight_decay", low=0),
        "beta1": check_number(beta1, "beta1", low=0, high=1, high_open=True),
        "beta2": check_number(beta2, "beta2", low=0, high=1, high_open=True),
        "eps": check_number(eps, "eps", low=0, low_open=True),
        "early_stopping": check_number(early_stopping, "early_stopping", low=1, integer=True, allow_none=True),
        "verbose": check_number(verbose, "verbose", low=0, high=2, integer=True),
    }


def check_memory(layers, dtype):
    """Refuse layers whose weights alone need more memory than the machine has (a clear error
    instead of NumPy's MemoryError after seconds of trying)."""
    need = param_count(layers) * np.dtype(dtype).itemsize
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return
    if need > have:
        raise ValueError(f"layers={list(layers)} need {need / 2**30:.1f} GiB for their weights "
                         f"alone, more than this machine's {have / 2**30:.1f} GiB; use smaller "
                         f"layers.")


def is_dtype(value):
    try:
        np.dtype(value)
        return True
    except TypeError:
        return False
