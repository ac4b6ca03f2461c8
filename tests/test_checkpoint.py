"""Checkpoints and resume: fit(checkpoint=PATH, checkpoint_every=N) and fit(resume=PATH).

A run interrupted at any point (an exception, SIGKILL) and resumed from its last checkpoint must
end bitwise identical to the run that was never interrupted, on both engines.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastmlp import MLP, ModelFileError
from fastmlp.io import read_npz

from helpers import blobs

ROOT = Path(__file__).resolve().parents[1]
LAYERS = [4, 12, 3]
DATA = dict(n=150, spread=1.0, center_scale=2.0)     # blobs() to train on
# Momentum, a schedule that changes at epoch 3 and shuffling: every piece of state matters.
FIT = dict(epochs=6, batch_size=16, lr=0.1, momentum=0.9, lr_schedule={0: 0.1, 3: 0.02})


def model(engine, **kw):
    return MLP(LAYERS, engine=engine, seed=5, threads=1, **kw)


def saved_epoch(path):
    return read_npz(path)[0]["checkpoint"]["epoch"]


class Crash(Exception):
    pass


def crash_at(epoch):
    def callback(model, e, logs):
        if e == epoch:
            raise Crash(f"simulated crash at epoch {e}")
    return callback


def without_seconds(history):
    return {k: v for k, v in history.items() if k != "seconds"}


def assert_same_run(a, b):
    np.testing.assert_array_equal(a._flat, b._flat)
    assert a._optimizer.opt == b._optimizer.opt and a._optimizer.step == b._optimizer.step
    np.testing.assert_array_equal(a._optimizer.state1, b._optimizer.state1)
    np.testing.assert_array_equal(a._optimizer.state2, b._optimizer.state2)
    assert a._rng.bit_generator.state == b._rng.bit_generator.state
    assert without_seconds(a.history_) == without_seconds(b.history_)


# ---------------------------------------------------------------- writing


def test_checkpoints_every_n_epochs_and_at_the_end(engine, tmp_path):
    X, y = blobs(**DATA)
    path = tmp_path / "run.ckpt.npz"
    seen = []

    def look(m, epoch, logs):             # runs before that epoch's checkpoint is written
        seen.append(saved_epoch(path) if path.exists() else None)

    m = model(engine)
    m.fit(X, y, **FIT, checkpoint=path, checkpoint_every=2, callbacks=[look])
    assert seen == [None, None, 2, 2, 4, 4]
    assert saved_epoch(path) == 6
    assert os.listdir(tmp_path) == ["run.ckpt.npz"]
    # A checkpoint is a model file too: it loads as the model at that epoch.
    loaded = MLP.load(path)
    np.testing.assert_array_equal(loaded._flat, m._flat)
    np.testing.assert_array_equal(loaded.predict(X), m.predict(X))
    assert without_seconds(loaded.history_) == without_seconds(m.history_)


def test_checkpoint_holds_optimizer_rng_history_and_arguments(tmp_path):
    X, y = blobs(**DATA)
    path = tmp_path / "c.npz"
    m = model("numpy")
    history = m.fit(X, y, **dict(FIT, optimizer="adam", momentum=0.0), checkpoint=str(path))
    config, arrays = read_npz(path)
    state = config["checkpoint"]
    assert state["epoch"] == 6 and state["stopped"] is False
    assert state["optimizer"] == {"name": "adam", "step": 6 * 10}           # 150 / 16 -> 10 batches
    assert state["rng"] == m._rng.bit_generator.state
    assert state["fit_history"]["loss"] == history["loss"]
    assert state["fit"]["lr"] == 0.1 and state["fit"]["batch_size"] == 16 and state["fit"]["epochs"] == 6
    assert state["fit"]["lr_schedule"] == {"piecewise": [[0.0, 0.1], [3.0, 0.02]]}
    np.testing.assert_array_equal(arrays["optimizer_state1"], m._optimizer.state1)
    np.testing.assert_array_equal(arrays["optimizer_state2"], m._optimizer.state2)


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    X, y = blobs(**DATA)
    path = tmp_path / "c.npz"
    real_savez = np.savez
    calls = []

    def savez_that_dies(file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            return real_savez(file, *args, **kwargs)
        file.write(b"PK\x03\x04 half a zip archive")          # some bytes reach the disk...
        raise OSError(28, "No space left on device")          # ...then the write fails

    monkeypatch.setattr(np, "savez", savez_that_dies)
    m = model("numpy")
    with pytest.raises(OSError, match="No space left"):
        m.fit(X, y, **FIT, checkpoint=path)
    monkeypatch.undo()
    assert len(calls) == 2
    assert os.listdir(tmp_path) == ["c.npz"], "a temporary file was left behind"
    assert saved_epoch(path) == 1                               # the good epoch-1 checkpoint
    # ... and it is whole: resuming from it ends where an uninterrupted run ends.
    resumed = model("numpy")
    resumed.fit(X, y, **FIT, resume=path)
    full = model("numpy")
    full.fit(X, y, **FIT)
    assert_same_run(resumed, full)


# ---------------------------------------------------------------- resuming


@pytest.mark.parametrize("opt", [dict(momentum=0.9), dict(optimizer="adam", lr=0.01, momentum=0.0,
                                                           lr_schedule="cosine")])
def test_resume_after_a_crash_is_bitwise_identical(engine, tmp_path, opt):
    X, y = blobs(**DATA)
    args = dict(FIT, **opt)
    full = model(engine)
    full_history = full.fit(X, y, **args)

    path = tmp_path / "c.npz"
    crashed = model(engine)
    with pytest.raises(Crash):
        crashed.fit(X, y, **args, checkpoint=path, callbacks=[crash_at(4)])
    assert saved_epoch(path) == 3

    resumed = model(engine)
    history = resumed.fit(X, y, **args, checkpoint=path, resume=path)
    assert_same_run(resumed, full)
    # The returned history covers the whole run, and the schedule continued at epoch index 3.
    assert without_seconds(history) == without_seconds(full_history)
    assert history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert saved_epoch(path) == 6


def test_schedule_continues_at_the_right_epoch(engine, tmp_path):
    X, y = blobs(**DATA)
    calls = []

    def schedule(epoch):
        calls.append(epoch)
        return 0.1 / (1 + epoch)

    path = tmp_path / "c.npz"
    with pytest.raises(Crash):
        model(engine).fit(X, y, **dict(FIT, lr_schedule=schedule), checkpoint=path,
                          callbacks=[crash_at(3)])
    calls.clear()
    history = model(engine).fit(X, y, **dict(FIT, lr_schedule=schedule), resume=path)
    assert calls == [2, 3, 4, 5]                    # per-fit epoch indices, resumed at index 2
    assert history["lr"] == [0.1 / (1 + e) for e in range(6)]


def test_resume_continues_a_fit_that_followed_another(tmp_path):
    """The optimizer state and history carried over from an earlier fit are checkpointed too."""
    X, y = blobs(**DATA)
    full = model("numpy")
    full.fit(X, y, epochs=2, batch_size=16, lr=0.1, momentum=0.9)
    full.fit(X, y, **FIT)
    path = tmp_path / "c.npz"
    crashed = model("numpy")
    crashed.fit(X, y, epochs=2, batch_size=16, lr=0.1, momentum=0.9)
    with pytest.raises(Crash):
        crashed.fit(X, y, **FIT, checkpoint=path, callbacks=[crash_at(2 + 5)])   # 5th epoch of the 2nd fit
    resumed = model("numpy")
    resumed.fit(X, y, **FIT, resume=path)
    assert_same_run(resumed, full)
    assert resumed.history_["epoch"] == list(range(1, 9))


def test_resume_with_early_stopping(engine, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(160, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    y[rng.random(160) < 0.3] ^= 1
    args = dict(epochs=40, batch_size=8, lr=0.3, validation_split=0.25, early_stopping=3)
    layers = [4, 32, 2]
    full = MLP(layers, engine=engine, threads=1)
    full_history = full.fit(X, y, **args)
    stop = len(full_history["epoch"])
    assert stop < 40, "early stopping never triggered: the test proves nothing"

    path = tmp_path / "c.npz"
    with pytest.raises(Crash):
        MLP(layers, engine=engine, threads=1).fit(X, y, **args, checkpoint=path,
                                                 callbacks=[crash_at(stop - 1)])
    resumed = MLP(layers, engine=engine, threads=1)
    history = resumed.fit(X, y, **args, checkpoint=path, resume=path)
    assert without_seconds(history) == without_seconds(full_history)
    np.testing.assert_array_equal(resumed._flat, full._flat)      # the best epoch's weights
    assert read_npz(path)[0]["checkpoint"]["stopped"] is True
    # Resuming a run that early stopping ended trains nothing more.
    again = MLP(layers, engine=engine, threads=1)
    assert without_seconds(again.fit(X, y, **args, resume=path)) == without_seconds(full_history)
    np.testing.assert_array_equal(again._flat, full._flat)


def test_ctrl_c_keeps_the_last_checkpoint_and_resume_finishes_the_run(engine, tmp_path):
    """Ctrl-C stops within an epoch: that half epoch is never checkpointed, so resuming from the
    file still ends exactly where the uninterrupted run does."""
    X, y = blobs(**DATA)
    path = tmp_path / "c.npz"

    def press_ctrl_c(m, epoch, logs):
        if epoch == 3:
            os.kill(os.getpid(), signal.SIGINT)    # fit's handler turns it into a stop request

    m = model(engine)
    m.fit(X, y, **FIT, checkpoint=path, callbacks=[press_ctrl_c])
    assert m.history_["epoch"][-1] == 4           # epoch 4 started, then stopped early
    assert saved_epoch(path) == 3
    resumed = model(engine)
    resumed.fit(X, y, **FIT, resume=path)
    full = model(engine)
    full.fit(X, y, **FIT)
    assert_same_run(resumed, full)


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    X, y = blobs(**DATA)
    path = tmp_path / "c.npz"
    full = model("numpy")
    full.fit(X, y, **FIT, checkpoint=path)
    again = model("numpy")
    history = again.fit(X, y, **FIT, resume=path)
    assert history["epoch"] == [1, 2, 3, 4, 5, 6]
    assert_same_run(again, full)


def test_resume_may_change_engine_and_threads(tmp_path):
    """engine and threads choose how training runs, not what it computes: they may differ."""
    X, y = blobs(**DATA)
    path = tmp_path / "c.npz"
    with pytest.raises(Crash):
        MLP(LAYERS, engine="numpy", seed=5).fit(X, y, **FIT, checkpoint=path, callbacks=[crash_at(2)])
    resumed = MLP(LAYERS, engine="numba", seed=5, threads=2)
    history = resumed.fit(X, y, **FIT, resume=path)
    assert history["epoch"] == [1, 2, 3, 4, 5, 6]


# SIGKILL: the process gets no chance to clean up; only what is on disk counts.
KILLED_RUN = """
import sys, time
import numpy as np
from fastmlp import MLP
engine, data, ckpt, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
with np.load(data) as f:
    X, y = f["X"], f["y"]
model = MLP([4, 12, 3], engine=engine, seed=5, threads=1)
model.fit(X, y, epochs=epochs, batch_size=16, lr=0.1, momentum=0.9, lr_schedule={0: 0.1, 3: 0.02},
          checkpoint=ckpt, checkpoint_every=1, callbacks=[lambda m, e, logs: time.sleep(0.15)])
print("finished")
"""


def test_resume_after_sigkill_is_bitwise_identical(engine, tmp_path):
    X, y = blobs(**DATA)
    epochs = 40
    np.savez(tmp_path / "data.npz", X=X, y=y)
    ckpt = tmp_path / "run.ckpt.npz"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, engine, str(tmp_path / "data.npz"),
                             str(ckpt), str(epochs)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert proc.poll() is None, f"the training process ended early: {proc.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint appeared within 120 s"
            time.sleep(0.02)
        time.sleep(0.2)                        # let it get into the middle of a later epoch
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    done = saved_epoch(ckpt)
    assert 1 <= done < epochs
    # (A temporary file may be left if the kill hit a write; the checkpoint itself is whole.)

    args = dict(epochs=epochs, batch_size=16, lr=0.1, momentum=0.9, lr_schedule={0: 0.1, 3: 0.02})
    resumed = model(engine)
    history = resumed.fit(X, y, **args, checkpoint=ckpt, resume=ckpt)
    full = model(engine)
    full_history = full.fit(X, y, **args)
    assert_same_run(resumed, full)
    assert without_seconds(history) == without_seconds(full_history)


# ---------------------------------------------------------------- refused resumes


@pytest.fixture
def checkpointed(tmp_path):
    X, y = blobs(**DATA)
    path = tmp_path / "c.npz"
    with pytest.raises(Crash):
        model("numpy").fit(X, y, **FIT, checkpoint=path, callbacks=[crash_at(3)])
    return X, y, path


@pytest.mark.parametrize("change,pattern", [
    (dict(lr=0.2), r"checkpoint was written by a fit with lr=0.1 but this fit has lr=0.2; pass lr=0.1"),
    (dict(epochs=10), r"with epochs=6 but this fit has epochs=10; pass epochs=6"),
    (dict(batch_size=15), r"batch_size=16 but this fit has batch_size=15"),
    (dict(momentum=0.5), r"momentum=0.9 but this fit has momentum=0.5"),
    (dict(lr_schedule=None), r"lr_schedule=.*piecewise.* but this fit has lr_schedule=None"),
    (dict(shuffle=False), r"shuffle=True but this fit has shuffle=False"),
    (dict(optimizer="adam"), r"optimizer='sgd' but this fit has optimizer='adam'"),
], ids=["lr", "epochs", "batch_size", "momentum", "schedule", "shuffle", "optimizer"])
def test_resume_refuses_other_arguments(checkpointed, change, pattern):
    X, y, path = checkpointed
    m = model("numpy")
    before = m._flat.copy()
    with pytest.raises(ValueError, match=pattern):
        m.fit(X, y, **dict(FIT, **change), resume=path)
    np.testing.assert_array_equal(m._flat, before)      # a refused resume changes nothing


def test_resume_refuses_other_data(checkpointed):
    X, y, path = checkpointed
    X2 = X.copy()
    X2[7, 1] += 1e-3
    with pytest.raises(ValueError, match="differ from the data the checkpoint was trained on"):
        model("numpy").fit(X2, y, **FIT, resume=path)
    with pytest.raises(ValueError, match="trained on 150 samples but X has 149"):
        model("numpy").fit(X[:-1], y[:-1], **FIT, resume=path)


@pytest.mark.parametrize("kw,pattern", [
    (dict(layers=[4, 10, 3]), r"model with layers=\[4, 12, 3\] but this model has layers=\[4, 10, 3\]"),
    (dict(seed=6), "model with seed=5 but this model has seed=6"),
    (dict(activation="tanh"), "activation='relu' but this model has activation='tanh'"),
    (dict(dtype="float64"), "dtype='float32' but this model has dtype='float64'"),
])
def test_resume_refuses_another_model(checkpointed, kw, pattern):
    X, y, path = checkpointed
    args = dict(layers=LAYERS, engine="numpy", seed=5)
    args.update(kw)
    with pytest.raises(ValueError, match=pattern):
        MLP(**args).fit(X, y, **FIT, resume=path)


def test_resume_refuses_a_model_file_and_missing_files(tmp_path):
    X, y = blobs(**DATA)
    m = model("numpy")
    m.fit(X, y, epochs=1, batch_size=16)
    m.save(tmp_path / "model.npz")
    with pytest.raises(ModelFileError, match="is a model file, not a checkpoint"):
        model("numpy").fit(X, y, **FIT, resume=tmp_path / "model.npz")
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        model("numpy").fit(X, y, **FIT, resume=tmp_path / "nothing.npz")
    truncated = tmp_path / "truncated.npz"
    m.fit(X, y, epochs=1, batch_size=16, checkpoint=tmp_path / "c.npz")
    truncated.write_bytes((tmp_path / "c.npz").read_bytes()[:300])
    with pytest.raises(ModelFileError, match="truncated"):
        model("numpy").fit(X, y, epochs=1, batch_size=16, resume=truncated)


@pytest.mark.parametrize("kw,error,pattern", [
    (dict(checkpoint_every=2), ValueError, "checkpoint_every needs a file"),
    (dict(checkpoint="c.npz", checkpoint_every=0), ValueError, r"checkpoint_every must be in \[1, inf\); got 0"),
    (dict(checkpoint="c.npz", checkpoint_every=1.5), TypeError, "checkpoint_every must be an integer"),
    (dict(checkpoint="no/such/folder/c.npz"), FileNotFoundError, "folder .* does not exist"),
    (dict(checkpoint="."), IsADirectoryError, "is a directory"),
    (dict(checkpoint=3), TypeError, "checkpoint must be a file path"),
])
def test_bad_checkpoint_arguments_fail_before_training(tmp_path, monkeypatch, kw, error, pattern):
    monkeypatch.chdir(tmp_path)
    X, y = blobs(**DATA)
    m = model("numpy")
    with pytest.raises(error, match=pattern):
        m.fit(X, y, epochs=1, batch_size=16, **kw)
    assert m.history_ == {} and not m.fitted_


def test_weighted_resume_is_bitwise_identical_and_refuses_other_weights(engine, tmp_path):
    X, y = blobs(**DATA)
    w = np.random.default_rng(3).uniform(0, 2, len(y))
    full = model(engine)
    full.fit(X, y, **FIT, sample_weight=w)
    path = tmp_path / "c.npz"
    with pytest.raises(Crash):
        model(engine).fit(X, y, **FIT, sample_weight=w, checkpoint=path, callbacks=[crash_at(3)])
    for other in (None, w * 2):     # the weights are part of the data the checkpoint hashes
        with pytest.raises(ValueError, match="differ from the data the checkpoint was trained on"):
            model(engine).fit(X, y, **FIT, sample_weight=other, resume=path)
    resumed = model(engine)
    resumed.fit(X, y, **FIT, sample_weight=w, checkpoint=path, resume=path)
    assert_same_run(resumed, full)
