"""Model files: one ``.npz`` of plain arrays plus a JSON config, written atomically, read without pickle."""

import glob
import json
import math
import os
import tempfile
import zipfile

import numpy as np

from ._version import __version__

FORMAT = "fastmlp-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model or checkpoint file that is missing, truncated, foreign or from a newer fastmlp."""


TMP_MARK = ".fastmlp-tmp-"     # in the names of files being written: .NAME.fastmlp-tmp-XXXX


def write_atomic(path, write, binary=True):
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it over
    ``path``: a crash or a full disk leaves the previous file (if any) as it was. Temporary files
    that a killed writer left for the same path are removed first. An OSError names the file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + TMP_MARK
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape(prefix) + "*")):
        try:
            os.unlink(stale)
        except OSError:
            pass
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {path}: {exc.strerror}", path) from None
    try:
        os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600; give the mode a plain open() would
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                      {"encoding": "utf-8", "newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise OSError(exc.errno, f"cannot write {path}: {exc.strerror or exc}", path) from None
        raise


def check_writable(path, what, inputs=()):
    """Fail before any work when ``path`` (named ``what`` in the message) cannot be written: a
    folder, a folder that does not exist or refuses a new file, or one of ``inputs`` (files the
    same command reads: writing there would lose them). Returns the path as a str."""
    path = os.fspath(path)
    target = os.path.abspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"{what} {path}: is a directory; give a file name")
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{what} {path}: the directory {folder} does not exist")
    for source in inputs:
        if source is not None and os.path.exists(source) and os.path.exists(target) \
                and os.path.samefile(source, target):
            raise ValueError(f"{what} {path} is also an input of this command; writing it "
                             f"would replace that file. Choose another name.")
    try:                                # root ignores permission bits: only a real file tells
        fd, probe = tempfile.mkstemp(prefix="." + os.path.basename(target) + TMP_MARK, dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"{what} {path}: cannot write in {folder} ({exc.strerror})") from None
    return path


def write_npz_atomic(path, config, arrays):
    """Write ``arrays`` and the JSON ``config`` to ``path`` as one .npz, atomically (see
    :func:`write_atomic`)."""
    config = dict(config, format=FORMAT, format_version=FORMAT_VERSION, fastmlp_version=__version__)
    write_atomic(path, lambda f: np.savez(f, config=np.array(json.dumps(config)), **arrays))


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
        check_npz_sizes(path, ModelFileError)
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
    flat = arrays.get("params")
    try:
        from .params import param_count
        from .validation import check_layers

        layers = check_layers(config["model"]["layers"])
        if flat is None or flat.ndim != 1 or flat.shape[0] != param_count(layers):
            raise ModelFileError(f"{path!r} has weights that do not match its layers "
                                 f"{list(layers)}.")
        model = cls(**config["model"])     # allocates its layers: only once they match the file
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path!r} has an invalid model config ({exc}).") from None
    if flat is None or flat.shape != model._flat.shape or flat.dtype != model._flat.dtype:
        raise ModelFileError(f"{path!r} has weights that do not match its layers {list(model.layers)}.")
    if not np.isfinite(flat).all():
        raise ModelFileError(f"{path!r} has NaN or Inf weights; it was saved from a diverged "
                             f"model or is damaged. Use an earlier file or retrain.")
    model._flat[...] = flat
    classes = arrays.get("classes")
    try:
        model.classes_ = classes        # checked as every assignment of classes_ is
    except ValueError:
        raise ModelFileError(
            f"{path!r} has classes of shape {classes.shape} ({classes.dtype}) that do not fit its "
            f"output layer of {model.layers[-1]} units (output={model.output!r}); the file is "
            f"damaged, re-save the model."
        ) from None
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


def check_npz_sizes(path, error):
    """Raise ``error`` when a member of the .npz at ``path`` declares more data in its header than
    the member holds: np.load would allocate what the header claims before it reads a byte."""
    from numpy.lib import format as npy

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    version = npy.read_magic(member)
                    read_header = (npy.read_array_header_1_0 if version == (1, 0)
                                   else npy.read_array_header_2_0)
                    shape, _, dtype = read_header(member)
                    declared = math.prod(shape) * dtype.itemsize
                    if dtype.hasobject:
                        continue                # refused by np.load(allow_pickle=False)
                    if declared > info.file_size - member.tell():
                        raise error(f"{path}: member {info.filename!r} declares shape {shape} "
                                    f"({declared} bytes) but holds {info.file_size} bytes; the "
                                    f"file is damaged")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, error):
            raise
        # not a readable archive: np.load's own error, reported by the caller, says what is wrong
