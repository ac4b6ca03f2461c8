"""fastmlp.sklearn: scikit-learn's estimator checks, step-for-step parity with scikit-learn's own
MLPClassifier / MLPRegressor, meta-estimators, and the MLP <-> scikit-learn weight exchange."""

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

import scipy.sparse  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_multilabel_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastmlp import MLP  # noqa: E402
from fastmlp.sklearn import InvalidParameterError, MLPClassifier, MLPRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X / 16, y


@pytest.fixture(scope="module")
def small(digits):
    """500 digits: enough for every solver, quick for each."""
    X, y = digits
    return X[:500], y[:500]


@pytest.fixture(scope="module")
def multilabel():
    """200 samples with 5 labels each on or off (a 0/1 indicator matrix)."""
    X, Y = make_multilabel_classification(200, 12, n_classes=5, random_state=0)
    return X / X.max(), Y


@pytest.fixture(scope="module")
def regression():
    X, Y = make_regression(200, 8, n_targets=3, noise=1.0, random_state=0)
    return X, Y / 100


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# ---------------------------------------------------------------- scikit-learn's own checks

EXPECTED_FAILURES = {}       # every check passes, the sample-weight ones included


def expected_failed_checks(estimator):
    return EXPECTED_FAILURES


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100),
                          MLPClassifier(solver="lbfgs", max_iter=50)],
                         expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# ---------------------------------------------------------------- parity with scikit-learn

def assert_same_fit(ours, theirs, rtol=1e-9):
    """Same attributes, same training curve, same weights (to rounding)."""
    public = {k for k in vars(theirs) if k.endswith("_") and not k.startswith("_")}
    assert public == {k for k in vars(ours) if k.endswith("_") and not k.startswith("_")}
    for name in ("n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_"):
        assert getattr(ours, name) == getattr(theirs, name), name
    np.testing.assert_allclose(ours.loss_, theirs.loss_, rtol=rtol)
    for name in ("loss_curve_", "validation_scores_"):
        if getattr(theirs, name, None) is not None:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=rtol, err_msg=name)
    for name in ("best_loss_", "best_validation_score_"):
        if getattr(theirs, name, None) is not None:
            np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), rtol=rtol, err_msg=name)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


SOLVERS = [
    pytest.param(dict(solver="sgd", momentum=0.0, learning_rate_init=0.1), id="sgd"),
    pytest.param(dict(solver="sgd", learning_rate_init=0.05), id="sgd-nesterov"),
    pytest.param(dict(solver="sgd", nesterovs_momentum=False, learning_rate="invscaling",
                      learning_rate_init=0.3, alpha=0.01), id="sgd-momentum-invscaling"),
    pytest.param(dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5, tol=1e-2,
                      n_iter_no_change=2), id="sgd-adaptive"),
    pytest.param(dict(solver="adam", batch_size=64), id="adam"),
    pytest.param(dict(solver="adam", early_stopping=True, activation="tanh"), id="adam-early-stopping"),
    pytest.param(dict(solver="adam", shuffle=False, activation="logistic", alpha=0.0), id="adam-no-shuffle"),
]


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
@pytest.mark.parametrize("kwargs", SOLVERS)
def test_classifier_trains_step_for_step_like_sklearn(small, kwargs, binary):
    X, y = small
    y = (y >= 5).astype(int) if binary else y
    args = dict(hidden_layer_sizes=(16,), max_iter=12, random_state=0, **kwargs)
    ours = quiet(MLPClassifier(**args).fit, X, y)
    theirs = quiet(sk.MLPClassifier(**args).fit, X, y)
    assert_same_fit(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(np.exp(ours.predict_log_proba(X)), ours.predict_proba(X), rtol=1e-12)
    assert ours.score(X, y) == theirs.score(X, y)


@pytest.mark.parametrize("kwargs", SOLVERS + [pytest.param(dict(solver="lbfgs", alpha=1e-3), id="lbfgs")])
def test_multilabel_trains_step_for_step_like_sklearn(multilabel, kwargs):
    """Logistic outputs + binary log-loss (summed over labels, plus the alpha penalty)."""
    X, Y = multilabel
    args = dict(hidden_layer_sizes=(16,), max_iter=12, random_state=0, **kwargs)
    ours = quiet(MLPClassifier(**args).fit, X, Y)
    theirs = quiet(sk.MLPClassifier(**args).fit, X, Y)
    assert ours.out_activation_ == "logistic" and ours.n_outputs_ == 5
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert_same_fit(ours, theirs, rtol=1e-10 if kwargs.get("solver") != "lbfgs" else 1e-9)
    pred = ours.predict(X)
    assert pred.dtype == theirs.predict(X).dtype and pred.shape == Y.shape
    np.testing.assert_array_equal(pred, theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-12)
    assert ours.score(X, Y) == theirs.score(X, Y)


def test_multilabel_partial_fit_and_warm_start_like_sklearn(multilabel):
    X, Y = multilabel
    args = dict(hidden_layer_sizes=(12,), solver="sgd", learning_rate="invscaling",
                learning_rate_init=0.5, random_state=0)
    ours, theirs = MLPClassifier(**args), sk.MLPClassifier(**args)
    for k in range(3):
        part = slice(k * 60, (k + 1) * 60)
        ours.partial_fit(X[part], Y[part], classes=np.arange(5))
        theirs.partial_fit(X[part], Y[part], classes=np.arange(5))
    assert ours.t_ == theirs.t_ == 180
    assert_same_fit(ours, theirs, rtol=1e-10)

    args = dict(hidden_layer_sizes=(12,), max_iter=4, warm_start=True, random_state=0)
    ours, theirs = MLPClassifier(**args), sk.MLPClassifier(**args)
    for _ in range(2):
        quiet(ours.fit, X, Y)
        quiet(theirs.fit, X, Y)
    assert len(ours.loss_curve_) == 8
    assert_same_fit(ours, theirs, rtol=1e-10)
    # the head (and the targets the compiled kernels read) may not change under warm_start
    with pytest.raises(ValueError, match="same kind of targets"):
        ours.fit(X, np.arange(len(X)) % 5)


@pytest.mark.parametrize("kwargs", [dict(solver="sgd", learning_rate_init=0.01),
                                    dict(solver="adam", alpha=0.1, early_stopping=True),
                                    dict(solver="lbfgs")], ids=["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_trains_like_sklearn(regression, kwargs, n_targets):
    X, Y = regression
    Y = Y[:, 0] if n_targets == 1 else Y
    args = dict(hidden_layer_sizes=(16, 8), max_iter=15, random_state=0, **kwargs)
    ours = quiet(MLPRegressor(**args).fit, X, Y)
    theirs = quiet(sk.MLPRegressor(**args).fit, X, Y)
    assert_same_fit(ours, theirs, rtol=1e-7)
    assert ours.predict(X).shape == theirs.predict(X).shape
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6, atol=1e-9)
    assert ours.score(X, Y) == pytest.approx(theirs.score(X, Y), abs=1e-9)


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
def test_lbfgs_matches_sklearn(small, binary):
    X, y = small
    y = (y >= 5).astype(int) if binary else y
    args = dict(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=25, random_state=0, alpha=1e-3)
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        ours = MLPClassifier(**args).fit(X, y)
    theirs = quiet(sk.MLPClassifier(**args).fit, X, y)
    assert_same_fit(ours, theirs, rtol=1e-6)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


WEIGHTED = [
    pytest.param(dict(solver="sgd", momentum=0.0, learning_rate_init=0.1, alpha=0.01), id="sgd"),
    pytest.param(dict(solver="sgd", learning_rate_init=0.05, batch_size=32), id="sgd-nesterov"),
    pytest.param(dict(solver="adam", batch_size=64, alpha=0.01), id="adam"),
    pytest.param(dict(solver="adam", early_stopping=True, activation="tanh"), id="adam-early-stopping"),
    pytest.param(dict(solver="lbfgs", max_iter=20, alpha=1e-3), id="lbfgs"),
]


def sample_weights(n, seed=0):
    """Weights in [0, 3) with some exact zeros: a sample of weight 0 must not count."""
    w = np.random.default_rng(seed).uniform(0, 3, n)
    w[::7] = 0
    return w


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
@pytest.mark.parametrize("kwargs", WEIGHTED)
def test_weighted_classifier_trains_like_sklearn(small, kwargs, binary):
    X, y = small
    y = (y >= 5).astype(int) if binary else y
    w = sample_weights(len(y))
    args = dict(hidden_layer_sizes=(16,), random_state=0, **{"max_iter": 12, **kwargs})
    ours = quiet(MLPClassifier(**args).fit, X, y, sample_weight=w)
    theirs = quiet(sk.MLPClassifier(**args).fit, X, y, sample_weight=w)
    assert_same_fit(ours, theirs, rtol=1e-10 if kwargs["solver"] != "lbfgs" else 1e-6)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    unweighted = quiet(MLPClassifier(**args).fit, X, y)
    assert not np.allclose(unweighted.coefs_[0], ours.coefs_[0]), "the weights changed nothing"


@pytest.mark.parametrize("kwargs", WEIGHTED)
def test_weighted_regressor_and_multilabel_train_like_sklearn(regression, multilabel, kwargs):
    for X, Y, ours_cls, sk_cls in ((*regression, MLPRegressor, sk.MLPRegressor),
                                   (*multilabel, MLPClassifier, sk.MLPClassifier)):
        w = sample_weights(len(X), seed=1)
        args = dict(hidden_layer_sizes=(16, 8), random_state=0, **{"max_iter": 12, **kwargs})
        ours = quiet(ours_cls(**args).fit, X, Y, sample_weight=w)
        theirs = quiet(sk_cls(**args).fit, X, Y, sample_weight=w)
        assert_same_fit(ours, theirs, rtol=1e-10 if kwargs["solver"] != "lbfgs" else 1e-6)
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-6, atol=1e-9)


def test_weighted_partial_fit_like_sklearn(small, regression):
    X, y = small
    w = sample_weights(len(y))
    ours = MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", random_state=0)
    theirs = sk.MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", random_state=0)
    for _ in range(3):
        ours.partial_fit(X, y, sample_weight=w, classes=np.arange(10))
        theirs.partial_fit(X, y, sample_weight=w, classes=np.arange(10))
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    X, Y = regression
    ours, theirs = MLPRegressor(random_state=0), sk.MLPRegressor(random_state=0)
    for _ in range(3):
        ours.partial_fit(X, Y, sample_weight=np.arange(len(X)) % 4)
        theirs.partial_fit(X, Y, sample_weight=np.arange(len(X)) % 4)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


def test_same_accuracy_as_sklearn_on_digits(digits):
    X_train, X_test, y_train, y_test = train_test_split(*digits, test_size=0.25, random_state=0)
    args = dict(hidden_layer_sizes=(64,), max_iter=25, random_state=1)
    acc_sklearn = quiet(sk.MLPClassifier(**args).fit, X_train, y_train).score(X_test, y_test)
    acc_fast = quiet(MLPClassifier(**args).fit, X_train, y_train).score(X_test, y_test)
    acc_fast32 = quiet(MLPClassifier(dtype="float32", **args).fit, X_train, y_train).score(X_test, y_test)
    assert acc_sklearn > 0.93
    assert abs(acc_fast - acc_sklearn) <= 0.01
    assert abs(acc_fast32 - acc_sklearn) <= 0.02


def test_tol_stopping_and_convergence_warning_like_sklearn(small):
    X, y = small
    args = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.01, tol=0.05,
                n_iter_no_change=2, random_state=0, max_iter=200)
    ours, theirs = MLPClassifier(**args).fit(X, y), sk.MLPClassifier(**args).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ < 200
    assert ours._no_improvement_count == theirs._no_improvement_count
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\) reached"):
        MLPClassifier(hidden_layer_sizes=(8,), max_iter=3).fit(X, y)


def test_partial_fit_and_warm_start_like_sklearn(small):
    X, y = small
    args = dict(hidden_layer_sizes=(12,), solver="sgd", learning_rate="invscaling",
                learning_rate_init=0.5, random_state=0)
    ours, theirs = MLPClassifier(**args), sk.MLPClassifier(**args)
    for k in range(3):
        part = slice(k * 150, (k + 1) * 150)
        ours.partial_fit(X[part], y[part], classes=np.arange(10))
        theirs.partial_fit(X[part], y[part], classes=np.arange(10))
    assert ours.n_iter_ == theirs.n_iter_ == 1 and ours.t_ == theirs.t_ == 450
    assert_same_fit(ours, theirs)

    args = dict(hidden_layer_sizes=(12,), max_iter=4, warm_start=True, random_state=0)
    ours, theirs = MLPClassifier(**args), sk.MLPClassifier(**args)
    for _ in range(2):
        quiet(ours.fit, X, y)
        quiet(theirs.fit, X, y)
    assert len(ours.loss_curve_) == 8
    assert_same_fit(ours, theirs)

    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        MLPClassifier().partial_fit(X, y, classes=[0, 1, 2])
    lbfgs = MLPClassifier(solver="lbfgs")
    assert not hasattr(lbfgs, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit"):
        lbfgs.partial_fit(X, y)


def test_regressor_partial_fit(regression):
    X, Y = regression
    ours = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.01, random_state=0)
    theirs = sk.MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.01, random_state=0)
    for _ in range(3):
        ours.partial_fit(X, Y)
        theirs.partial_fit(X, Y)
    assert_same_fit(ours, theirs)


# ---------------------------------------------------------------- scikit-learn's machinery

def test_pipeline_grid_search_cross_val_score_clone(small):
    X, y = small
    args = dict(hidden_layer_sizes=(16,), max_iter=15, learning_rate_init=0.01, random_state=0)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(**args))
    assert quiet(pipe.fit, X, y).score(X, y) > 0.9
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                               "mlpclassifier__hidden_layer_sizes": [(8,), (16,)]}, cv=3)
    quiet(grid.fit, X, y)
    assert set(grid.best_params_) == {"mlpclassifier__alpha", "mlpclassifier__hidden_layer_sizes"}
    assert grid.best_score_ > 0.8
    scores = quiet(cross_val_score, pipe, X, y, cv=3)
    theirs = quiet(cross_val_score, make_pipeline(StandardScaler(), sk.MLPClassifier(**args)), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    np.testing.assert_allclose(scores, theirs, atol=0.01)    # same fits, so the same scores

    est = MLPClassifier(hidden_layer_sizes=(5, 3), alpha=0.5, dtype="float32", threads=1)
    copy = clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    quiet(est.fit, X, y)
    assert not hasattr(clone(est), "coefs_")
    assert quiet(MLPRegressor(max_iter=5, random_state=0).set_params(alpha=1.0).fit, X, y.astype(float)).alpha == 1.0


def test_constructor_matches_sklearn():
    import inspect

    for ours, theirs in ((MLPClassifier, sk.MLPClassifier), (MLPRegressor, sk.MLPRegressor)):
        ours_params = inspect.signature(ours).parameters
        theirs_params = inspect.signature(theirs).parameters
        assert list(ours_params)[:len(theirs_params)] == list(theirs_params)
        for name, p in theirs_params.items():
            assert ours_params[name].default == p.default, name
            assert ours_params[name].kind == p.kind, name
        assert list(ours_params)[len(theirs_params):] == ["dtype", "threads"]
        assert ours_params["dtype"].default == "float64" and ours_params["threads"].default is None


# ---------------------------------------------------------------- behaviour of our own

def test_unsupported_targets_and_weights_raise_clear_errors(small, regression):
    X, y = small
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        MLPClassifier(max_iter=2).fit(X, np.stack([y % 3, y % 4], axis=1))
    with pytest.raises(NotImplementedError, match="poisson"):
        MLPRegressor(loss="poisson").fit(*regression)
    for bad, match in ((-np.ones(len(y)), ">= 0; sample 0"), (np.zeros(len(y)), "non-zero"),
                       (np.ones(3), "sample_weight")):
        with pytest.raises(ValueError, match=match):
            MLPClassifier(max_iter=2).fit(X, y, sample_weight=bad)
    ones = quiet(MLPClassifier(max_iter=3, random_state=0).fit, X, y, sample_weight=np.ones(len(y)))
    none = quiet(MLPClassifier(max_iter=3, random_state=0).fit, X, y)
    np.testing.assert_array_equal(ones.coefs_[0], none.coefs_[0])
    # the same loss, computed as (sum / weight total) * B for weights: equal up to rounding
    np.testing.assert_allclose(ones.loss_curve_, none.loss_curve_, rtol=1e-13)
    with pytest.raises(InvalidParameterError, match="'alpha' parameter of MLPClassifier.*alpha must be in"):
        MLPClassifier(alpha=-1).fit(X, y)
    with pytest.raises(InvalidParameterError, match="activation"):
        MLPRegressor(activation="softplus").fit(*regression)
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, np.linspace(0, 1, len(X)))


def test_float32_threads_and_determinism(small):
    X, y = small
    a = quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=3, dtype="float32").fit, X, y)
    assert a.coefs_[0].dtype == np.float32 and a.predict_proba(X).dtype == np.float32
    b = quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=3, dtype="float32", threads=1).fit, X, y)
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(p, q)


def test_pickle_replaced_weights_sparse_and_verbose(small, capsys):
    X, y = small
    est = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0, verbose=True)
    quiet(est.fit, X, y)
    assert capsys.readouterr().out.splitlines()[0].startswith("Iteration 1, loss = ")
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))
    quiet(again.partial_fit, X, y)                       # keeps training after unpickling
    np.testing.assert_allclose(again.predict_proba(scipy.sparse.csr_matrix(X)), again.predict_proba(X))

    theirs = quiet(sk.MLPClassifier(hidden_layer_sizes=(16,), max_iter=1).fit, X, y)
    est.coefs_ = [W.copy() for W in theirs.coefs_]        # users may replace the weights
    est.intercepts_[0] = theirs.intercepts_[0].copy()
    est.intercepts_[1][...] = theirs.intercepts_[1]        # ... or write into them
    np.testing.assert_allclose(est.predict_proba(X), theirs.predict_proba(X), rtol=1e-12)


def test_feature_names_in(small):
    pd = pytest.importorskip("pandas")       # scikit-learn reads names from real data frames only
    X, y = small
    names = [f"pixel{i}" for i in range(X.shape[1])]
    est = quiet(MLPClassifier(hidden_layer_sizes=(8,), max_iter=3).fit, pd.DataFrame(X, columns=names), y)
    assert list(est.feature_names_in_) == names and est.n_features_in_ == 64
    with pytest.warns(UserWarning, match="feature names"):
        est.predict(X)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :10])


def test_import_error_names_the_extra():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import fastmlp.sklearn\nexcept ImportError as exc:\n    print(exc)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert 'pip install "fastmlp[sklearn]"' in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- MLP <-> scikit-learn weights

@pytest.mark.parametrize("target", ["multiclass", "binary", "strings"])
def test_mlp_from_and_to_sklearn_predict_identically(small, target):
    X, y = small
    y = {"multiclass": y, "binary": (y >= 5).astype(int),
         "strings": np.where(y >= 5, "big", "small")}[target]
    theirs = quiet(sk.MLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0).fit, X, y)
    model = MLP.from_sklearn(theirs)
    np.testing.assert_array_equal(model.predict(X), theirs.predict(X))
    np.testing.assert_allclose(model.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-12)
    back = model.to_sklearn()
    assert isinstance(back, sk.MLPClassifier)
    np.testing.assert_array_equal(back.predict(X), theirs.predict(X))
    np.testing.assert_allclose(back.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-12)
    assert back.score(X, y) == theirs.score(X, y)

    ours = quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0).fit, X, y)
    np.testing.assert_array_equal(MLP.from_sklearn(ours).predict(X), ours.predict(X))


def test_mlp_trained_by_fastmlp_exports_to_sklearn(small, regression):
    X, y = small
    for n_classes, labels in ((10, y), (2, (y >= 5).astype(int))):
        model = MLP([64, 16, n_classes], activation="tanh", seed=0)
        model.fit(X, labels, epochs=3, batch_size=32)
        est = model.to_sklearn()
        np.testing.assert_array_equal(est.predict(X), model.predict(X))
        np.testing.assert_allclose(est.predict_proba(X), model.predict_proba(X), rtol=1e-5, atol=1e-6)

    Xr, Y = regression
    model = MLP([8, 16, 3], output="identity", dtype="float64", seed=0)
    model.fit(Xr, Y, epochs=3, batch_size=32, lr=0.01)
    est = model.to_sklearn()
    assert isinstance(est, sk.MLPRegressor)
    np.testing.assert_allclose(est.predict(Xr), model.predict(Xr), rtol=1e-12)
    again = MLP.from_sklearn(est)
    np.testing.assert_allclose(again.predict(Xr), model.predict(Xr), rtol=1e-12)

    squared = MLP([64, 8, 10], output="sigmoid")
    squared.fit(X, y, epochs=1)
    with pytest.raises(ValueError, match="sigmoid"):
        squared.to_sklearn()


def test_multilabel_weights_move_between_mlp_and_sklearn(multilabel):
    X, Y = multilabel
    theirs = quiet(sk.MLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0).fit, X, Y)
    model = MLP.from_sklearn(theirs)
    assert model.output == "logistic" and model.layers == (12, 16, 5)
    np.testing.assert_array_equal(model.predict(X), theirs.predict(X))
    np.testing.assert_allclose(model.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-12)
    assert model.score(X, Y) == theirs.score(X, Y)
    back = model.to_sklearn()
    assert isinstance(back, sk.MLPClassifier) and back.out_activation_ == "logistic"
    np.testing.assert_array_equal(back.classes_, theirs.classes_)
    np.testing.assert_array_equal(back.predict(X), theirs.predict(X))
    np.testing.assert_allclose(back.predict_proba(X), theirs.predict_proba(X), rtol=1e-7, atol=1e-12)
    assert back.score(X, Y) == theirs.score(X, Y)

    ours = quiet(MLPClassifier(hidden_layer_sizes=(16,), max_iter=10, random_state=0).fit, X, Y)
    np.testing.assert_array_equal(MLP.from_sklearn(ours).predict(X), ours.predict(X))

    trained = MLP([12, 8, 5], output="logistic", activation="tanh", seed=0)   # float32
    trained.fit(X, Y, epochs=3, batch_size=32)
    est = trained.to_sklearn()
    np.testing.assert_array_equal(est.predict(X), trained.predict(X))
    np.testing.assert_allclose(est.predict_proba(X), trained.predict_proba(X), rtol=1e-5, atol=1e-6)

    single = MLP([12, 4, 1], output="logistic", dtype="float64", seed=0)     # one label: binary
    single.fit(X, Y[:, :1], epochs=2, batch_size=32)
    est = single.to_sklearn()
    np.testing.assert_array_equal(est.predict(X), single.predict(X)[:, 0])
    np.testing.assert_allclose(est.predict_proba(X)[:, 1], single.predict_proba(X)[:, 0], rtol=1e-12)
