"""``fastmlp.MLP``: a thin model class over an engine (compiled Numba kernels or the NumPy reference).

Threads and processes
---------------------
Models may be trained and used from several Python threads at once: every compiled call runs
under one process-wide lock (:func:`fastmlp.engine.lowlevel.threads.thread_limits`), so calls from different
threads take turns, each with its own thread counts, and give bitwise the same results as when
run one after the other (between calls, Python code of the threads runs concurrently).
Threading layer: unless ``NUMBA_THREADING_LAYER`` is set, fastmlp asks Numba for ``workqueue``
(not OpenMP or TBB): it must never launch two parallel regions at once, which the lock ensures,
and it is fork-safe. So a worker forked by ``multiprocessing`` (start method "fork"), also after
the parent has trained with ``engine="numba"``, can fit and predict normally and gets the
parent's results bitwise. The lock is replaced in the child after a fork, so a fork taken while
another thread of the parent was in a compiled call does not deadlock the child. With another
threading layer chosen by the user (or started before fastmlp's first call), fork safety is
that layer's: GNU OpenMP may hang a forked child; use the "spawn" start method then.
"""

import logging
import os
import time

import numpy as np

from . import checkpoint as _checkpoint
from .codes import ACTIVATIONS, DTYPES, ENGINES, HEAD_IDENTITY, HEADS, INITS, Y_HEADS, code_of
from .io import model_from_contents, read_npz, write_npz_atomic
from .params import init_params, layer_views, param_count
from .schedules import BUILT_IN_SCHEDULES, make_schedule
from .progress import StopOnCtrlC, echo, format_logs, progress_bar
from .callbacks import Callbacks
from .mapped import MappedRows, select_rows
from .validation import (check_batch_size, check_classes, check_fit_args, check_label_matrix,
                         check_labels, check_layers, check_memory, check_number, check_rows,
                         check_same_length, check_sample_weight, check_targets, class_indices,
                         classes_for, is_dtype)

log = logging.getLogger("fastmlp")

# A fit stops with TrainingDiverged when a slice's mean loss passes this many times the chance
# level (classifiers; for regression the loss of predicting the targets' mean), although it
# stays finite.
LOSS_BLOWUP = 1e4
# fit trains an epoch in compiled calls ("slices") of whole minibatches, sized to take about
# SLICE_SECONDS each from the rate of the calls before: progress bars update and Ctrl-C is
# honoured between calls. An epoch's first call takes at most SLICE_SAMPLES samples and about
# SLICE_MACS multiply-adds of forward pass. The cut never changes the result: every call of an
# epoch is planned for the whole epoch.
SLICE_SECONDS = 0.25
SLICE_MACS = 250_000_000
SLICE_SAMPLES = 16384
# Several short epochs in one call (fit's _train_epochs) take at most this many rows: the call's
# order (8 bytes a row) and its per-minibatch trace (32 bytes a minibatch) are allocated whole.
TOGETHER_MAX_ROWS = 262_144
# fit's (and the command line's) minibatch size when none is given, as in Keras
BATCH_SIZE = 32


class NotFittedError(ValueError):
    """The model was asked to predict before it was trained (or given its weights)."""


class TrainingDiverged(FloatingPointError):
    """Training blew up: the loss became NaN or Inf, or the weights or the loss left a sane range
    while staying finite (see ``fit``); the model keeps weights that predict finite values."""


def first_slice(layers, batch):
    """Samples of an epoch's first compiled call: whole minibatches of ``batch`` rows, about
    SLICE_MACS multiply-adds of forward pass through ``layers``, at most SLICE_SAMPLES (at least
    one minibatch)."""
    macs_per_row = sum(int(a) * int(b) for a, b in zip(layers[:-1], layers[1:]))
    return whole_batches(min(SLICE_SAMPLES, SLICE_MACS // max(macs_per_row, 1)), batch)


def whole_batches(samples, batch):
    """``samples`` rounded down to whole minibatches of ``batch`` rows, at least one."""
    return max(1, int(samples) // batch) * batch


def _pick(a, rows):
    """a[rows], or ``a`` itself when it is None or empty (targets the head does not use)."""
    return a if a is None or len(a) == 0 else a[rows]


def _slice_batches(X, y_idx, Y, weights, rows, batch, n, dtype, engine, inputs=None):
    """The engine's Batches for the minibatches of ``rows`` (an epoch of n samples). From a
    :class:`MappedRows` the rows are read from the file first, in the order they are visited,
    so minibatch k is still rows[k*B:(k+1)*B]. ``inputs``: the fit's
    :class:`fastmlp.engine.CompressedX` (X compressed once for all its calls, when it pays)."""
    Batches = _engine().Batches
    if not isinstance(X, MappedRows):
        return Batches(X, y_idx, Y, rows, batch, weights, plan_rows=n, compressed=inputs)
    return Batches(X.take(rows, dtype, engine), _pick(y_idx, rows), _pick(Y, rows),
                   np.arange(len(rows), dtype=np.int64), batch, _pick(weights, rows), plan_rows=n)


def _nan_loss(epoch, step, stats, lr):
    """The TrainingDiverged of a non-finite loss at minibatch ``step`` of ``epoch`` (both
    counted from 1); ``stats``: the engine call's."""
    return TrainingDiverged(f"training diverged at epoch {epoch}, step {step}: "
                            f"loss={stats.bad_loss}; lower the learning rate (now {lr}).")


def _engine():
    """:mod:`fastmlp.engine`, imported on first use (it compiles or loads Numba code)."""
    from . import engine

    return engine


class MLP:
    """A multi-layer perceptron trained with minibatch SGD or Adam.

    ``layers`` lists the widths from input to output, e.g. [784, 128, 10]. Hidden layers use
    ``activation``; ``output`` picks the head and its loss: "softmax" (cross-entropy,
    classification), "sigmoid" (squared error on one-hot targets, classification), "identity"
    (mean squared error, regression) or "logistic" (sigmoid + binary cross-entropy per output,
    multilabel: y is a 0/1 matrix with one column per label). ``engine="numba"`` runs compiled
    kernels, "numpy" the pure-NumPy reference. ``threads`` defaults to all cores. Everything is
    seeded by ``seed``.
    """

    # what the weights were made for: fixed once the model exists
    _FIXED = ("layers", "init", "dtype", "seed")

    def __init__(self, layers=(784, 128, 10), activation="relu", output="softmax", init="he",
                 dtype="float32", seed=0, engine="numba", threads=None):
        checked = {
            "layers": check_layers(layers),
            "init": INITS[code_of(INITS, init, "init")],
            "dtype": DTYPES[code_of(DTYPES, np.dtype(dtype).name if is_dtype(dtype) else dtype, "dtype")],
            "seed": check_number(seed, "seed", low=0, integer=True),
        }
        check_memory(checked["layers"], checked["dtype"])
        self.__dict__.update(checked)
        self.activation, self.output, self.engine, self.threads = activation, output, engine, threads
        init_rng, shuffle_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(2))
        self._flat = init_params(self.layers, self.init, init_rng, self.dtype)
        self._rng = shuffle_rng
        self._optimizer = None          # the engine's OptimizerState, kept between fit calls
        self._loss_limit = None         # a finite loss above this is a divergence (see fit)
        self.classes_ = None
        self.target_ndim_ = None        # regression: 1 or 2, the shape predict returns
        self.fitted_ = False
        self.history_ = {}
        self.stop_training = False
        self.interrupted_ = False       # whether the last fit was stopped by Ctrl-C
        self.epoch_samples_ = None      # samples a whole epoch of the last fit trains (after
                                        # validation_split): history's "samples" below it is partial

    def __setattr__(self, name, value):
        """Attributes a user may set are checked as the constructor checks them: the compiled
        kernels trust them."""
        if name in self._FIXED and name in self.__dict__:
            raise AttributeError(f"{name} is fixed when the model is built (its weights were made "
                                 f"for it); build a new MLP({name}=...) instead.")
        if name == "activation":
            value = ACTIVATIONS[code_of(ACTIVATIONS, value, "activation")]
        elif name == "output":
            value = HEADS[code_of(HEADS, value, "output")]
            if value == "softmax" and self.layers[-1] < 2:
                raise ValueError("output='softmax' needs at least 2 output units; use "
                                 "output='sigmoid' or more classes.")
        elif name == "engine":
            value = ENGINES[code_of(ENGINES, value, "engine")]
        elif name == "threads":
            value = check_number(value, "threads", low=1, integer=True, allow_none=True)
        elif name == "classes_" and value is not None:
            value = check_classes(value, self.layers[-1], self.output)
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------ parameters

    @property
    def params(self):
        """List of (W, b) per layer; W is (n_in, n_out). Views: writing into them changes the model."""
        return layer_views(self._flat, self.layers)

    @params.setter
    def params(self, new):
        new = list(new)
        if len(new) != len(self.layers) - 1:
            raise ValueError(f"params needs {len(self.layers) - 1} (W, b) pairs for layers={list(self.layers)}; got {len(new)}.")
        views = self.params
        for l, ((W, b), pair) in enumerate(zip(views, new)):
            if len(pair) != 2:
                raise ValueError(f"params[{l}] must be a (W, b) pair.")
            for name, dst, src in (("W", W, pair[0]), ("b", b, pair[1])):
                src = np.asarray(src)
                if src.shape != dst.shape:
                    raise ValueError(f"params[{l}] {name} has shape {src.shape}; layer {l} needs {dst.shape}.")
                if src.dtype.kind not in "biuf" or not np.isfinite(src).all():
                    raise ValueError(f"params[{l}] {name} must hold finite real numbers.")
        for (W, b), (W_new, b_new) in zip(views, new):
            W[...] = W_new
            b[...] = b_new
        self.fitted_ = True

    @property
    def n_params(self):
        """Number of trainable scalars."""
        return param_count(self.layers)

    @property
    def is_classifier(self):
        return self.output != "identity"

    @property
    def _takes_Y(self):
        """Whether the head trains on the float target matrix Y (regression, multilabel)
        rather than on class indices."""
        return HEADS.index(self.output) in Y_HEADS

    def _network(self, head=None):
        """The engine's view of this model (``head``: another head's code, e.g. the logits')."""
        return _engine().Network(self._flat, tuple(self.layers), ACTIVATIONS.index(self.activation),
                                 HEADS.index(self.output) if head is None else head)

    # ------------------------------------------------------------ targets

    def _encode_targets(self, y, name="y", fitting=False):
        """(y as class indices, Y as float targets): one of them is empty, by head."""
        n_out = self.layers[-1]
        empty_y = np.zeros(0, dtype=np.int64)
        if self.output == "logistic":
            return empty_y, check_label_matrix(y, n_out, name, self.dtype)
        if not self.is_classifier:
            Y = check_targets(y, n_out, name, self.dtype)
            if fitting and self.target_ndim_ is None:
                self.target_ndim_ = np.ndim(y)
            return empty_y, Y
        labels = check_labels(y, name)
        if fitting and self.classes_ is None:
            self.classes_ = classes_for(labels, self.layers[-1])
        if self.classes_ is None:
            raise NotFittedError("the model has no classes yet; call fit before evaluate or score.")
        return class_indices(labels, self.classes_, n_out, name), np.zeros((0, n_out), dtype=self.dtype)

    # ------------------------------------------------------------ training

    def fit(self, X, y, epochs=10, batch_size=BATCH_SIZE, lr=0.1, optimizer="sgd", momentum=0.0,
            nesterov=False, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8, lr_schedule=None,
            shuffle=True, replacement=False, validation_data=None, validation_split=0.0,
            early_stopping=None, callbacks=(), verbose=0, checkpoint=None, checkpoint_every=None,
            resume=None, sample_weight=None, shuffle_block=None):
        """Train on (X, y) and return the history: a dict of per-epoch lists (epoch, loss,
        accuracy, val_loss, val_accuracy, lr, seconds: for epochs trained in one compiled call,
        their mean); ``model.history_`` accumulates every call.
        X (and validation X) may be memory-mapped, an ``np.memmap`` or a
        :class:`~fastmlp.mapped.MappedRows`: it is then read a slice of rows at a time.

        Calling ``fit`` again continues from the current weights, and from the optimizer's
        momentum / Adam moments when the same optimizer is used (a different one starts fresh).
        Minibatches are drawn from one index permutation per epoch (X and y stay paired); with
        ``batch_size=None`` (or one above the number of samples, as scikit-learn clips it) it is
        full-batch gradient descent, its rows in X's order (no permutation is drawn: it would
        change only the rounding of the gradient's sum), with ``replacement=True`` each
        epoch samples n indices with replacement, with ``shuffle=False`` the order is fixed.
        ``shuffle_block=ROWS`` shuffles by blocks for data read from a file larger than memory:
        each epoch visits the blocks of ROWS consecutive rows in a random order and the rows of
        a block in a random order, so the file is read block by block instead of row by row
        at random (minibatches then mix rows of one or two blocks only: make the blocks large,
        and the file's rows not sorted by class).
        ``weight_decay`` is L2 on weights (not biases), added to the gradient. ``lr_schedule``:
        None, "invscaling", "cosine", a {first_epoch: lr} dict or a callable epoch -> lr.
        ``early_stopping=PATIENCE`` stops when the validation loss has not improved for that
        many epochs and restores the best weights. ``callbacks``: functions
        ``f(model, epoch, logs)`` (epoch counted from 1) or ``f(epoch, logs)``, or objects with
        Keras' ``on_train_begin(logs)``, ``on_epoch_begin(epoch, logs)``,
        ``on_epoch_end(epoch, logs)``, ``on_batch_end(batch, logs)``, ``on_train_end(logs)``
        (epoch and batch counted from 0, as in Keras; see :mod:`fastmlp.callbacks`); returning
        True or setting ``model.stop_training`` stops training. ``verbose``: 0 silent, 1 progress bar and a
        line per epoch, 2 a line per epoch. Ctrl-C stops after the current slice of batches,
        keeping every completed update; ``fit`` then returns normally with
        ``model.interrupted_`` set to True. ``TrainingDiverged`` is raised when the loss is NaN
        or Inf, when a weight passes 1e12 in magnitude, or when a slice of minibatches has a
        mean loss above LOSS_BLOWUP times the chance level (for regression: the loss of
        predicting the targets' mean); the weights from before that slice are kept.

        ``sample_weight``: None (all samples count equally) or one finite weight >= 0 per
        sample, not all zero. Each minibatch then minimises the weighted mean of its samples'
        losses (a sample's gradient is scaled by its weight / the minibatch's total weight, as
        scikit-learn's MLPs do; a minibatch of total weight 0 makes a zero-gradient step), and
        the logged ``loss`` (and ``val_loss`` with ``validation_split``, whose validation part
        keeps its samples' weights) is the weighted mean. Accuracies stay unweighted fractions.
        Integer weights w act like repeating each sample w times, up to how minibatches are cut.

        ``checkpoint=PATH`` writes a checkpoint (atomically) every ``checkpoint_every`` epochs
        (default 1) and at the end: weights, optimizer state, the shuffling generator, history
        and the fit arguments. ``resume=PATH`` continues a run from its checkpoint: pass the same
        data and arguments (a mismatch raises ValueError); the epochs already done are skipped,
        so the run still trains ``epochs`` in total and ends bitwise identical to an
        uninterrupted one (same engine and threads). Ctrl-C and divergence leave the last
        checkpoint as it was. See :mod:`fastmlp.checkpoint`.
        """
        hp = check_fit_args(epochs, batch_size, lr, optimizer, momentum, nesterov,
                                  weight_decay, beta1, beta2, eps, early_stopping, verbose)
        shuffle_block = check_number(shuffle_block, "shuffle_block", low=1, integer=True,
                                     allow_none=True, example=65536)
        if shuffle_block is not None and (replacement or not shuffle):
            raise ValueError("shuffle_block applies to shuffled epochs: drop it, or pass "
                             "shuffle=True and replacement=False.")
        callbacks = Callbacks(callbacks)
        if checkpoint is not None:
            checkpoint = _checkpoint.check_path(checkpoint, "checkpoint")
        elif checkpoint_every is not None:
            raise ValueError("checkpoint_every needs a file to write to: pass checkpoint='run.ckpt.npz' too.")
        checkpoint_every = check_number(1 if checkpoint_every is None else checkpoint_every,
                                        "checkpoint_every", low=1, integer=True, example=5)
        resumed = None if resume is None else _checkpoint.Resume(
            _checkpoint.check_path(resume, "resume"), type(self), self)
        X = check_rows(X, "X", self.layers[0], self.dtype)
        weights = check_sample_weight(sample_weight, X.shape[0], self.dtype)
        y_idx, Y = self._encode_targets(y, "y", fitting=True)
        check_same_length(X, Y if self._takes_Y else y_idx)
        validation_split = check_number(validation_split, "validation_split", low=0, high=1, high_open=True)
        if validation_split and validation_data is not None:
            raise ValueError("pass either validation_data or validation_split, not both.")
        if validation_split:
            from .data import train_test_split

            rows, t_train, rows_val, t_val = train_test_split(
                np.arange(X.shape[0]), Y if self._takes_Y else y_idx, validation_split, self.seed,
                stratify=not self._takes_Y)
            X, X_val = select_rows(X, rows), select_rows(X, rows_val)
            weights, val_weights = (None, None) if weights is None else (weights[rows], weights[rows_val])
            if len(X_val) == 0 or len(X) == 0:
                raise ValueError(
                    f"validation_split={validation_split} of {len(X) + len(X_val)} samples leaves "
                    f"{len(X)} for training and {len(X_val)} for validation (the split is per class); "
                    f"pass more data, another fraction, or validation_data=(X_val, y_val)."
                )
            if self._takes_Y:
                Y, val = t_train, (X_val, y_idx, t_val, val_weights)
            else:
                y_idx, val = t_train, (X_val, t_val, Y, val_weights)
        elif validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a tuple (X_val, y_val).")
            X_val = check_rows(validation_data[0], "validation_data X", self.layers[0], self.dtype)
            y_val, Y_val = self._encode_targets(validation_data[1], "validation_data y")
            check_same_length(X_val, Y_val if self._takes_Y else y_val, "validation_data X", "validation_data y")
            val = (X_val, y_val, Y_val, None)
        else:
            val = None
        if early_stopping is not None and val is None:
            raise ValueError("early_stopping needs validation data: pass validation_data=(X_val, y_val) or validation_split=0.1.")
        n = X.shape[0]
        self.epoch_samples_ = n
        batch = check_batch_size(hp["batch_size"], n)
        schedule = make_schedule(lr_schedule, hp["lr"], hp["epochs"])
        fit_args = None
        if checkpoint is not None or resumed is not None:
            data = [X, y_idx, Y] + ([] if val is None else [a for a in val if a is not None])
            if weights is not None:         # part of the data: resuming with others is refused
                data += [weights] + ([] if val is None or val[3] is None else [val[3]])
            fit_args = _checkpoint.fit_arguments(hp, batch, shuffle, replacement, lr_schedule,
                                                 validation_split, validation_data is not None, n,
                                                 _checkpoint.data_fingerprint(data), shuffle_block)
        history = {}
        best = None  # (val_loss, flat copy, epoch) for early stopping
        start, stopped = 0, False
        if resumed is not None:
            resumed.check_fit(fit_args)
            resumed.check_classes(self)
            start, history, best, stopped = resumed.apply(self)
            if stopped:       # early stopping or a callback ended that run: nothing left to do
                start = hp["epochs"]
        self._ensure_optimizer(hp["optimizer"])
        self._loss_limit = LOSS_BLOWUP * self._chance_loss(Y)
        self.fitted_ = True
        self.stop_training = False
        hyper = _engine().Hyper.of(hp["optimizer"], 1.0, hp["momentum"], hp["nesterov"],
                                   hp["weight_decay"], hp["beta1"], hp["beta2"], hp["eps"])
        # Nothing to run between epochs (no validation, checkpoint, output, per-epoch hook or
        # rate read from a user's function) and each epoch whole minibatches: epochs shorter
        # than a slice then run several to an engine call (each call costs about a millisecond:
        # Python run cold after a step, the threads woken, a slower first step; a tenth of a
        # full-batch step of the notebooks' nets).
        quiet = (val is None and checkpoint is None and not verbose and not callbacks.per_epoch
                 and isinstance(schedule, BUILT_IN_SCHEDULES) and not isinstance(X, MappedRows)
                 and n % batch == 0)
        inputs = _engine().CompressedX()        # X compressed once, if its calls take that
        with StopOnCtrlC() as interrupt:
            if start < hp["epochs"] and callbacks.train_begin(self, {}):
                self.stop_training = True
            epoch = start
            while epoch < hp["epochs"]:
                if self.stop_training:
                    break
                lr_e = schedule(epoch)
                if not isinstance(schedule, BUILT_IN_SCHEDULES):   # those checked their rates
                    check_number(lr_e, f"lr_schedule({epoch})", low=0, low_open=True)
                lr_e = float(lr_e)
                together = (self._epochs_together(history, schedule, epoch, hp["epochs"], n)
                            if quiet else 1)
                if together > 1:
                    if self._train_epochs(X, y_idx, Y, batch, hyper._replace(lr=lr_e),
                                          shuffle_block or bool(shuffle), replacement, together,
                                          history, weights, inputs):
                        epoch += together
                        if interrupt.requested:
                            break
                        continue
                    quiet = False   # blew up, undone: again an epoch per call, to stop where it does
                if callbacks.epoch_begin(epoch, {"lr": lr_e}):
                    self.stop_training = True
                    break
                logs = self._train_epoch(X, y_idx, Y, batch, hyper._replace(lr=lr_e),
                                         shuffle_block or bool(shuffle), replacement, epoch,
                                         verbose, interrupt, weights,
                                         callbacks if callbacks.wants_batches else None, inputs)
                interrupted = logs.pop("interrupted", False)
                if val is not None:
                    val_logs = self._evaluate_arrays(*val)
                    logs.update({"val_" + k: v for k, v in val_logs.items()})
                self._record(history, logs)
                log.info(format_logs(logs, n, self.engine))
                if verbose:
                    echo(format_logs(logs, n, self.engine))
                if early_stopping is not None:
                    if best is None or logs["val_loss"] < best[0]:
                        best = (logs["val_loss"], self._flat.copy(), logs["epoch"])
                    elif logs["epoch"] - best[2] >= early_stopping:
                        if verbose:
                            echo(f"early stopping: no val_loss improvement for {early_stopping} epochs; "
                                  f"restoring the weights of epoch {best[2]}")
                        self.stop_training = True
                if callbacks.epoch_end(epoch, logs):
                    self.stop_training = True
                if (checkpoint is not None and not interrupted and not self.stop_training
                        and (epoch + 1) % checkpoint_every == 0 and epoch + 1 < hp["epochs"]):
                    _checkpoint.save(checkpoint, self, fit_args=fit_args, epoch=epoch + 1,
                                     history=history, best=best, stopped=False)
                if interrupted:
                    if verbose:
                        echo("interrupted: keeping the weights of the last completed step")
                    break
                if self.stop_training:
                    break
                epoch += 1
        self.interrupted_ = interrupt.requested
        if start < hp["epochs"]:
            callbacks.train_end(dict(zip(history, (v[-1] for v in history.values()))))
        if best is not None:
            # Early stopping ends on the best validation weights, also when the epochs run out
            # (or a callback stops) before the patience does.
            self._flat[...] = best[1]
        if checkpoint is not None and not interrupt.requested:
            _checkpoint.save(checkpoint, self, fit_args=fit_args, epoch=len(history.get("epoch", [])),
                             history=history, best=best, stopped=stopped or self.stop_training)
        return history

    def _chance_loss(self, Y):
        """The loss of a model that knows nothing: a classifier with every output at its uniform
        guess, a regression predicting the targets' mean (0 when the targets are constant)."""
        n_out = self.layers[-1]
        if self.output == "identity":
            return float(0.5 * np.mean(np.sum((Y - Y.mean(axis=0, dtype=np.float64)) ** 2, axis=1)))
        return {"softmax": np.log(n_out), "sigmoid": n_out / 8, "logistic": n_out * np.log(2)}[self.output]

    def _ensure_optimizer(self, opt):
        if self._optimizer is None or self._optimizer.opt != opt:
            self._optimizer = _engine().OptimizerState(opt, self._flat.shape[0], self._flat.dtype)

    def _epoch_order(self, n, shuffle, replacement, batch):
        """An epoch's order of the n rows in minibatches of ``batch`` rows. ``shuffle``: True (a
        permutation), False (in order) or an int, the rows of a shuffle block (see ``fit``'s
        ``shuffle_block``). A full batch (``batch`` = n, without replacement) takes the rows in
        order and draws nothing: its gradient is a sum over all rows, whatever their order."""
        if replacement:
            return self._rng.integers(0, n, size=n, dtype=np.int64)
        if batch >= n:
            return np.arange(n, dtype=np.int64)
        if shuffle is True:
            return self._rng.permutation(n).astype(np.int64)
        if shuffle:
            # sort the rows by their block's place in a random order of the blocks, then by
            # a random key: each block's rows together, shuffled within it
            block_place = np.argsort(self._rng.permutation(-(-n // shuffle)))
            keys = self._rng.random(n)
            return np.lexsort((keys, block_place[np.arange(n) // shuffle])).astype(np.int64)
        return np.arange(n, dtype=np.int64)

    def _train_epoch(self, X, y_idx, Y, batch, hyper, shuffle, replacement, epoch, verbose,
                     interrupt, weights=None, callbacks=None, inputs=None):
        """One epoch as a few engine calls of whole minibatches each; returns its logs.
        ``weights``: per-sample weights in the model's dtype, or None. ``callbacks``: a
        :class:`~fastmlp.callbacks.Callbacks` with ``on_batch_end`` hooks (each minibatch is
        then a call of its own), or None. ``inputs``: see :func:`_slice_batches`."""
        engine = _engine()
        start = time.perf_counter()
        n = X.shape[0]
        order = self._epoch_order(n, shuffle, replacement, batch)
        per_call = batch if callbacks is not None else first_slice(self.layers, batch)
        # from a file: at most MAPPED_SLICE_BYTES of converted rows (but whole minibatches)
        most = whole_batches(X.slice_rows(self.dtype), batch) if isinstance(X, MappedRows) else n
        per_call = min(per_call, most)
        totals = engine.Stats(0.0, 0.0, 0, 0, 0.0)
        bar = progress_bar(n, epoch, verbose)
        logs = {"epoch": len(self.history_.get("epoch", [])) + 1}
        try:
            s = 0
            while s < n:
                rows = order[s:s + per_call]
                called = time.perf_counter()
                stats = engine.train(self._network(), self._optimizer,
                                     _slice_batches(X, y_idx, Y, weights, rows, batch, n, self.dtype,
                                                    self.engine, inputs),
                                     hyper, self.threads, self.engine, loss_limit=self._loss_limit)
                if callbacks is None:
                    rate = stats.samples / max(time.perf_counter() - called, 1e-6)
                    per_call = min(whole_batches(rate * SLICE_SECONDS, batch), most)
                totals += stats
                if stats.diverged_at is not None:
                    raise _nan_loss(logs["epoch"], (s // batch) + stats.diverged_at + 1, stats,
                                    hyper.lr)
                if stats.overflowed:
                    # A finite loss on each minibatch, but the weights or the loss blew up.
                    step = (s + len(rows)) // batch + ((s + len(rows)) % batch > 0)
                    raise TrainingDiverged(
                        f"training diverged at epoch {logs['epoch']}, step {step}: {stats.why} "
                        f"(loss={totals.mean_loss}); lower the learning rate (now {hyper.lr}). "
                        f"The weights from before step {s // batch + 1} are kept."
                    )
                if self._loss_limit == 0:       # constant targets: from the first slice's loss
                    self._loss_limit = LOSS_BLOWUP * max(stats.mean_loss, 1e-12)
                if bar is not None:
                    bar.update(stats.samples)
                    bar.set_postfix(loss=f"{totals.mean_loss:.4f}")
                if callbacks is not None:
                    batch_logs = {"batch": s // batch, "size": stats.samples,
                                  "loss": float(stats.mean_loss)}
                    if self.is_classifier:
                        batch_logs["accuracy"] = float(stats.accuracy)
                    if callbacks.batch_end(s // batch, batch_logs):
                        self.stop_training = True
                    if self.stop_training:
                        break
                s += len(rows)
                if interrupt.requested:
                    logs["interrupted"] = True
                    break
        finally:
            if bar is not None:
                bar.close()
        return self._epoch_logs(logs, totals, hyper.lr, time.perf_counter() - start)

    def _epoch_logs(self, logs, totals, lr, seconds):
        """``logs`` completed with an epoch's statistics ``totals`` (an engine ``Stats``)."""
        logs["loss"] = float(totals.mean_loss)
        if self.is_classifier:
            logs["accuracy"] = float(totals.accuracy)
        logs["lr"] = lr
        logs["seconds"] = seconds
        logs["samples"] = int(totals.samples)
        logs["engine"] = totals.engine or self.engine
        return logs

    def _epochs_together(self, history, schedule, epoch, epochs, n):
        """How many epochs from ``epoch`` on fit may run in one engine call: as many as the last
        epoch's rate does in SLICE_SECONDS, at the same learning rate, of TOGETHER_MAX_ROWS rows
        at most; 1 for the first epoch of a fit (no rate yet), or when the loss limit is not set
        yet (constant targets)."""
        if not history.get("seconds") or self._loss_limit == 0:
            return 1
        rate = history["samples"][-1] / max(history["seconds"][-1], 1e-6)
        most = min(epochs - epoch, int(rate * SLICE_SECONDS) // n, TOGETHER_MAX_ROWS // n)
        together = 1
        while together < most and schedule(epoch + together) == schedule(epoch):
            together += 1
        return together

    def _train_epochs(self, X, y_idx, Y, batch, hyper, shuffle, replacement, count, history,
                      weights=None, inputs=None):
        """``count`` epochs of whole minibatches of ``batch`` rows in one engine call, each
        recorded in ``history``. The orders are drawn and the minibatches trained as ``count``
        calls of :meth:`_train_epoch` would (the same bits), but nothing runs between the
        epochs. Raises TrainingDiverged as that does, after recording the epochs completed.
        Returns False, having trained and drawn nothing, when the weights or the loss blew up
        (the engine's guard put them back): the caller then runs these epochs one call each, to
        raise where that stops."""
        start = time.perf_counter()
        n = X.shape[0]
        drawn_from = self._rng.bit_generator.state
        order = np.concatenate([self._epoch_order(n, shuffle, replacement, batch)
                                for _ in range(count)])
        stats = _engine().train(self._network(), self._optimizer,
                                _slice_batches(X, y_idx, Y, weights, order, batch, n, self.dtype,
                                               self.engine, inputs),
                                hyper, self.threads, self.engine, loss_limit=self._loss_limit,
                                trace=True)
        if stats.overflowed:
            self._rng.bit_generator.state = drawn_from
            return False
        first = len(self.history_.get("epoch", [])) + 1
        steps = n // batch                      # per epoch
        seconds = (time.perf_counter() - start) / count
        for e in range(stats.steps // steps):
            # summed in the order the engine adds an epoch's minibatches up (the same bits)
            loss_sum, correct, samples, weight = np.cumsum(
                stats.trace[e * steps:(e + 1) * steps], axis=0)[-1]
            totals = stats._replace(loss_sum=loss_sum, correct=correct, samples=int(samples),
                                    steps=steps, weight=weight, trace=None)
            logs = self._epoch_logs({"epoch": first + e}, totals, hyper.lr, seconds)
            self._record(history, logs)
            log.info(format_logs(logs, n, self.engine))
        if stats.diverged_at is not None:
            epoch, step = divmod(stats.diverged_at, steps)
            raise _nan_loss(first + epoch, step + 1, stats, hyper.lr)
        return True

    def _record(self, history, logs):
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
            self.history_.setdefault(key, []).append(value)

    # ------------------------------------------------------------ inference

    def _check_fitted(self):
        if not self.fitted_:
            raise NotFittedError("this MLP has not been trained yet; call fit(X, y) (or load a saved model) first.")

    def _output(self, X, head=None):
        """The head's output for X (or that of ``head``, a code: HEAD_IDENTITY gives the logits);
        from a :class:`MappedRows` one slice of rows at a time."""
        net = self._network(head)
        if not isinstance(X, MappedRows):
            return _engine().predict(net, X, self.threads, self.engine)
        out = np.empty((X.shape[0], self.layers[-1]), dtype=self.dtype)
        for start, part in X.blocks(self.dtype, engine=self.engine):
            out[start:start + len(part)] = _engine().predict(net, part, self.threads, self.engine)
        return out

    def predict_proba(self, X):
        """Class probabilities (n, n_classes): softmax, or the sigmoid outputs for
        output='sigmoid'; for output='logistic' each label's probability (n, n_labels)."""
        self._check_fitted()
        if not self.is_classifier:
            raise ValueError("predict_proba is for classifiers; this model has output='identity' (use predict).")
        return self._output(check_rows(X, "X", self.layers[0], self.dtype))

    def predict(self, X):
        """Predicted class labels (classifiers), values (regression), or for output='logistic'
        the 0/1 label matrix (n, n_labels): 1 where the logit is above 0 (probability > 0.5)."""
        self._check_fitted()
        X = check_rows(X, "X", self.layers[0], self.dtype)
        if self.output == "logistic":
            return (self._output(X, head=HEAD_IDENTITY) > 0).astype(np.int64)
        out = self._output(X)
        if not self.is_classifier:
            return out[:, 0] if self.target_ndim_ == 1 else out
        if self.classes_ is None:
            return out.argmax(axis=1)
        return self.classes_[out.argmax(axis=1)]

    def _evaluate_arrays(self, X, y_idx, Y, weights=None):
        if isinstance(X, MappedRows):       # one slice of rows at a time, the sums added up
            loss_sum = correct = 0.0
            for start, part in X.blocks(self.dtype, engine=self.engine):
                rows = slice(start, start + len(part))
                loss, right = _engine().evaluate(self._network(), part, _pick(y_idx, rows),
                                                 _pick(Y, rows), _pick(weights, rows),
                                                 self.threads, self.engine)
                loss_sum, correct = loss_sum + loss, correct + right
        else:
            loss_sum, correct = _engine().evaluate(self._network(), X, y_idx, Y, weights,
                                                   self.threads, self.engine)
        if weights is None:
            result = {"loss": float(loss_sum / X.shape[0])}
        else:
            total = float(weights.sum(dtype=np.float64))
            result = {"loss": float(loss_sum / total) if total > 0 else 0.0}
        if self.is_classifier:
            result["accuracy"] = float(correct / X.shape[0])
        return result

    def evaluate(self, X, y):
        """{"loss": mean loss, "accuracy": fraction correct} (no accuracy for regression; for
        output='logistic' the fraction of samples with every label right, subset accuracy)."""
        self._check_fitted()
        X = check_rows(X, "X", self.layers[0], self.dtype)
        y_idx, Y = self._encode_targets(y)
        check_same_length(X, Y if self._takes_Y else y_idx)
        return self._evaluate_arrays(X, y_idx, Y)

    def score(self, X, y):
        """Accuracy for classifiers (subset accuracy for output='logistic', as scikit-learn
        scores multilabel predictions); the coefficient of determination R^2 for regression."""
        if self.is_classifier:
            return self.evaluate(X, y)["accuracy"]
        self._check_fitted()
        pred = self.predict(X).reshape(len(X), -1).astype(np.float64)
        Y = check_targets(y, self.layers[-1], "y", np.float64)
        check_same_length(pred, Y)
        residual = ((Y - pred) ** 2).sum(axis=0)
        total = ((Y - Y.mean(axis=0)) ** 2).sum(axis=0)
        return float(np.mean(1 - residual / np.where(total == 0, 1, total)))

    # ------------------------------------------------------------ scikit-learn exchange

    @classmethod
    def from_sklearn(cls, estimator, **kwargs):
        """A model holding the weights of a fitted scikit-learn ``MLPClassifier`` /
        ``MLPRegressor`` (or ``fastmlp.sklearn``'s); see :func:`fastmlp.exchange.from_sklearn`."""
        from .exchange import from_sklearn

        return from_sklearn(cls, estimator, **kwargs)

    def to_sklearn(self):
        """A fitted scikit-learn estimator with a copy of these weights; see
        :func:`fastmlp.exchange.to_sklearn`."""
        from .exchange import to_sklearn

        self._check_fitted()
        return to_sklearn(self)

    def to_onnx(self, path):
        """Write the fitted model as an ONNX graph to ``path`` (atomically): predictions under
        onnxruntime equal ``predict_proba`` / ``predict``; see :mod:`fastmlp.export`. Needs
        ``pip install "fastmlp[onnx]"``."""
        from .export import to_onnx

        return to_onnx(self, path)

    def summary(self, print_fn=print):
        """Print the layers, their shapes and parameter counts (as Keras' ``summary``) through
        ``print_fn``; returns the text."""
        rows = [("layer", "shape", "activation", "parameters")]
        for i, (n_in, n_out) in enumerate(zip(self.layers[:-1], self.layers[1:])):
            last = i == len(self.layers) - 2
            rows.append((f"dense {i + 1}" + (" (output)" if last else ""), f"{n_in} -> {n_out}",
                         self.output if last else self.activation, f"{n_in * n_out + n_out:,}"))
        widths = [max(len(row[k]) for row in rows) for k in range(4)]
        lines = [f"MLP {'-'.join(map(str, self.layers))}, {np.dtype(self.dtype).name}, engine "
                 f"{self.engine}" + ("" if self.fitted_ else " (not trained yet)")]
        for row in rows:
            lines.append("  ".join(f"{cell:<{w}}" if k < 3 else f"{cell:>{w}}"
                                   for k, (cell, w) in enumerate(zip(row, widths))).rstrip())
        lines.append(f"total parameters: {self.n_params:,} "
                     f"({self.n_params * np.dtype(self.dtype).itemsize / 1024:,.1f} KiB)")
        text = "\n".join(lines)
        print_fn(text)
        return text

    # ------------------------------------------------------------ files

    def get_config(self):
        """The constructor arguments, as a JSON-friendly dict."""
        return {"layers": list(self.layers), "activation": self.activation, "output": self.output,
                "init": self.init, "dtype": self.dtype, "seed": self.seed, "engine": self.engine,
                "threads": self.threads}

    def _file_contents(self):
        """(JSON config, arrays) of a model file; checkpoints add their own entries to both."""
        config = {"model": self.get_config(), "fitted": self.fitted_, "target_ndim": self.target_ndim_,
                  "history": self.history_}
        arrays = {"params": self._flat}
        if self.classes_ is not None:
            arrays["classes"] = self.classes_
        return config, arrays

    def save(self, path):
        """Write the model to one .npz (weights, classes and a JSON config), atomically."""
        write_npz_atomic(path, *self._file_contents())

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (never unpickles). A checkpoint written by
        ``fit(checkpoint=...)`` loads as the model at that epoch."""
        path = os.fspath(path)
        return model_from_contents(cls, path, *read_npz(path))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"MLP({args})"


# ---------------------------------------------------------------- helpers
