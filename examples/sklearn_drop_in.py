"""scikit-learn code, one import changed: fastmlp.sklearn.MLPClassifier in place of scikit-learn's.

Fits both estimators with the same settings on the 8x8 digits and prints their accuracy and
fit time, then moves the trained weights into a fastmlp.MLP and back. Run it with:
python examples/sklearn_drop_in.py
"""

import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastmlp import MLP
from fastmlp.sklearn import MLPClassifier       # the one changed line


def fit_and_time(estimator, X, y):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, y)
    return time.perf_counter() - start


def main():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.25, random_state=0)
    settings = dict(hidden_layer_sizes=(128,), max_iter=40, random_state=0)

    fit_and_time(MLPClassifier(max_iter=1), X_train[:50], y_train[:50])   # compile outside the timing
    ours, theirs = MLPClassifier(**settings), SklearnMLPClassifier(**settings)
    t_ours, t_theirs = fit_and_time(ours, X_train, y_train), fit_and_time(theirs, X_train, y_train)
    print("fit times depend on the machine, its load and the layer sizes:")
    print(f"scikit-learn: test accuracy {theirs.score(X_test, y_test):.4f}, fit {t_theirs:.2f}s")
    print(f"fastmlp:      test accuracy {ours.score(X_test, y_test):.4f}, fit {t_ours:.2f}s")
    print(f"same training curve: {np.allclose(ours.loss_curve_, theirs.loss_curve_)} "
          f"({ours.n_iter_} epochs, final loss {ours.loss_:.5f})")

    # everything around the estimator keeps working
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(max_iter=20, random_state=0)),
                          {"mlpclassifier__alpha": [1e-4, 1e-2]}, cv=3)
    fit_and_time(search, X_train, y_train)
    print(f"GridSearchCV: best {search.best_params_}, cv accuracy {search.best_score_:.4f}")

    # weights move between scikit-learn's estimator, fastmlp's estimator and fastmlp.MLP
    model = MLP.from_sklearn(theirs)
    assert (model.predict(X_test) == theirs.predict(X_test)).all()
    back = model.to_sklearn()
    assert np.allclose(back.predict_proba(X_test), theirs.predict_proba(X_test))
    print(f"MLP.from_sklearn / to_sklearn: identical predictions, layers {list(model.layers)}")


if __name__ == "__main__":
    main()
