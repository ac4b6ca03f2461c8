"""The estimators: MLPClassifier and MLPRegressor, drop-ins for scikit-learn's."""


import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin

from sklearn.utils import column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data


from .base import _BaseMLP, _dense_writable
from .params import _PARAMS_DOC, _STOCHASTIC


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier: ``sklearn.neural_network.MLPClassifier`` on fastmlp's
    compiled engine (softmax + log-loss; binary targets use a logistic output, exactly;
    multilabel indicator targets use logistic outputs + binary log-loss).
    """ + _PARAMS_DOC.format(name="MLPClassifier")

    _is_classifier = True

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float64", threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.threads = threads

    @property
    def loss(self):
        """The loss, as scikit-learn's estimator reports it (not a parameter)."""
        return "log_loss"

    def _validate_input(self, X, y, hp, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=hp.dtype, order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y).startswith("multilabel")
        if y.ndim != 1 and not multilabel:
            raise ValueError(
                f"fastmlp.sklearn.MLPClassifier does not support multiclass-multioutput targets "
                f"(y has shape {y.shape} and is not a 0/1 label indicator matrix); pass one class "
                f"label per sample or a multilabel indicator matrix.")
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self.classes_ = unique_labels(y)
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the "
                        f"previous call to fit. Previously got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        if multilabel:
            # scikit-learn trains on y.astype(bool): any nonzero entry is a label that is on
            Y = _dense_writable(y.toarray() != 0 if hasattr(y, "toarray") else y != 0, hp.dtype)
            return _dense_writable(X, hp.dtype), np.zeros(0, dtype=np.int64), Y, Y.shape[1]
        y_idx = np.searchsorted(self.classes_, y).astype(np.int64)
        n_classes = len(self.classes_)
        Y = np.zeros((0, max(n_classes, 2)), dtype=hp.dtype)
        return _dense_writable(X, hp.dtype), y_idx, Y, (1 if n_classes <= 2 else n_classes)

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and class labels y (or a multilabel 0/1
        indicator matrix, n_samples x n_labels); returns self.

        ``sample_weight``: one weight >= 0 per sample (None: all 1), used as scikit-learn uses
        it: each minibatch minimises the weighted mean of its losses.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC:
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 "%s is not stochastic." % self.solver)
        return True

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y) from the current weights; ``classes`` is needed on the first call."""
        if getattr(self, "classes_", None) is None:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = unique_labels(classes)
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of ``classes_``
        (multilabel: each label's probability, independently)."""
        check_is_fitted(self)
        return self._forward(X)

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def predict(self, X):
        """Predicted class labels (multilabel: the 0/1 indicator matrix, probability > 0.5)."""
        check_is_fitted(self)
        proba = self._forward(X)
        if self._multilabel():                  # as scikit-learn's LabelBinarizer thresholds
            return np.array(proba > 0.5, dtype=int)
        if len(self.classes_) == 1:
            return np.repeat(self.classes_, proba.shape[0])
        return self.classes_[proba.argmax(axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor: ``sklearn.neural_network.MLPRegressor`` on fastmlp's
    compiled engine (identity output, squared error; several outputs are supported).
    """ + _PARAMS_DOC.format(name="MLPRegressor")

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype="float64", threads=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.threads = threads

    def _validate_input(self, X, y, hp, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=hp.dtype, order="C", reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = _dense_writable(y.reshape(y.shape[0], -1), hp.dtype)
        return _dense_writable(X, hp.dtype), np.zeros(0, dtype=np.int64), Y, Y.shape[1]

    def fit(self, X, y, sample_weight=None):
        """Fit the model to X (n_samples, n_features) and targets y (n_samples,) or
        (n_samples, n_outputs); returns self. ``sample_weight``: one weight >= 0 per sample
        (None: all 1), used as scikit-learn uses it."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    # scikit-learn offers partial_fit on MLPRegressor for every solver (with 'lbfgs' it runs
    # a full L-BFGS fit from the current weights); so does this class.
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) from the current weights (a full L-BFGS run for 'lbfgs')."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict(self, X):
        """Predicted values: (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
