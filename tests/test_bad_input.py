"""Bad input, table-driven: every case raises ValueError / TypeError (or a documented subclass:
NotFittedError, ModelFileError, DataError, FileNotFoundError) whose message names the argument,
the bad value and the fix. The compiled kernels do no bounds checking, so nothing may reach them
unchecked: no case may crash, hang or silently train.

Inputs that are merely unusual (Fortran order, strided views, ints, float16, read-only arrays,
big-endian, lists) must work, copied only when they must be, and train exactly as the plain
C-contiguous float32 copy does.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastmlp import MLP, ModelFileError, NotFittedError
from fastmlp.data import DataError, load as load_data
from fastmlp.validation import check_features

from helpers import blobs

ROOT = Path(__file__).resolve().parents[1]
HAS_CLI = (ROOT / "fastmlp" / "cli.py").exists()


X, y = blobs(30)


def with_value(array, index, value):
    array = np.array(array, dtype=np.result_type(array, type(value)))
    array[index] = value
    return array


def fit(X=X, y=y, layers=(4, 8, 3), model=None, **kwargs):
    """An action: build a model on the engine under test and fit it for one epoch."""
    args = {"epochs": 1, "batch_size": 8, **kwargs}
    return lambda engine: MLP(list(layers), engine=engine, **(model or {})).fit(X, y, **args)


def new(**kwargs):
    return lambda engine: MLP(**{"layers": [4, 8, 3], "engine": engine, **kwargs})


def fitted(engine, output="softmax"):
    model = MLP([4, 8, 3 if output != "identity" else 1], output=output, engine=engine)
    model.fit(X, y if output != "identity" else X[:, 0], epochs=1, batch_size=8)
    return model


# (id, action(engine), error, regex): the regex covers the argument, the bad value and the fix.
MODEL_CASES = [
    # ------------------------------------------------ MLP(...)
    ("layers-width-0", new(layers=[4, 0, 3]), ValueError,
     r"layers\[1\] = 0; every layer width must be a positive integer"),
    ("layers-one-entry", new(layers=[4]), ValueError,
     r"layers needs at least an input and an output width, e.g. \[784, 10\]; got \[4\]"),
    ("layers-string", new(layers="4,8,3"), TypeError,
     r"layers must be a list of layer widths like \[784, 128, 10\]; got '4,8,3'"),
    ("activation-unknown", new(activation="rellu"), ValueError,
     r"activation='rellu' is not supported; choose one of .*'relu'.* Did you mean 'relu'\?"),
    ("output-unknown", new(output="softmx"), ValueError, r"output='softmx' is not supported.*Did you mean 'softmax'\?"),
    ("engine-unknown", new(engine="numbaa"), ValueError, r"engine='numbaa' is not supported.*Did you mean 'numba'\?"),
    ("dtype-float16", new(dtype="float16"), ValueError,
     r"dtype='float16' is not supported; choose one of 'float32', 'float64'"),
    ("softmax-one-output", new(layers=[4, 1]), ValueError,
     r"output='softmax' needs at least 2 output units; use output='sigmoid' or more classes"),
    ("threads-0", new(threads=0), ValueError, r"threads must be in \[1, inf\); got 0"),
    ("seed-negative", new(seed=-1), ValueError, r"seed must be in \[0, inf\); got -1"),
    # ------------------------------------------------ fit: X
    ("X-nan", fit(X=with_value(X, (3, 2), np.nan)), ValueError,
     r"X contains NaN or Inf \(first at row 3, column 2: nan\); remove or impute those values"),
    ("X-inf", fit(X=with_value(X, (5, 0), -np.inf)), ValueError,
     r"X contains NaN or Inf \(first at row 5, column 0: -inf\); remove or impute"),
    ("X-too-large-for-float32", fit(X=with_value(X.astype(np.float64), (2, 1), 1e300)), ValueError,
     r"X\[2, 1\] = .*1e\+300.* is too large for float32 .*standardize each column.*dtype='float64'"),
    ("X-empty", fit(X=np.zeros((0, 4)), y=np.zeros(0, int)), ValueError,
     r"X is empty \(shape \(0, 4\)\); pass at least one sample"),
    ("X-1-D", fit(X=X[:, 0]), ValueError,
     r"X must be 2-D \(n_samples, n_features\); got shape \(30,\)\. Use X.reshape\(-1, 1\)"),
    ("X-4-D", fit(X=X.reshape(30, 2, 2, 1)), ValueError,
     r"X must be 2-D .*got shape \(30, 2, 2, 1\)\. Flatten images with X.reshape\(len\(X\), -1\)"),
    ("X-strings", fit(X=np.full((30, 4), "a")), TypeError,
     r"X has dtype <U1; it must hold real numbers .* X.astype\(np.float32\)"),
    ("X-object", fit(X=X.astype(object)), TypeError, r"X has dtype object; it must hold real numbers"),
    ("X-complex", fit(X=X.astype(np.complex64)), TypeError, r"X has dtype complex64; it must hold real numbers"),
    ("X-ragged-list", fit(X=[[1.0, 2.0], [3.0]], y=[0, 1]), TypeError,
     r"X must be a 2-D numeric array; could not convert it"),
    ("X-features-vs-layers", fit(X=X[:, :3]), ValueError,
     r"X has 3 features but the model's input layer has 4; pass data with 4 columns or build "
     r"the model with layers=\[3, \.\.\.\]"),
    # ------------------------------------------------ fit: y
    ("X-y-lengths", fit(y=y[:-1]), ValueError,
     r"X has 30 samples but y has 29; they must have one label per row"),
    ("y-nan", fit(y=with_value(y.astype(float), 4, np.nan)), ValueError,
     r"y contains NaN or Inf; every sample needs a class label"),
    ("y-label-2.5", fit(y=with_value(y.astype(float), 29, 2.5)), ValueError,
     r"y\[29\] = 2.5 is not a whole number; pass integer or string classes .*output='identity'"),
    ("y-label-outside-outputs", fit(y=with_value(y, 7, 3)), ValueError,
     r"y has 4 classes \[0, 1, 2, 3\] but the output layer has 3 units; set the last entry of "
     r"layers to 4, or use labels 0..2"),
    ("y-too-many-classes", fit(y=np.array(list("abcde"))[np.arange(30) % 5]), ValueError,
     r"y has 5 classes \['a', 'b', 'c', 'd', 'e'\] but the output layer has 3 units"),
    ("y-single-class", fit(y=np.zeros(30, int)), ValueError,
     r"y has a single class 0; a classifier needs at least two classes"),
    ("y-none", fit(y=None), TypeError, r"y is None; pass one class label per sample"),
    ("y-one-hot", fit(y=np.eye(3)[y]), ValueError,
     r"y must be 1-D .*got shape \(30, 3\)\. For one-hot rows pass y.argmax\(axis=1\)"),
    ("y-mixed-types", fit(y=np.array([1, "a"] * 15, dtype=object)), TypeError,
     r"y mixes types; pass class labels that are all integers or all strings"),
    ("regression-y-shape", fit(y=np.zeros((30, 2)), layers=(4, 8, 1), model={"output": "identity"}),
     ValueError, r"y has shape \(30, 2\) but the model has 1 outputs; pass targets of shape \(n_samples, 1\)"),
    ("regression-y-inf", fit(y=with_value(X[:, 0], 0, np.inf), layers=(4, 8, 1), model={"output": "identity"}),
     ValueError, r"y contains NaN or Inf; remove those samples"),
    ("unknown-label-later", lambda e: fitted(e).fit(X, with_value(y, 0, 7), epochs=1, batch_size=8),
     ValueError, r"y contains the label 7, which is not one of the model's classes \[0, 1, 2\]"),
    # ------------------------------------------------ fit: hyper-parameters
    ("lr-0", fit(lr=0.0), ValueError, r"lr must be in \(0, inf\); got 0.0\. Pass e.g. lr=0.1"),
    ("lr-negative", fit(lr=-0.5), ValueError, r"lr must be in \(0, inf\); got -0.5\. Pass e.g. lr=0.1"),
    ("lr-nan", fit(lr=float("nan")), ValueError, r"lr must be finite, in \(0, inf\); got nan\. Pass e.g. lr=0.1"),
    ("lr-numpy-nan", fit(lr=np.float32("nan")), ValueError, r"lr must be finite.*nan.*Pass e.g. lr=0.1"),
    ("lr-inf", fit(lr=float("inf")), ValueError, r"lr must be finite, in \(0, inf\); got inf"),
    ("lr-string", fit(lr="0.1"), TypeError, r"lr must be a number in \(0, inf\); got '0.1' of type str"),
    ("batch-size-0", fit(batch_size=0), ValueError, r"batch_size must be in \[1, inf\); got 0\. Pass e.g. batch_size=32"),
    ("batch-size-float", fit(batch_size=8.0), TypeError, r"batch_size must be an integer .*got 8.0 of type float"),
    ("epochs-0", fit(epochs=0), ValueError, r"epochs must be in \[1, inf\); got 0\. Pass e.g. epochs=10"),
    ("momentum-1", fit(momentum=1.0), ValueError, r"momentum must be in \[0, 1\); got 1.0"),
    ("optimizer-unknown", fit(optimizer="adamw"), ValueError,
     r"optimizer='adamw' is not supported; choose one of 'sgd', 'adam'\. Did you mean 'adam'\?"),
    ("schedule-nan", fit(lr_schedule=lambda epoch: float("nan")), ValueError, r"lr_schedule\(0\) must be finite.*got nan"),
    ("schedule-negative", fit(lr_schedule={0: 0.1, 1: -1.0}), ValueError, r"lr_schedule\[1\] must be in \(0, inf\); got -1.0"),
    ("schedule-string-result", fit(lr_schedule=lambda epoch: "fast"), TypeError,
     r"lr_schedule\(0\) must be a number in \(0, inf\); got 'fast'"),
    ("schedule-unknown", fit(lr_schedule="cosin"), ValueError, r"lr_schedule='cosin' is not supported.*Did you mean 'cosine'\?"),
    ("callbacks-not-callable", fit(callbacks=[print, 3]), TypeError,
     r"callbacks\[1\] = 3 is neither callable nor has an on_epoch_end method; pass functions f\(model, epoch, logs\)"),
    ("validation-split-1", fit(validation_split=1.0), ValueError, r"validation_split must be in \[0, 1\); got 1.0"),
    ("validation-split-empty", fit(X=X[:3], y=y[:3], batch_size=1, validation_split=0.5), ValueError,
     r"validation_split=0.5 of 3 samples leaves 3 for training and 0 for validation.*validation_data="),
    ("validation-data-features", fit(validation_data=(X[:, :3], y)), ValueError,
     r"validation_data X has 3 features but the model's input layer has 4"),
    ("validation-data-not-a-pair", fit(validation_data=X), TypeError, r"validation_data must be a tuple \(X_val, y_val\)"),
    ("early-stopping-without-validation", fit(early_stopping=2), ValueError,
     r"early_stopping needs validation data: pass validation_data=\(X_val, y_val\) or validation_split=0.1"),
    # ------------------------------------------------ predict
    ("predict-before-fit", lambda e: MLP([4, 8, 3], engine=e).predict(X), NotFittedError,
     r"this MLP has not been trained yet; call fit\(X, y\) \(or load a saved model\) first"),
    ("predict-wrong-features", lambda e: fitted(e).predict(X[:, :3]), ValueError,
     r"X has 3 features but the model's input layer has 4; pass data with 4 columns"),
    ("predict-one-sample-1-D", lambda e: fitted(e).predict(X[0]), ValueError,
     r"got shape \(4,\)\. .*X.reshape\(1, -1\) for a single sample"),
    ("predict-nan", lambda e: fitted(e).predict(with_value(X, (0, 0), np.nan)), ValueError,
     r"X contains NaN or Inf \(first at row 0, column 0: nan\)"),
    ("predict-proba-regression", lambda e: fitted(e, "identity").predict_proba(X), ValueError,
     r"predict_proba is for classifiers; this model has output='identity' \(use predict\)"),
    ("evaluate-unknown-label", lambda e: fitted(e).evaluate(X, with_value(y, 3, 9)), ValueError,
     r"y contains the label 9, which is not one of the model's classes"),
]


@pytest.mark.parametrize("case,action,error,pattern", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_model_rejects_bad_input(engine, case, action, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        action(engine)
    assert isinstance(info.value, (ValueError, TypeError)), case


def test_a_refused_fit_does_not_train(engine):
    model = MLP([4, 8, 3], engine=engine)
    before = model._flat.copy()
    for bad in (dict(lr=-1.0), dict(batch_size=0), dict(callbacks=[3]), dict(epochs=0)):
        with pytest.raises((ValueError, TypeError)):
            model.fit(X, y, **{"epochs": 1, "batch_size": 8, **bad})
        np.testing.assert_array_equal(model._flat, before)
    assert model.history_ == {} and not model.fitted_


# ---------------------------------------------------------------- model files


def model_file(tmp_path, name, change=None, arrays_change=None):
    """Save a trained model, then rewrite its config and arrays with the changes."""
    path = tmp_path / "good.npz"
    if not path.exists():
        fitted("numpy").save(path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    config = json.loads(str(arrays.pop("config")))
    config.update(change or {})
    arrays.update(arrays_change or {})
    out = tmp_path / name
    np.savez(out, config=np.array(json.dumps(config)), **arrays)
    return out


def truncated(tmp_path):
    path = model_file(tmp_path, "whole.npz")
    data = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    return tmp_path / "truncated.npz"


FILE_CASES = [
    ("truncated", truncated, ModelFileError, r"truncated.npz.*truncated"),
    ("newer-format", lambda t: model_file(t, "future.npz", {"format_version": 99, "fastmlp_version": "9.0"}),
     ModelFileError, r"future.npz' was written by fastmlp 9.0 in file format 99; .*Upgrade fastmlp to load it"),
    ("pickled-objects", lambda t: model_file(t, "pickled.npz", arrays_change={"params": np.array([{"x": 1}], dtype=object)}),
     ModelFileError, r"pickled.npz' contains pickled Python objects; fastmlp never loads pickles"),
    ("text-file", lambda t: (t / "notes.npz").write_text("hello") and t / "notes.npz", ModelFileError,
     r"notes.npz' is not a .npz file \(it does not start with a zip signature\); it may be truncated"),
    ("empty-file", lambda t: (t / "empty.npz").write_bytes(b"") or t / "empty.npz", ModelFileError,
     r"empty.npz' is not a .npz file \(it is empty\)"),
    ("format-version-string", lambda t: model_file(t, "v.npz", {"format_version": "2"}), ModelFileError,
     r"v.npz' has a damaged config \(format_version='2'\); re-save the model"),
    ("layers-vs-weights", lambda t: model_file(t, "layers.npz", {"model": dict(MLP([4, 9, 3]).get_config(), engine="numpy")}),
     ModelFileError, r"layers.npz' has weights that do not match its layers \[4, 9, 3\]"),
    ("nan-weights", lambda t: model_file(t, "nan.npz", arrays_change={"params": np.full(MLP([4, 8, 3]).n_params, np.nan, np.float32)}),
     ModelFileError, r"nan.npz' has NaN or Inf weights; .*Use an earlier file or retrain"),
    # More classes than output units would index past the output buffer in compiled code.
    ("classes-vs-outputs", lambda t: model_file(t, "classes.npz", arrays_change={"classes": np.arange(5)}),
     ModelFileError, r"classes.npz' has classes of shape \(5,\) .* output layer of 3 units"),
    ("unknown-activation", lambda t: model_file(t, "act.npz", {"model": dict(MLP([4, 8, 3]).get_config(), activation="swish")}),
     ModelFileError, r"act.npz' has an invalid model config \(activation='swish' is not supported"),
    ("missing-file", lambda t: t / "nothing.npz", FileNotFoundError, r"no model file at .*nothing.npz'; check the path"),
]


@pytest.mark.parametrize("case,make,error,pattern", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_load_rejects_bad_model_files(tmp_path, case, make, error, pattern):
    path = make(tmp_path)
    with pytest.raises(error, match=pattern):
        MLP.load(path)


# ---------------------------------------------------------------- data files


def write(path, content):
    path.write_bytes(content)
    return path


def npz(path, **arrays):
    np.savez(path, **arrays)
    return path


DATA_CASES = [
    ("csv-empty", lambda t: write(t / "e.csv", b""), r"e.csv: is empty; write one image per line"),
    ("csv-text-cell", lambda t: write(t / "t.csv", b"label,a,b\n1,x,3\n"),
     r"t.csv, line 2: column 2 'x' is not a number; every cell must be a number"),
    ("csv-ragged", lambda t: write(t / "r.csv", b"1,2,3\n1,2\n"),
     r"r.csv, line 2: has 2 columns but line 1 has 3"),
    ("csv-label-2.5", lambda t: write(t / "l.csv", b"2.5,2,3\n0,2,3\n"),
     r"l.csv, line 1: label 2.5 in column 1 is not a class number"),
    ("npz-no-y", lambda t: npz(t / "noy.npz", X=X), r"noy.npz: has 'X' but no 'y'; save both"),
    ("npz-lengths", lambda t: npz(t / "len.npz", X=X, y=y[:-1]), r"30 images but 29 labels"),
    ("npz-pickled", lambda t: npz(t / "obj.npz", X=np.array([{}], dtype=object), y=[0]),
     r"obj.npz: cannot read 'X' / 'y' \(Object arrays cannot be loaded when allow_pickle=False\)"),
    ("npz-nan-pixels", lambda t: npz(t / "nan.npz", X=with_value(X, (4, 1), np.nan), y=y),
     r"image 4 has nan at pixel 1; images must hold finite numbers"),
    ("npz-not-a-zip", lambda t: write(t / "bad.npz", b"garbage"),
     r"bad.npz: not a .npz archive \(it starts with bytes .*\); it may be truncated"),
    ("npz-truncated", lambda t: write(t / "tr.npz", (npz(t / "ok.npz", X=X, y=y)).read_bytes()[:200]),
     r"tr.npz: cannot .*"),
    ("idx-truncated", lambda t: write(t / "x-images-idx3-ubyte", b"\0\0\x08\x03" + b"\0\0\0\x02" * 3 + b"\0" * 3),
     r"truncated IDX file \(its header promises \(2, 2, 2\), 8 bytes of data, but only 3 follow\)"),
    ("unknown-suffix", lambda t: write(t / "data.txt", b"hello"), r"data.txt: unknown format \(suffix '.txt'\); give a directory"),
    ("missing", lambda t: t / "nope.csv", r"nope.csv: no such file or directory"),
]


@pytest.mark.parametrize("case,make,pattern", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_readers_reject_bad_files(tmp_path, case, make, pattern):
    path = make(tmp_path)
    with pytest.raises(DataError, match=pattern) as info:
        load_data(path)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------- the command line

CLI_CASES = [
    ("not-a-zip", lambda t: write(t / "bad.npz", b"garbage"), ["bad.npz", "not a .npz archive", "np.savez"]),
    ("truncated", lambda t: write(t / "bad.npz", npz(t / "ok.npz", X=X, y=y).read_bytes()[:200]), ["bad.npz"]),
    ("nan-pixels", lambda t: npz(t / "bad.npz", X=with_value(X, (4, 1), np.nan), y=y), ["bad.npz", "image 4 has nan"]),
    ("pickled", lambda t: npz(t / "bad.npz", X=np.array([{}], dtype=object), y=[0]), ["bad.npz", "allow_pickle=False"]),
    ("no-labels", lambda t: npz(t / "bad.npz", X=X), ["bad.npz", "no 'y'"]),
    ("missing", lambda t: t / "bad.npz", ["bad.npz", "no such file"]),
]


@pytest.mark.skipif(not HAS_CLI, reason="fastmlp/cli.py is not there yet")
@pytest.mark.parametrize("case,make,fragments", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_reports_bad_data_in_one_line(tmp_path, case, make, fragments):
    make(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-m", "fastmlp", "train", "--data", "bad.npz", "--out", "m.npz"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (tmp_path / "m.npz").exists(), "no model may be written from bad data"


# ---------------------------------------------------------------- unusual but valid input


def variants(X):
    ro = X.copy()
    ro.flags.writeable = False
    wide = np.repeat(X, 2, axis=1)
    return {
        "fortran": np.asfortranarray(X),
        "strided": wide[:, ::2],
        "row-strided": np.repeat(X, 2, axis=0)[::2],
        "int32": np.round(X * 4).astype(np.int32),
        "float16": X.astype(np.float16),
        "float64": X.astype(np.float64),
        "read-only": ro,
        "big-endian": X.astype(">f4"),
        "list": X.tolist(),
    }


@pytest.mark.parametrize("kind", list(variants(X)))
def test_unusual_layouts_and_dtypes_train_like_the_plain_copy(engine, kind):
    X_kind = variants(X)[kind]
    plain = np.ascontiguousarray(X_kind, dtype=np.float32)      # what the user would pass instead
    X_before = np.array(X_kind, copy=True)
    y_kind = y.astype(np.float64) if kind == "float64" else y   # whole-number float labels too
    if kind == "read-only":
        y_kind = y.copy()
        y_kind.flags.writeable = False
    a = MLP([4, 8, 3], engine=engine, seed=1)
    a.fit(X_kind, y_kind, epochs=2, batch_size=8, lr=0.1)
    b = MLP([4, 8, 3], engine=engine, seed=1)
    b.fit(plain, y, epochs=2, batch_size=8, lr=0.1)
    np.testing.assert_array_equal(a._flat, b._flat)
    np.testing.assert_array_equal(a.predict_proba(X_kind), b.predict_proba(plain))
    np.testing.assert_array_equal(np.asarray(X_kind), X_before)           # the input is never written


def test_copies_only_when_needed():
    c32 = np.ascontiguousarray(X, dtype=np.float32)
    assert check_features(c32) is c32
    ro = c32.copy()
    ro.flags.writeable = False
    ro_out = check_features(ro)                 # copied: a read-only X is a new Numba type
    assert ro_out.flags.writeable and not np.shares_memory(ro_out, ro)
    c64 = X.astype(np.float64)
    assert check_features(c64, dtype=np.float64) is c64
    for kind, X_kind in variants(X).items():
        out = check_features(X_kind)
        assert out.flags.c_contiguous and out.dtype == np.float32 and out.dtype.isnative, kind
        assert out.flags.writeable, kind
        if isinstance(X_kind, np.ndarray):
            assert not np.shares_memory(out, X_kind), kind


def test_a_read_only_memmap_is_not_copied(tmp_path):
    np.save(tmp_path / "X.npy", np.ascontiguousarray(X, dtype=np.float32))
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")        # may be larger than memory
    out = check_features(mapped)
    assert np.shares_memory(out, mapped) and not out.flags.writeable
