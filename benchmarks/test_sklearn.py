"""fastmlp.sklearn's estimators next to scikit-learn's own, on the same data and settings.

Each group times ``fit`` of both (same parameters, same random_state, a fixed number of epochs)
and, after timing, checks that fastmlp's test accuracy is within noise of scikit-learn's (in
float64 the two train step for step alike, so it is equal to rounding).
"""

import warnings

import numpy as np
import pytest

from .common import QUICK, common_info

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is not installed")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLPClassifier  # noqa: E402

from fastmlp.sklearn import MLPClassifier  # noqa: E402

TRAIN = 2000 if QUICK else 20000
EPOCHS = 2 if QUICK else 10


@pytest.fixture(scope="module")
def split(data):
    X, y, X_test, y_test, source = data
    if X_test is None:
        X_test, y_test = X[TRAIN:TRAIN + 5000], y[TRAIN:TRAIN + 5000]
    return X[:TRAIN], y[:TRAIN], X_test[:5000], y_test[:5000], source


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("impl", ["fastmlp", "sklearn"])
def test_sklearn_fit(benchmark, impl, solver, dtype, split):
    """MLPClassifier(hidden_layer_sizes=(100,), solver, batch 200, EPOCHS epochs)."""
    if impl == "sklearn" and dtype == "float32":
        pytest.skip("scikit-learn's MLPClassifier follows the input dtype; timed once, in float64")
    X, y, X_test, y_test, source = split
    benchmark.group = f"sklearn MLPClassifier {solver} (100,) {TRAIN} samples {EPOCHS} epochs"
    params = dict(hidden_layer_sizes=(100,), solver=solver, max_iter=EPOCHS, random_state=0,
                  learning_rate_init=0.01 if solver == "sgd" else 0.001, tol=0.0)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if impl == "fastmlp":
                return MLPClassifier(dtype=dtype, **params).fit(X, y)
            return SkMLPClassifier(**params).fit(X.astype(np.float64), y)

    fit()                                       # compile / load the Numba cache first
    estimator = benchmark.pedantic(fit, rounds=1 if QUICK else 3)
    common_info(benchmark, dtype, "all", source)
    benchmark.extra_info["samples_per_s"] = TRAIN * EPOCHS / benchmark.stats.stats.median
    accuracy = estimator.score(X_test, y_test)
    benchmark.extra_info["test_accuracy"] = accuracy
    if impl == "sklearn":
        return
    reference = SkMLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference.fit(X.astype(np.float64), y)
    expected = reference.score(X_test, y_test)
    assert abs(accuracy - expected) <= (1e-9 if dtype == "float64" else 0.02), \
        f"{impl} {solver} {dtype}: accuracy {accuracy:.4f} vs scikit-learn's {expected:.4f}"
