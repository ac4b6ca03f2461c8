"""fit's training features: validation, early stopping, callbacks, verbose output, logging and
Ctrl-C handling (in-process, by raising SIGINT from inside fit)."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastmlp.model
from fastmlp import MLP

from helpers import blobs, noisy_problem

ROOT = Path(__file__).resolve().parents[1]


def flat(model):
    return np.concatenate([t.ravel() for pair in model.params for t in pair])


# ---------------------------------------------------------------- validation


def test_validation_split_reports_val_metrics_each_epoch():
    X, y = blobs()
    history = MLP([4, 16, 3], seed=0).fit(X, y, epochs=4, batch_size=16, validation_split=0.25)
    for key in ("val_loss", "val_accuracy"):
        assert len(history[key]) == 4, key
        assert all(np.isfinite(history[key])), key
    assert history["val_accuracy"][-1] >= 0.9


def test_validation_data_metrics_match_evaluate():
    X, y = blobs(seed=1)
    X_val, y_val = blobs(n=90, seed=1)
    model = MLP([4, 16, 3], seed=0)
    history = model.fit(X, y, epochs=3, batch_size=16, validation_data=(X_val, y_val))
    assert len(history["val_loss"]) == len(history["val_accuracy"]) == 3
    final = model.evaluate(X_val, y_val)
    assert history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)
    assert history["val_accuracy"][-1] == pytest.approx(final["accuracy"])


def test_validation_split_and_data_are_exclusive():
    X, y = blobs(n=60)
    with pytest.raises(ValueError, match="either validation_data or validation_split"):
        MLP([4, 3]).fit(X, y, validation_split=0.2, validation_data=(X, y))


def test_no_validation_no_val_keys():
    X, y = blobs(n=60)
    history = MLP([4, 3]).fit(X, y, epochs=2, batch_size=10)
    assert "val_loss" not in history and "val_accuracy" not in history


# ---------------------------------------------------------------- early stopping


def test_early_stopping_stops_early_and_restores_best_weights():
    X, y, X_val, y_val = noisy_problem()
    model = MLP([4, 64, 64, 2], seed=0)
    patience = 3
    history = model.fit(X, y, epochs=200, batch_size=8, lr=0.3, validation_data=(X_val, y_val),
                        early_stopping=patience)
    val = history["val_loss"]
    assert len(val) < 200, "early stopping never triggered"
    best = int(np.argmin(val))
    assert len(val) - 1 - best == patience, "stopped after the wrong number of epochs"
    assert model.evaluate(X_val, y_val)["loss"] == pytest.approx(val[best], rel=1e-6), \
        "the model does not hold the weights of its best epoch"


def test_early_stopping_with_validation_split():
    X, y, _, _ = noisy_problem(seed=2)
    history = MLP([4, 64, 64, 2], seed=0).fit(X, y, epochs=200, batch_size=8, lr=0.3,
                                              validation_split=0.3, early_stopping=2)
    assert len(history["val_loss"]) < 200
    assert len(history["val_loss"]) - 1 - int(np.argmin(history["val_loss"])) == 2


# ---------------------------------------------------------------- callbacks


def test_callbacks_receive_logs_function_and_object():
    X, y = blobs(n=90)
    seen = []

    def record(model, epoch, logs):
        seen.append(("f", epoch, dict(logs)))

    class Recorder:
        def on_epoch_end(self, model, epoch, logs):
            seen.append(("o", epoch, dict(logs)))

    model = MLP([4, 8, 3], seed=0)
    history = model.fit(X, y, epochs=3, batch_size=10, validation_split=0.2,
                        callbacks=[record, Recorder()])
    assert [(kind, epoch) for kind, epoch, _ in seen] == [("f", 1), ("o", 1), ("f", 2), ("o", 2),
                                                           ("f", 3), ("o", 3)]
    for kind, epoch, logs in seen:
        assert set(logs) == {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds",
                             "samples", "engine"}
        assert logs["engine"] == "numba"            # FASTMLP_COMPILE=wait (conftest.py)
        assert logs["epoch"] == epoch
        assert logs["loss"] == history["loss"][epoch - 1]
        assert logs["val_loss"] == history["val_loss"][epoch - 1]


@pytest.mark.parametrize("how", ["return True", "stop_training", "object return True"])
def test_callbacks_can_stop_training(how):
    X, y = blobs(n=60)

    def function(model, epoch, logs):
        if epoch == 2:
            if how == "stop_training":
                model.stop_training = True
            else:
                return True
        return None

    class Stopper:
        def on_epoch_end(self, model, epoch, logs):
            return function(model, epoch, logs)

    callback = Stopper() if how.startswith("object") else function
    model = MLP([4, 8, 3], seed=0)
    history = model.fit(X, y, epochs=10, batch_size=10, callbacks=[callback])
    assert history["epoch"] == [1, 2]
    assert model.stop_training
    # the flag does not leak into the next fit
    assert MLP([4, 8, 3]).fit(X, y, epochs=3, batch_size=10)["epoch"] == [1, 2, 3]
    assert model.fit(X, y, epochs=1, batch_size=10)["epoch"] == [3]


# ---------------------------------------------------------------- verbose and logging


def test_verbose_0_prints_nothing(capsys):
    X, y = blobs(n=60)
    MLP([4, 8, 3]).fit(X, y, epochs=3, batch_size=10, validation_split=0.2, verbose=0)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_2_prints_one_line_per_epoch(capsys):
    X, y = blobs(n=60)
    MLP([4, 8, 3]).fit(X, y, epochs=3, batch_size=10, validation_split=0.2, verbose=2)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 3, captured.out
    for k, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {k} ")
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            assert f" {key} " in line, (key, line)
    assert captured.err == "", "verbose=2 draws no progress bar"


def test_verbose_1_lines_on_stdout_bar_on_stderr(capsys):
    X, y = blobs(n=60)
    MLP([4, 8, 3]).fit(X, y, epochs=2, batch_size=10, verbose=1)
    captured = capsys.readouterr()
    assert [line.split()[:2] for line in captured.out.splitlines()] == [["epoch", "1"], ["epoch", "2"]]
    assert "epoch 1:" in captured.err and "epoch 2:" in captured.err, "no progress bar on stderr"
    assert "sample" in captured.err


def test_library_logs_each_epoch_to_the_fastmlp_logger(caplog):
    X, y = blobs(n=60)
    with caplog.at_level(logging.INFO, logger="fastmlp"):
        MLP([4, 8, 3]).fit(X, y, epochs=3, batch_size=10)
    records = [r for r in caplog.records if r.name == "fastmlp"]
    assert [r.levelno for r in records] == [logging.INFO] * 3
    assert [r.getMessage().split()[:2] for r in records] == [["epoch", "1"], ["epoch", "2"], ["epoch", "3"]]


def test_library_is_quiet_by_default():
    """A fresh interpreter with no logging configured: fit(verbose=0) writes nothing at all."""
    code = ("import numpy as np; from fastmlp import MLP; "
            "X = np.random.default_rng(0).normal(size=(60, 4)); y = np.arange(60) % 3; "
            "MLP([4, 8, 3]).fit(X, y, epochs=2, batch_size=10, validation_split=0.2)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


# ---------------------------------------------------------------- Ctrl-C inside fit


def test_ctrl_c_in_a_callback_stops_after_the_next_slice():
    """SIGINT raised at the end of epoch 1: fit runs the one slice it is in (the whole of epoch 2,
    which is smaller than a slice), then returns normally with its history and the handler
    it found."""
    X, y = blobs()
    handler_before = signal.getsignal(signal.SIGINT)

    def press_ctrl_c(model, epoch, logs):
        if epoch == 1:
            signal.raise_signal(signal.SIGINT)

    model = MLP([4, 16, 3], seed=0)
    history = model.fit(X, y, epochs=50, batch_size=16, validation_split=0.2, callbacks=[press_ctrl_c])
    assert model.interrupted_
    assert history["epoch"] == [1, 2]
    assert all(len(history[key]) == 2 for key in ("loss", "accuracy", "val_loss", "val_accuracy"))
    assert np.isfinite(flat(model)).all()
    assert signal.getsignal(signal.SIGINT) is handler_before
    # a later fit is not interrupted
    model.fit(X, y, epochs=1, batch_size=16)
    assert not model.interrupted_


def test_ctrl_c_mid_epoch_keeps_the_completed_slices(monkeypatch):
    """With slices of 4 minibatches, SIGINT during the third slice of epoch 1: the epoch ends
    after that slice, with exactly 3 x 4 optimizer steps taken, and says it trained 3 x 64 of
    its 640 samples."""
    monkeypatch.setattr(fastmlp.model, "SLICE_SAMPLES", 64)
    monkeypatch.setattr(fastmlp.model, "whole_batches", lambda samples, batch: 64)
    import fastmlp.engine as engine

    real = engine.train_batches
    calls = []

    def train_batches(*args):
        calls.append(1)
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)
        return real(*args)

    monkeypatch.setattr(engine, "train_batches", train_batches)
    X, y = blobs(n=640)
    model = MLP([4, 16, 3], seed=0)
    history = model.fit(X, y, epochs=5, batch_size=16)
    assert model.interrupted_
    assert len(calls) == 3
    assert history["epoch"] == [1]
    assert model._optimizer.step == 3 * 4, "optimizer steps taken"
    assert history["samples"] == [3 * 64]
    assert np.isfinite(flat(model)).all() and np.isfinite(history["loss"][0])


def test_second_ctrl_c_raises_keyboard_interrupt():
    """The second press reaches the handler fit found: Python's own, which raises. It is set
    here, not taken from the test process: a run of the suite failed here once with nothing
    raised, in under 2.2 s (so each press had been handled), which a handler that does not
    raise explains."""
    X, y = blobs(n=60)
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    handler_before = signal.getsignal(signal.SIGINT)

    def press_twice(model, epoch, logs):
        signal.raise_signal(signal.SIGINT)
        # the second press only after the first one's handler has run (it puts the previous
        # handler back): two signals raised before Python runs a handler count as one
        for _ in range(1000):
            if signal.getsignal(signal.SIGINT) is handler_before:
                break
            time.sleep(0.001)
        signal.raise_signal(signal.SIGINT)

    try:
        with pytest.raises(KeyboardInterrupt):
            MLP([4, 8, 3]).fit(X, y, epochs=5, batch_size=10, callbacks=[press_twice])
        assert signal.getsignal(signal.SIGINT) is handler_before
    finally:
        signal.signal(signal.SIGINT, inherited)


# ---------------------------------------------------------------- sample weights

@pytest.mark.parametrize("bad,pattern", [
    (np.ones((240, 1)), r"1-D with one weight per sample: shape \(240,\); got shape \(240, 1\)"),
    (np.ones(239), r"shape \(240,\); got shape \(239,\)"),
    (2.0, r"got shape \(\)"),
    (np.r_[np.nan, np.ones(239)], "sample_weight must be finite; sample 0 has nan"),
    (np.r_[np.ones(5), -1, np.ones(234)], "sample_weight must be >= 0; sample 5 has -1.0"),
    (np.zeros(240), "all zero"),
    (["a"] * 240, "array of n_samples=240 numbers"),
])
def test_fit_checks_sample_weight(bad, pattern):
    X, y = blobs()
    m = MLP([4, 8, 3], seed=0)
    before = m._flat.copy()
    with pytest.raises(ValueError, match=pattern):
        m.fit(X, y, epochs=1, sample_weight=bad)
    np.testing.assert_array_equal(m._flat, before)


@pytest.mark.parametrize("output", ["softmax", "identity"])
def test_integer_weights_equal_repeated_samples_full_batch(engine, output):
    """Full-batch gradient descent: weight k is the same as k copies of the sample (0: absent)."""
    X, y = blobs(n=60)
    X = X.astype(np.float64)
    target = y if output == "softmax" else X[:, :2] * 0.5
    w = np.arange(60) % 4                       # 0, 1, 2 or 3 copies
    runs = []
    for args in ((X, target, w), (np.repeat(X, w, axis=0), np.repeat(target, w, axis=0), None)):
        m = MLP([4, 8, 3 if output == "softmax" else 2], output=output, dtype="float64", seed=1,
                engine=engine)
        hist = m.fit(args[0], args[1], epochs=5, batch_size=None, lr=0.1, momentum=0.9,
                     weight_decay=1e-3, sample_weight=args[2])
        runs.append((m._flat.copy(), hist["loss"]))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-10)


def test_weights_steer_the_fit():
    """Every input appears twice, labelled 0 with weight 3 and 1 with weight 1: the weighted fit
    learns P(class 0) = 3/4, the unweighted one 1/2."""
    X, _ = blobs()
    X2 = np.vstack([X, X])
    y2 = np.r_[np.zeros(len(X), int), np.ones(len(X), int)]
    w = np.r_[np.full(len(X), 3.0), np.ones(len(X))]
    for weights, expected in ((w, 0.75), (None, 0.5)):
        m = MLP([4, 8, 2], seed=0)
        hist = m.fit(X2, y2, epochs=15, batch_size=32, lr=0.01, optimizer="adam", sample_weight=weights)
        assert m.predict_proba(X)[:, 0].mean() == pytest.approx(expected, abs=0.03), weights
        # the logged loss is the weighted mean: the entropy of (3/4, 1/4) at the optimum
        best = -(expected * np.log(expected) + (1 - expected) * np.log(1 - expected))
        assert hist["loss"][-1] == pytest.approx(best, abs=0.02)


@pytest.mark.parametrize("threads", [1, 2])
def test_how_an_epoch_is_cut_into_calls_does_not_change_a_bit(monkeypatch, threads):
    """fit sizes its compiled calls by time; every call is planned for the whole epoch, so
    calls of one minibatch each end on the same weights as the usual few large calls (here
    where the plan is the units scheme, which a call of one minibatch would not take)."""
    import fastmlp.engine as engine
    from fastmlp.engine import plan

    X, y = blobs(n=640, n_features=20)
    assert plan.plan_training(threads, 16, (20, 64, 3), 640).scheme == "units"
    usual = MLP([20, 64, 3], seed=0, threads=threads)
    usual.fit(X, y, epochs=2, batch_size=16, momentum=0.9)
    schemes = []
    real = plan.scheme
    monkeypatch.setattr(plan, "scheme", lambda *a: schemes.append(real(*a)) or schemes[-1])
    monkeypatch.setattr(fastmlp.model, "SLICE_SAMPLES", 16)
    monkeypatch.setattr(fastmlp.model, "whole_batches", lambda samples, batch: batch)
    cut = MLP([20, 64, 3], seed=0, threads=threads)
    cut.fit(X, y, epochs=2, batch_size=16, momentum=0.9)
    assert len(schemes) == 2 * 40 * 2 and set(schemes) == {"units"}   # planned, then run
    np.testing.assert_array_equal(flat(cut), flat(usual))
    assert engine.Batches(X, y, y, np.arange(5), 2).planned_rows == 5


# ---------------------------------------------------------------- short epochs in one call


def engine_calls(monkeypatch):
    """A list that gets one entry per engine ``train`` call made from now on: its epochs' rows."""
    import fastmlp.engine as engine

    real, calls = engine.train, []

    def counted(net, state, batches, *args, **kwargs):
        calls.append(len(batches.order))
        return real(net, state, batches, *args, **kwargs)

    monkeypatch.setattr(engine, "train", counted)
    return calls


def on_each_epoch(epoch, logs):
    """An epoch-end callback that does nothing: it makes fit run every epoch on its own."""


SHORT_EPOCHS = {
    "full-batch": dict(batch_size=None),
    "momentum": dict(batch_size=16, momentum=0.9),
    "adam-replacement-weights": dict(batch_size=32, optimizer="adam", replacement=True,
                                     sample_weight=np.linspace(0.5, 2, 128)),
    "in-order-schedule": dict(batch_size=8, shuffle=False, lr_schedule={0: 0.1, 5: 0.05}),
    "shuffle-block-decay": dict(batch_size=16, shuffle_block=40, weight_decay=1e-3),
}


@pytest.mark.parametrize("kw", SHORT_EPOCHS.values(), ids=SHORT_EPOCHS)
def test_short_epochs_in_one_call_end_on_the_same_bits_and_history(engine, monkeypatch, kw):
    """Epochs much shorter than a slice (SLICE_SECONDS) run several to an engine call when fit
    has nothing to do between them; the orders, weights and every logged number are those of
    one call per epoch (the calls a per-epoch callback asks for)."""
    X, y = blobs(n=128, n_features=6)
    calls = engine_calls(monkeypatch)
    together = MLP([6, 12, 3], seed=3, engine=engine)
    history = together.fit(X, y, epochs=12, lr=0.1, **kw)
    assert len(calls) < 12 and sum(calls) == 12 * 128
    del calls[:]
    alone = MLP([6, 12, 3], seed=3, engine=engine)
    expected = alone.fit(X, y, epochs=12, lr=0.1, callbacks=[on_each_epoch], **kw)
    assert len(calls) == 12
    np.testing.assert_array_equal(flat(together), flat(alone))
    assert together._optimizer.step == alone._optimizer.step
    for key in ("epoch", "loss", "accuracy", "lr", "samples", "engine"):
        assert history[key] == expected[key], key
    assert together.history_["epoch"] == list(range(1, 13))
    # the shuffling generator went on alike: the next fit's first order is the same
    assert together._rng.integers(1 << 30) == alone._rng.integers(1 << 30)


def test_epochs_together_take_at_most_together_max_rows(monkeypatch):
    """However fast the epochs, a call's order and trace stay bounded."""
    monkeypatch.setattr(fastmlp.model, "TOGETHER_MAX_ROWS", 64)
    X, y = blobs(n=16, n_features=6)
    calls = engine_calls(monkeypatch)
    MLP([6, 12, 3]).fit(X, y, epochs=40, batch_size=None)
    assert sum(calls) == 40 * 16 and max(calls) == 64


def test_an_epoch_that_is_not_whole_minibatches_runs_alone(monkeypatch):
    """Minibatches are cut from the call's order: with a short last minibatch, an epoch per call."""
    X, y = blobs(n=100, n_features=6)
    calls = engine_calls(monkeypatch)
    MLP([6, 12, 3]).fit(X, y, epochs=4, batch_size=16)
    assert calls == [100] * 4


def test_a_nan_in_a_call_of_several_epochs_names_its_epoch_and_step(monkeypatch):
    """The engine stops a call of several epochs at a minibatch with a NaN loss (here: said so
    of minibatch 2 * 8 + 5, the sixth of the call's third epoch): fit records the two epochs
    completed in it and names epoch and step as for one call per epoch."""
    import fastmlp.engine as engine

    real = engine.train

    def nan_at_21(net, state, batches, *args, trace=False, **kwargs):
        stats = real(net, state, batches, *args, trace=trace, **kwargs)
        if not trace:
            return stats
        return stats._replace(diverged_at=21, bad_loss=float("nan"), steps=21,
                              trace=stats.trace[:21])

    monkeypatch.setattr(engine, "train", nan_at_21)
    X, y = blobs(n=128, n_features=6)
    model = MLP([6, 12, 3], seed=0)
    with pytest.raises(fastmlp.TrainingDiverged) as info:
        model.fit(X, y, epochs=12, batch_size=16)
    # epochs before the call ran one a call (the first at least, for the rate); the call's
    # first two epochs are recorded, and the message names the next
    done = model.history_["epoch"]
    assert len(done) >= 3 and done == list(range(1, len(done) + 1))
    assert str(info.value).startswith(f"training diverged at epoch {len(done) + 1}, step 6: "
                                      "loss=nan")


def blowing_up(kind):
    """(X, y, fit arguments): training that blows up in epoch 3, in a call of several epochs:
    weights past WEIGHT_LIMIT (momentum), or a NaN loss (a rate raised at epoch 2)."""
    rng = np.random.default_rng(0)
    if kind == "weights":
        X = rng.normal(size=(64, 5)).astype(np.float32) * 4
        return X, np.arange(64) % 3, dict(batch_size=16, lr=0.9, momentum=0.99)
    X = (rng.normal(size=(200, 5)) * 1000 + 500).astype(np.float32)
    return X, np.arange(200) % 3, dict(batch_size=20, lr=1.0, lr_schedule={0: 1e-7, 2: 1.0})


@pytest.mark.parametrize("kind", ["weights", "nan"])
def test_a_call_of_several_epochs_that_blows_up_stops_where_one_per_epoch_does(engine, monkeypatch,
                                                                              kind):
    """Weights or loss out of range in a call of several epochs: that call is undone and its
    epochs run again one call each, so fit raises the same message, keeps the same weights and
    history as with a call per epoch."""
    X, y, fit = blowing_up(kind)
    messages, models, calls = [], [], []
    for callbacks in ([], [on_each_epoch]):
        made = engine_calls(monkeypatch)
        model = MLP([5, 32, 3], seed=1, engine=engine)
        with pytest.raises(fastmlp.TrainingDiverged, match="at epoch 3, step") as info:
            model.fit(X, y, epochs=40, callbacks=callbacks, **fit)
        calls.append(list(made))
        messages.append(str(info.value))
        models.append(model)
    n = len(X)
    assert max(calls[0]) > n and calls[0][-1] == n and calls[1] == [n, n, n]
    assert messages[0] == messages[1]
    assert ({k: v for k, v in models[0].history_.items() if k != "seconds"}
            == {k: v for k, v in models[1].history_.items() if k != "seconds"})
    np.testing.assert_array_equal(flat(models[0]), flat(models[1]))
