"""Model files: one ``.npz`` of plain arrays plus a JSON config, written atomically, read without pickle."""

import json
import os
import tempfile
import zipfile

import numpy as np

from ._version import __version__

FORMAT = "fastmlp-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model or checkpoint file that is missing, truncated, foreign or from a newer fastmlp."""


def write_npz_atomic(path, config, arrays):
    """Write ``arrays`` and the JSON ``config`` to ``path`` via a temporary file and a rename.

    A crash while writing leaves the previous file (if any) untouched: the rename is atomic.
    """
    path = os.fspath(path)
    config = dict(config, format=FORMAT, format_version=FORMAT_VERSION, fastmlp_version=__version__)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; give the mode a plain open() would
        with os.fdopen(fd, "wb") as f:
            np.savez(f, config=np.array(json.dumps(config)), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_npz(path):
    """Return (config dict, {name: array}) from a file written by :func:`write_npz_atomic`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path!r}; check the path (save with model.save(path)).")
    try:
        # np.load would read any other file as a .npy or a pickle: check for a zip archive first.
        with open(path, "rb") as f:
            signature = f.read(4)
        if signature[:2] != b"PK":
            what = "is empty" if not signature else "does not start with a zip signature"
            raise ModelFileError(
                f"{path!r} is not a .npz file (it {what}); it may be truncated or another kind "
                f"of file. Pass a model file written by model.save(path)."
            )
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except ModelFileError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise ModelFileError(
                f"{path!r} contains pickled Python objects; fastmlp never loads pickles because "
                f"they can run arbitrary code. Re-save the model with fastmlp."
            ) from None
        raise ModelFileError(f"{path!r} is not a readable .npz file ({exc}); it may be truncated.") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ModelFileError(
            f"{path!r} is truncated or not a .npz file ({exc}); re-save the model or use an intact copy."
        ) from None
    if "config" not in arrays:
        raise ModelFileError(f"{path!r} is a .npz file but not a fastmlp model (it has no config).")
    try:
        config = json.loads(str(arrays.pop("config")))
    except json.JSONDecodeError:
        raise ModelFileError(f"{path!r} has a damaged config; re-save the model.") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is a .npz file but not a fastmlp model file.")
    version = config.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelFileError(f"{path!r} has a damaged config (format_version={version!r}); re-save the model.")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path!r} was written by fastmlp {config.get('fastmlp_version')} in file format "
            f"{config['format_version']}; this fastmlp ({__version__}) reads format {FORMAT_VERSION}. "
            f"Upgrade fastmlp to load it."
        )
    return config, arrays


def model_from_contents(cls, path, config, arrays):
    """A model from a file's config and arrays, each checked: the compiled kernels trust them."""
    try:
        model = cls(**config["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path!r} has an invalid model config ({exc}).") from None
    flat = arrays.get("params")
    if flat is None or flat.shape != model._flat.shape or flat.dtype != model._flat.dtype:
        raise ModelFileError(f"{path!r} has weights that do not match its layers {list(model.layers)}.")
    if not np.isfinite(flat).all():
        raise ModelFileError(f"{path!r} has NaN or Inf weights; it was saved from a diverged "
                             f"model or is damaged. Use an earlier file or retrain.")
    model._flat[...] = flat
    classes = arrays.get("classes")
    if classes is not None:
        n_out = model.layers[-1]
        if (classes.ndim != 1 or classes.dtype.kind not in "biuU" or not model.is_classifier
                or len(classes) != n_out or (len(classes) > 1 and not (classes[1:] > classes[:-1]).all())):
            raise ModelFileError(
                f"{path!r} has classes of shape {classes.shape} ({classes.dtype}) that do not fit its "
                f"output layer of {n_out} units (output={model.output!r}); the file is damaged, re-save the model."
            )
    model.classes_ = classes
    model.fitted_ = bool(config.get("fitted", True))
    target_ndim = config.get("target_ndim")
    if target_ndim not in (None, 1, 2):
        raise ModelFileError(f"{path!r} has target_ndim={target_ndim!r} (should be 1, 2 or null); re-save the model.")
    model.target_ndim_ = target_ndim
    history = config.get("history") or {}
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        raise ModelFileError(f"{path!r} has a damaged history (a dict of per-epoch lists is expected); re-save the model.")
    model.history_ = history
    return model
