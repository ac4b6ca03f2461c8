"""fastmlp.dask on a LocalCluster of 2 worker processes started here: full-batch training equals
one process's (float64, 1e-10), model averaging reaches one process's accuracy, and the
scikit-learn estimators work under joblib's Dask backend and dask-ml's Incremental."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array", reason="fastmlp[dask] is not installed")
distributed = pytest.importorskip("distributed", reason="fastmlp[dask] is not installed")

from helpers import blobs

import fastmlp.dask as fdask
from fastmlp import MLP, fullbatch


def test_no_client_is_a_clear_error():
    # first in the file: the module's cluster fixture has not started a default client yet
    X, y = blobs(n=20)
    try:
        distributed.default_client()
        pytest.skip("a default client exists in this process")
    except ValueError:
        pass
    with pytest.raises(ValueError, match="needs a dask.distributed client"):
        fdask.fit(MLP([4, 3, 3]), X, y)


@pytest.fixture(scope="module")
def client():
    # compile (or load) the kernels here first: the workers then load them from the cache
    X, y = blobs(n=40, n_features=6)
    fullbatch.fit(MLP([6, 16, 3], dtype="float64"), X, y, solver="gd", max_iter=1)
    fullbatch.fit(MLP([6, 16, 3]), X, y, solver="gd", max_iter=1)
    MLP([6, 16, 3]).fit(X, y, epochs=1)
    with (distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None) as cluster,
          distributed.Client(cluster) as c):
        yield c


def chunked(X, y, rows=150):
    return da.from_array(X, chunks=(rows, X.shape[1])), da.from_array(y, chunks=rows)


@pytest.fixture(scope="module")
def problem():
    X, y = blobs(n=600, n_features=6, spread=1.5)
    return X.astype(np.float64), y


def test_full_batch_gd_on_the_cluster_equals_one_process(client, problem):
    X, y = problem
    one = MLP([6, 16, 3], dtype="float64", seed=0)
    by_fit = MLP([6, 16, 3], dtype="float64", seed=0)
    spread = MLP([6, 16, 3], dtype="float64", seed=0)
    h_one = fullbatch.fit(one, X, y, solver="gd", max_iter=15, lr=0.3)
    by_fit.fit(X, y, epochs=15, batch_size=None, lr=0.3)
    h = fdask.fit(spread, *chunked(X, y), solver="gd", max_iter=15, lr=0.3, client=client)
    np.testing.assert_allclose(spread._flat, one._flat, rtol=0, atol=1e-10)
    np.testing.assert_allclose(spread._flat, by_fit._flat, rtol=0, atol=1e-10)
    np.testing.assert_allclose(h["loss"], h_one["loss"], rtol=1e-10)
    assert h["epoch"] == list(range(1, 16)) and spread.history_["loss"] == h["loss"]


def test_lbfgs_on_the_cluster_equals_one_process_and_is_deterministic(client, problem):
    X, y = problem
    one = MLP([6, 16, 3], dtype="float64", seed=1)
    fullbatch.fit(one, X, y, solver="lbfgs", max_iter=25, weight_decay=1e-3)
    runs = []
    for _ in range(2):
        spread = MLP([6, 16, 3], dtype="float64", seed=1)
        fdask.fit(spread, *chunked(X, y, 110), solver="lbfgs", max_iter=25, weight_decay=1e-3,
                  client=client)
        runs.append(spread._flat)
    np.testing.assert_allclose(runs[0], one._flat, rtol=0, atol=1e-10)
    assert np.array_equal(runs[0], runs[1])


def test_regression_and_string_labels(client):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    Y = np.c_[X @ [1.0, -2.0, 0.5], X[:, 0] * X[:, 1]]
    one, spread = (MLP([3, 8, 2], output="identity", dtype="float64") for _ in range(2))
    fullbatch.fit(one, X, Y, solver="gd", max_iter=5, lr=0.05)
    fdask.fit(spread, da.from_array(X, chunks=(64, 3)), da.from_array(Y, chunks=(64, 2)),
              solver="gd", max_iter=5, lr=0.05, client=client)
    np.testing.assert_allclose(spread._flat, one._flat, rtol=0, atol=1e-10)
    X, y = blobs(n=90, n_features=4)
    names = np.array(["cat", "dog", "emu"])[y]
    model = MLP([4, 8, 3])
    fdask.fit(model, X, names, solver="lbfgs", max_iter=20, client=client)
    assert list(model.classes_) == ["cat", "dog", "emu"] and model.score(X, names) > 0.9


def test_averaged_sgd_reaches_the_accuracy_of_one_process(client):
    from sklearn.datasets import load_digits

    from fastmlp.data import train_test_split

    X, y = load_digits(return_X_y=True)
    X_train, y_train, X_test, y_test = train_test_split((X / 16).astype(np.float32), y, 0.25)
    one = MLP([64, 32, 10], seed=0)
    one.fit(X_train, y_train, epochs=10, batch_size=16, lr=0.1)
    averaged = MLP([64, 32, 10], seed=0)
    h = fdask.fit(averaged, *chunked(X_train, y_train, -(-len(y_train) // 2)),
                  solver="averaged-sgd", max_iter=10, batch_size=16, lr=0.1, client=client)
    assert len(h["loss"]) == 10 and h["loss"][-1] < h["loss"][0]
    assert averaged.score(X_test, y_test) >= one.score(X_test, y_test) - 0.01
    again = MLP([64, 32, 10], seed=0)
    fdask.fit(again, *chunked(X_train, y_train, -(-len(y_train) // 2)), solver="averaged-sgd",
              max_iter=10, batch_size=16, lr=0.1, client=client)
    assert np.array_equal(again._flat, averaged._flat)


def test_bad_chunks_and_arguments_are_clear(client, problem):
    X, y = problem
    X = X.copy()
    X[333, 2] = np.nan
    with pytest.raises(ValueError, match=r"chunk 2 \(rows 300 to 449\).*NaN or Inf \(first at "
                                         r"row 33, column 2"):
        fdask.fit(MLP([6, 4, 3]), *chunked(X, y), solver="gd", max_iter=1, client=client)
    with pytest.raises(ValueError, match="solver='sgd'"):
        fdask.fit(MLP([6, 4, 3]), *chunked(*problem), solver="sgd", client=client)
    with pytest.raises(ValueError, match="fit_kwargs may not set"):
        fdask.fit(MLP([6, 4, 3]), *chunked(*problem), solver="averaged-sgd",
                  fit_kwargs={"epochs": 3}, client=client)
    with pytest.raises(ValueError, match="weight_decay="):
        fdask.fit(MLP([6, 4, 3]), *chunked(*problem), solver="averaged-sgd",
                  fit_kwargs={"weight_decay": 0.1}, client=client)
    with pytest.raises(TypeError, match="model must be a fastmlp.MLP"):
        fdask.fit("mlp", *chunked(*problem), client=client)
    with pytest.raises(ValueError, match="600 samples but y has 599"):
        fdask.fit(MLP([6, 4, 3]), da.from_array(problem[0]), problem[1][:-1], client=client)
    with pytest.raises(ValueError, match="5 features but the model's input layer has 6"):
        fdask.fit(MLP([6, 4, 3]), *chunked(problem[0][:, :5], problem[1]), client=client)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_under_joblibs_dask_backend_equals_a_local_one(client):
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from fastmlp.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X, y = X[:600] / 16, y[:600]

    def search():
        return GridSearchCV(MLPClassifier(hidden_layer_sizes=(16,), max_iter=5, random_state=0),
                            {"alpha": [1e-4, 1e-1]}, cv=2)

    with joblib.parallel_backend("dask"):
        on_cluster = search().fit(X, y)
    local = search().fit(X, y)
    assert np.array_equal(on_cluster.cv_results_["mean_test_score"],
                          local.cv_results_["mean_test_score"])


def test_dask_ml_incremental_trains_through_partial_fit(client):
    wrappers = pytest.importorskip("dask_ml.wrappers", reason="dask-ml is not installed")
    from sklearn.datasets import load_digits

    from fastmlp.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X = X / 16
    incremental = wrappers.Incremental(MLPClassifier(hidden_layer_sizes=(16,), random_state=0),
                                       shuffle_blocks=False)
    incremental.fit(da.from_array(X, chunks=(450, 64)), da.from_array(y, chunks=450),
                    classes=np.arange(10))
    by_hand = MLPClassifier(hidden_layer_sizes=(16,), random_state=0)
    for start in range(0, len(y), 450):
        by_hand.partial_fit(X[start:start + 450], y[start:start + 450], classes=np.arange(10))
    for got, want in zip(incremental.estimator_.coefs_, by_hand.coefs_):
        assert np.array_equal(got, want)
