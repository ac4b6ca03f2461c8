"""Divergence: a NaN or Inf loss stops fit at once with TrainingDiverged, keeping finite weights.

And the converse: huge logits alone never make a NaN (stable softmax, overflow-free sigmoid), in
the compiled kernels, the NumPy reference and through both engines.
"""

import warnings

import numpy as np
import pytest

from fastmlp import MLP, TrainingDiverged, reference
from fastmlp.codes import HEADS
from fastmlp.io import read_npz

DIVERGED = r"training diverged at epoch {epoch}, step \d+: loss=(nan|inf); lower the learning rate \(now {lr}\)"


def unscaled(n=200, seed=0):
    """Features in the thousands, never standardized: a large rate blows up at once."""
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, 5)) * 1000 + 500).astype(np.float32)
    return X, np.arange(n) % 3


def check_still_usable(model, X):
    assert np.isfinite(model._flat).all(), "the weights are not finite after divergence"
    with np.errstate(all="ignore"):       # the kept weights may still overflow on some rows
        pred = model.predict(X)
    assert pred.shape == (len(X),)
    if model.classes_ is not None:
        assert set(pred.tolist()) <= set(model.classes_.tolist())


@pytest.mark.parametrize("lr,kw", [(1e6, {}), (1e6, {"momentum": 0.9}), (5.0, {})],
                         ids=["lr=1e6", "lr=1e6-momentum", "lr=5"])
def test_divergence_stops_fit_with_a_clear_message(engine, lr, kw):
    X, y = unscaled()
    model = MLP([5, 16, 3], engine=engine, threads=1)
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(epoch=1, lr=lr)) as info:
        model.fit(X, y, epochs=5, batch_size=20, lr=lr, **kw)
    assert isinstance(info.value, FloatingPointError)
    assert model.history_ == {}                  # the diverged epoch is not recorded as done
    check_still_usable(model, X)


def test_regression_divergence(engine):
    X, _ = unscaled()
    model = MLP([5, 16, 1], output="identity", engine=engine, threads=1)
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(epoch=1, lr=5.0)):
        model.fit(X, X[:, 0] * 10, epochs=5, batch_size=20, lr=5.0)
    assert np.isfinite(model._flat).all()
    with np.errstate(all="ignore"):
        assert model.predict(X).shape == (len(X),)


def test_divergence_in_a_later_epoch_keeps_the_history_and_the_checkpoint(engine, tmp_path):
    X, y = unscaled()
    X = X / 1000
    model = MLP([5, 16, 3], engine=engine, threads=1)
    path = tmp_path / "c.npz"
    with pytest.raises(TrainingDiverged, match=DIVERGED.format(epoch=3, lr=1000000.0)):
        model.fit(X, y, epochs=6, batch_size=20, lr=0.01, lr_schedule={0: 0.01, 2: 1e6},
                  checkpoint=path)
    assert model.history_["epoch"] == [1, 2]
    assert read_npz(path)[0]["checkpoint"]["epoch"] == 2      # the last good checkpoint stays
    assert np.isfinite(MLP.load(path).predict_proba(X)).all()
    check_still_usable(model, X)


def test_numpy_engine_diverges_without_warnings():
    X, y = unscaled()
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # a RuntimeWarning (overflow) would fail here
        with pytest.raises(TrainingDiverged):
            MLP([5, 16, 3], engine="numpy").fit(X, y, epochs=5, batch_size=20, lr=1e6)


def test_overflowed_weights_with_a_finite_loss_are_caught(monkeypatch):
    """If an update overflows the weights but the loss stayed finite, fit still stops, and
    rolls back to the weights (and optimizer step) from before that call."""
    X, y = unscaled()
    X = X / 1000
    model = MLP([5, 8, 3], engine="numpy")
    model.fit(X, y, epochs=1, batch_size=20, lr=0.01, optimizer="adam")
    before = (model._flat.copy(), model._optimizer.state1.copy(), model._optimizer.step)
    real = reference.train_batches

    def overflowing(net, *args):
        stats = real(net, *args)
        net.flat[3] = np.inf
        return stats

    monkeypatch.setattr(reference, "train_batches", overflowing)
    with pytest.raises(TrainingDiverged, match=r"at epoch 2, step 10: the weights overflowed .*"
                                               r"lower the learning rate \(now 0.01\)"):
        model.fit(X, y, epochs=3, batch_size=20, lr=0.01, optimizer="adam")
    np.testing.assert_array_equal(model._flat, before[0])
    np.testing.assert_array_equal(model._optimizer.state1, before[1])
    assert model._optimizer.step == before[2]


# ---------------------------------------------------------------- huge logits never make NaN

# Logits far beyond exp's range (exp(89) overflows float32, exp(710) float64), in both signs.
HUGE = {np.float32: 1e30, np.float64: 1e300}


def huge_logits(dtype, B=6, C=4):
    rng = np.random.default_rng(0)
    z = rng.choice([-1.0, 1.0, 0.0, 0.5], size=(B, C)) * HUGE[dtype]
    z[0] = HUGE[dtype]                    # ties at +huge
    z[1] = -HUGE[dtype]                   # all at -huge
    return z.astype(dtype), rng.integers(0, C, B)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_reference_heads_stable_for_huge_logits(dtype, head):
    z, y = huge_logits(dtype)
    strict = dict(over="raise", invalid="raise", divide="raise", under="ignore")   # exp(-huge) = 0 is fine
    with np.errstate(**strict):             # any overflow or invalid operation raises
        loss, out, dz = reference.head_loss_and_grad(z, y, None, head)
    assert np.isfinite(loss) and np.isfinite(out).all() and np.isfinite(dz).all()
    assert ((out >= 0) & (out <= 1)).all()
    if head == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)
        np.testing.assert_allclose(out[0], 0.25, rtol=1e-6)          # four tied maxima
    with np.errstate(**strict):
        assert np.isfinite(reference.sigmoid(z)).all()
        assert np.isfinite(reference.activation_forward(z, "tanh")).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_kernel_heads_stable_for_huge_logits(dtype, head):
    kernels = pytest.importorskip("fastmlp.engine.kernels")
    z, y = huge_logits(dtype)
    code = HEADS.index(head)
    empty = np.zeros((0, z.shape[1]), dtype)
    dz = np.empty_like(z)
    loss, _ = kernels.head_backward(dz, z, y, empty, np.zeros(0, dtype), code, dtype(1 / len(z)))
    assert np.isfinite(loss) and np.isfinite(dz).all()
    ref_loss, ref_out, ref_dz = reference.head_loss_and_grad(z, y, None, head)
    np.testing.assert_allclose(loss / len(z), ref_loss, rtol=1e-5)
    np.testing.assert_allclose(dz, ref_dz, rtol=1e-5, atol=1e-7)
    loss_only, _ = kernels.head_loss(z, y, empty, np.zeros(0, dtype), code)
    assert np.isfinite(loss_only)
    out = np.empty_like(z)
    kernels.head_forward(out, z, code)
    assert np.isfinite(out).all() and ((out >= 0) & (out <= 1)).all()
    np.testing.assert_allclose(out, ref_out, rtol=1e-6)
    for value in (HUGE[dtype], -HUGE[dtype]):
        s = kernels.sigmoid_scalar(dtype(value))
        assert np.isfinite(s) and 0 <= s <= 1


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_models_with_huge_logits_predict_and_train_without_nan(engine, output):
    """Weights that make logits of +-1e30: probabilities and the loss stay finite, and fit stops
    with TrainingDiverged instead of training on."""
    model = MLP([2, 3], output=output, engine=engine, threads=1)
    model.params = [(np.array([[1e29, -1e29, 0.0], [-1e29, 1e29, 1.0]]), np.zeros(3))]
    X = np.array([[10.0, -10.0], [-10.0, 10.0], [0.0, 0.0], [10.0, 10.0]], dtype=np.float32)
    y = np.array([1, 0, 2, 2])                 # mostly the wrong class: a loss of ~2e30
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all() and ((proba >= 0) & (proba <= 1)).all()
    model.classes_ = np.arange(3)
    result = model.evaluate(X, y)
    assert np.isfinite(result["loss"])
    if output == "softmax":                    # cross-entropy grows with the logits; squared error of sigmoids is bounded
        assert result["loss"] > 1e29
    # weights of 1e29 are far outside what training reaches: fit calls it a divergence, and
    # keeps weights that still predict finite probabilities
    with pytest.raises(TrainingDiverged, match="the weights grew to|the loss exploded to"):
        model.fit(X, y, epochs=1, batch_size=2, lr=1e-3)
    assert np.isfinite(model._flat).all()
    assert np.isfinite(model.predict_proba(X)).all()


def test_regression_divergence_limit_follows_the_targets_scale():
    """A regression's loss limit is relative to the loss of predicting the targets' mean: large
    but learnable targets train on, a blow-up at a normal scale is caught."""
    rng = np.random.default_rng(0)
    X = rng.random((600, 4)).astype(np.float32)
    Y = (X @ np.array([1.0, -2.0, 0.5, 3.0]) * 1e4).astype(np.float32)
    history = MLP([4, 8, 1], output="identity", seed=0).fit(X, Y, epochs=3, optimizer="adam",
                                                           lr=0.01, batch_size=32)
    assert len(history["loss"]) == 3
    with pytest.raises(TrainingDiverged):
        MLP([4, 8, 1], output="identity", seed=0).fit(X, Y / 1e4, epochs=3, lr=50.0, batch_size=32)
