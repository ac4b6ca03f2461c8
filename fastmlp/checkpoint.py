"""Checkpoints for ``MLP.fit(checkpoint=PATH, checkpoint_every=N)`` and ``fit(resume=PATH)``.

A checkpoint is a model file (``MLP.load`` reads it as the model at that epoch) plus everything
``fit`` needs to carry on exactly where it stopped:

- the optimizer state (momentum or Adam's m and v, and the update count),
- the shuffling generator's state (``model._rng.bit_generator.state``, a JSON-able dict),
- the epochs completed in this ``fit`` call and the history so far (of the call and the model),
- the early-stopping bookkeeping (best validation loss, its epoch and weights),
- the ``fit`` arguments and a fingerprint of the training and validation data, so that a resume
  with other data or other hyper-parameters is refused instead of silently training something
  else.

The engines are deterministic, so a run killed at any moment and resumed from its last
checkpoint ends with weights bitwise identical to a run that was never interrupted (same engine
and thread count). Files are written with :func:`fastmlp.io.write_npz_atomic`: a crash while
writing leaves the previous checkpoint in place.

Checkpoints are written at epoch boundaries only. A run stopped by Ctrl-C keeps its last
checkpoint (the interrupted epoch is not saved); a run that diverges keeps the checkpoint from
before the divergence.
"""

import hashlib
import json
import numbers
import os

import numpy as np

from .codes import OPTIMIZERS
from .mapped import MappedRows
from .io import ModelFileError, check_writable, model_from_contents, read_npz, write_npz_atomic

CHECKPOINT_VERSION = 1
# Constructor arguments that change how training runs but not what it computes.
EXECUTION_ONLY = ("engine", "threads")


def check_path(path, argument):
    """``path`` as a str whose folder exists (checked before training, not after an hour)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument} must be a file path (str or os.PathLike); got {path!r}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if argument == "checkpoint" and not os.path.isdir(folder):
        raise FileNotFoundError(
            f"{argument}={path!r}: the folder {folder!r} does not exist; create it first "
            f"(checkpoints are written there every checkpoint_every epochs)."
        )
    if argument == "checkpoint" and not os.path.isdir(path):
        check_writable(path, argument)          # before training, not after the first interval
    if os.path.isdir(path):
        raise IsADirectoryError(f"{argument}={path!r} is a directory; pass a file path such as "
                                f"{os.path.join(path, 'checkpoint.npz')!r}.")
    return path


def describe_schedule(lr_schedule):
    """A JSON value standing for ``lr_schedule``, compared on resume."""
    if lr_schedule is None or isinstance(lr_schedule, str):
        return lr_schedule
    if isinstance(lr_schedule, dict):
        return {"piecewise": sorted([float(k), float(v)] for k, v in lr_schedule.items())}
    kind = type(lr_schedule)
    name = getattr(lr_schedule, "__qualname__", None) or f"{kind.__module__}.{kind.__qualname__}"
    state = {k: v for k, v in getattr(lr_schedule, "__dict__", {}).items()
             if isinstance(v, (numbers.Real, str, type(None))) and not isinstance(v, bool)}
    return {"callable": name, "state": {k: (float(v) if isinstance(v, numbers.Real) else v)
                                        for k, v in sorted(state.items())}}


def data_fingerprint(arrays):
    """A short hash of the arrays' dtypes, shapes and bytes (all C-contiguous after validation);
    a :class:`~fastmlp.mapped.MappedRows` is hashed as stored, a slice at a time."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, MappedRows):
            h.update(f"mapped {a.array.dtype.str}{a.shape} {a.pixels};".encode())
            for _, part in a.blocks(a.array.dtype, raw=True):
                h.update(part.data)
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(a.data if a.size else b"")
    return h.hexdigest()


def _jsonable(value):
    return json.loads(json.dumps(value))


def fit_arguments(hp, batch, shuffle, replacement, lr_schedule, validation_split,
                  has_validation_data, n_samples, fingerprint, shuffle_block=None):
    """The ``fit`` arguments a resume must repeat, as a JSON-able dict."""
    args = {k: v for k, v in hp.items() if k != "verbose"}
    args["optimizer"] = OPTIMIZERS[hp["optimizer"]]
    args.update(batch_size=int(batch), shuffle=bool(shuffle), replacement=bool(replacement),
                lr_schedule=describe_schedule(lr_schedule), validation_split=validation_split,
                validation_data=bool(has_validation_data), n_samples=int(n_samples),
                data=fingerprint)
    if shuffle_block is not None:       # absent otherwise: checkpoints written before it match
        args["shuffle_block"] = int(shuffle_block)
    return _jsonable(args)


def save(path, model, *, fit_args, epoch, history, best, stopped):
    """Write the checkpoint after ``epoch`` epochs of this fit (atomically)."""
    config, arrays = model._file_contents()
    state = model._optimizer
    config["checkpoint"] = {
        "version": CHECKPOINT_VERSION,
        "epoch": int(epoch),
        "stopped": bool(stopped),
        "fit": fit_args,
        "fit_history": history,
        "rng": model._rng.bit_generator.state,
        "optimizer": {"name": state.name, "step": int(state.step)},
        "best": None if best is None else {"val_loss": float(best[0]), "epoch": int(best[2])},
    }
    arrays["optimizer_state1"] = state.state1
    arrays["optimizer_state2"] = state.state2
    if best is not None:
        arrays["best_params"] = best[1]
    write_npz_atomic(path, config, arrays)


class Resume:
    """A checkpoint read and checked against a model, ready to be applied by ``fit``."""

    def __init__(self, path, model_cls, current):
        self.path = path = os.fspath(path)
        config, arrays = read_npz(path)
        state = config.get("checkpoint")
        if not isinstance(state, dict):
            raise ModelFileError(
                f"{path!r} is a model file, not a checkpoint; resume= takes a file written by "
                f"fit(..., checkpoint=PATH). To train a saved model further, MLP.load it and call fit."
            )
        if not isinstance(state.get("version"), int) or state["version"] > CHECKPOINT_VERSION:
            raise ModelFileError(f"{path!r} is a checkpoint of a newer fastmlp (version "
                                 f"{state.get('version')!r}); upgrade fastmlp to resume from it.")
        self.saved = model_from_contents(model_cls, path, config, arrays)   # checks config and weights
        try:
            self.epoch = int(state["epoch"])
            self.stopped = bool(state["stopped"])
            self.fit_args = dict(state["fit"])
            self.fit_history = {k: list(v) for k, v in dict(state["fit_history"]).items()}
            self.rng_state = dict(state["rng"])
            self.opt_name = str(state["optimizer"]["name"])
            self.step = int(state["optimizer"]["step"])
            best = state["best"]
            self.best = None if best is None else (float(best["val_loss"]), arrays["best_params"],
                                                   int(best["epoch"]))
            self.state1 = arrays["optimizer_state1"]
            self.state2 = arrays["optimizer_state2"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path!r} is a damaged checkpoint ({type(exc).__name__}: {exc}); "
                                 f"resume from an earlier one or train from scratch.") from None
        P = self.saved._flat.shape
        dtype = self.saved._flat.dtype
        if self.opt_name not in OPTIMIZERS or self.epoch < 0 or self.step < 0:
            raise ModelFileError(f"{path!r} is a damaged checkpoint (optimizer {self.opt_name!r}, "
                                 f"epoch {self.epoch}, step {self.step}).")
        n2 = P if self.opt_name == "adam" else (0,)
        for name, a, shape in (("optimizer_state1", self.state1, P), ("optimizer_state2", self.state2, n2),
                               ("best_params", None if self.best is None else self.best[1], P)):
            if a is not None and (a.shape != shape or a.dtype != dtype or not np.isfinite(a).all()):
                raise ModelFileError(f"{path!r} is a damaged checkpoint: {name} should be {shape} "
                                     f"finite {dtype} values for layers {list(self.saved.layers)}.")
        kind = type(current._rng.bit_generator)
        try:                            # a generator state that does not load is damage too
            if self.rng_state.get("bit_generator") == kind.__name__:
                kind().state = self.rng_state
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise ModelFileError(f"{path!r} is a damaged checkpoint: its shuffling generator's "
                                 f"state does not load ({exc}); resume from an earlier one or "
                                 f"train from scratch.") from None
        self._check_model(current.get_config())

    def _check_model(self, config):
        saved = self.saved.get_config()
        for key, value in saved.items():
            if key not in EXECUTION_ONLY and config.get(key) != value:
                raise ValueError(
                    f"resume={self.path!r}: the checkpoint is of a model with {key}={value!r} but "
                    f"this model has {key}={config.get(key)!r}; build the model with the same "
                    f"arguments, e.g. MLP(**{{{', '.join(f'{k}={v!r}' for k, v in saved.items() if k not in EXECUTION_ONLY)}}})."
                )

    def check_fit(self, fit_args):
        """Refuse a resume whose fit arguments or data differ from the checkpointed run's."""
        last = ("n_samples", "data")          # the arguments explain a mismatch best, then sizes
        keys = sorted(set(self.fit_args) | set(fit_args), key=lambda k: (k in last, last.index(k) if k in last else 0, k))
        for key in keys:
            was, now = self.fit_args.get(key), fit_args.get(key)
            if was == now:
                continue
            if key == "data":
                raise ValueError(
                    f"resume={self.path!r}: X and y (or the validation data) differ from the data "
                    f"the checkpoint was trained on; resume with the same data, or call fit "
                    f"without resume= to train on new data."
                )
            if key == "n_samples":
                raise ValueError(f"resume={self.path!r}: the checkpoint was trained on {was} samples "
                                 f"but X has {now}; resume with the same data.")
            raise ValueError(
                f"resume={self.path!r}: the checkpoint was written by a fit with {key}={was!r} but "
                f"this fit has {key}={now!r}; pass {key}={was!r} to resume it (to train further "
                f"afterwards, call fit again)."
            )

    def check_classes(self, model):
        """The labels must map to the same classes as in the checkpoint."""
        a, b = self.saved.classes_, model.classes_
        if (a is None) != (b is None) or (a is not None and (a.shape != b.shape or (a != b).any())):
            raise ValueError(f"resume={self.path!r}: y has classes {b} but the checkpoint's model "
                             f"has {a}; resume with the same labels.")

    def apply(self, model):
        """Put the checkpointed state into ``model``; returns (first epoch, history, best, stopped)."""
        rng_kind = type(model._rng.bit_generator).__name__
        if self.rng_state.get("bit_generator") != rng_kind:
            raise ModelFileError(f"{self.path!r} holds a {self.rng_state.get('bit_generator')!r} "
                                 f"generator state; this fastmlp shuffles with {rng_kind}.")
        model._rng.bit_generator.state = self.rng_state
        model._flat[...] = self.saved._flat
        from .engine import OptimizerState

        state = OptimizerState(self.opt_name, 0, model._flat.dtype)
        state.state1, state.state2, state.step = self.state1.copy(), self.state2.copy(), self.step
        model._optimizer = state
        model.classes_ = self.saved.classes_
        model.target_ndim_ = self.saved.target_ndim_
        model.history_ = {k: list(v) for k, v in self.saved.history_.items()}
        model.fitted_ = True
        best = None if self.best is None else (self.best[0], self.best[1].copy(), self.best[2])
        return self.epoch, {k: list(v) for k, v in self.fit_history.items()}, best, self.stopped
