"""scikit-learn's ``MLPClassifier`` and ``MLPRegressor``, trained by fastmlp's compiled engine.

Change one import and keep the rest of the code::

    # from sklearn.neural_network import MLPClassifier
    from fastmlp.sklearn import MLPClassifier

Same constructor parameters, defaults and meanings, same fitted attributes (``coefs_``,
``intercepts_``, ``n_iter_``, ``t_``, ``loss_``, ``loss_curve_``, ``best_loss_``,
``validation_scores_``, ``best_validation_score_``, ``classes_``, ``n_features_in_``,
``feature_names_in_``, ``n_layers_``, ``n_outputs_``, ``out_activation_``) and methods (``fit``,
``partial_fit``, ``predict``, ``predict_proba``, ``predict_log_proba``, ``score``,
``get_params``/``set_params``). The training follows scikit-learn's step for step: the same
Glorot initialisation drawn from the same ``random_state``, the same shuffles and validation
split, L2 penalty ``alpha * W / batch`` in the gradient and ``0.5 * alpha * ||W||^2 / batch`` in
the loss, the same SGD momentum / Nesterov / Adam updates and learning-rate schedules, the same
``tol`` / ``n_iter_no_change`` stopping and ``ConvergenceWarning``. ``sample_weight`` works as
in scikit-learn: each minibatch's loss is the weighted mean of its samples' losses, and
``batch`` above becomes the minibatch's weight total; the early-stopping split keeps each
sample's weight and the validation score (accuracy or R^2) is weighted. With float64 (the default)
a fit matches scikit-learn's to rounding error; each minibatch runs forward, backward and the
update in one compiled call.

Two parameters of fastmlp's own come last:
- ``dtype="float64"`` (default: scikit-learn's own precision on float64 data, so results agree
  with scikit-learn's to rounding). ``"float32"`` is about twice as fast on large layers; it is
  also what scikit-learn itself uses when given float32 data.
- ``threads=None``: cores for the compiled engine (default: all this process may use).

Differences from scikit-learn, all raised as clear errors rather than silently changed:
- ``sample_weight`` must be finite and >= 0 and not all zero (scikit-learn also accepts
  negative weights); a minibatch whose weights are all zero makes a zero-gradient step (in
  scikit-learn it fails with ZeroDivisionError).
- ``MLPRegressor(loss="poisson")`` raises ``NotImplementedError`` (no exponential output head).
- sparse ``X`` is accepted but densified (a copy) before training or prediction; read-only
  arrays (memory maps) are copied once.
- ``loss_`` uses the exact log-softmax (multilabel: the exact softplus form of the binary
  cross-entropy); scikit-learn clips probabilities at machine epsilon, so the two differ only
  when a sample's true class (or label) gets probability below ~2e-16.

Binary classification: scikit-learn uses one logistic output unit. The engine has a softmax
head, and a 2-unit softmax over ``(0, z)`` is exactly a logistic unit on ``z``: the estimator
trains that network with the first unit's weights held at zero (reset after every minibatch),
which reproduces scikit-learn's gradients, updates and loss exactly. ``coefs_[-1]`` is the
(n_hidden, 1) logistic column, as in scikit-learn.

Multilabel classification: ``y`` a 2-D 0/1 indicator matrix (n_samples, n_labels), as in
scikit-learn. The engine's "logistic" head (sigmoid + binary cross-entropy per label) trains it:
``out_activation_`` is "logistic", ``classes_`` is ``arange(n_labels)``, ``loss_`` is
scikit-learn's binary log-loss (summed over labels, averaged over samples, plus the alpha
penalty), ``predict`` returns the indicator matrix (probability > 0.5), ``predict_proba`` the
per-label probabilities and ``score`` the subset accuracy.

``coefs_`` and ``intercepts_`` are views into one flat parameter buffer that the engine trains
in place. Replacing a list entry (``est.coefs_[0] = W``) is allowed: the next call repacks.
"""

import math
import numbers
import warnings

try:
    import sklearn
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'fastmlp.sklearn needs scikit-learn; install it with: pip install "fastmlp[sklearn]"'
    ) from None

import numpy as np

_MIN_SKLEARN = (1, 6)
if tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit()) < _MIN_SKLEARN:
    raise ImportError(
        f"fastmlp.sklearn needs scikit-learn>=1.6 (found {sklearn.__version__}); upgrade it with: "
        f'pip install -U "fastmlp[sklearn]"'
    )

import scipy
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils import shuffle as _sk_shuffle
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .codes import ACTIVATIONS, HEAD_IDENTITY, HEAD_LOGISTIC, HEAD_SOFTMAX, OPT_ADAM
from .params import layer_offsets, layer_views, param_count
from .validation import check_number

__all__ = ["MLPClassifier", "MLPRegressor", "InvalidParameterError"]

# scikit-learn's activation names -> fastmlp's
ACTIVATION_NAMES = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_STOCHASTIC = ("sgd", "adam")
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
               "values and need to be preprocessed.")


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a bad type or value (raised by fit, like scikit-learn's)."""


def _engine():
    from . import engine

    return engine


# ---------------------------------------------------------------- parameter checks

def _choice(*options):
    def check(value, name):
        if isinstance(value, str) and value in options:
            return value
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}.")
    return check


def _number(**limits):
    def check(value, name):
        return check_number(value, name, **limits)
    return check


def _boolean(value, name):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r}.")


def _verbose(value, name):
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    return check_number(value, name, low=0, integer=True)


def _hidden_layer_sizes(value, name):
    sizes = [value] if not hasattr(value, "__iter__") else list(value)
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral) or s < 1:
            raise ValueError(f"{name} must be a positive int or a sequence of positive ints, "
                             f"e.g. (100,); got {value!r}.")
    return [int(s) for s in sizes]


def _batch_size(value, name):
    if isinstance(value, str) and value == "auto":
        return value
    return check_number(value, name, low=1, integer=True)


def _n_iter_no_change(value, name):
    if isinstance(value, numbers.Real) and value == np.inf:
        return np.inf
    return check_number(value, name, low=1, integer=True)


def _dtype(value, name):
    try:
        dt = np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt.name not in ("float32", "float64"):
        raise ValueError(f"{name} must be 'float32' or 'float64'; got {value!r}.")
    return dt


# Every hyper-parameter and its check; fit validates them all (never __init__ or set_params).
_CHECKS = {
    "hidden_layer_sizes": _hidden_layer_sizes,
    "activation": _choice(*ACTIVATION_NAMES),
    "solver": _choice("lbfgs", "sgd", "adam"),
    "alpha": _number(low=0),
    "batch_size": _batch_size,
    "learning_rate": _choice("constant", "invscaling", "adaptive"),
    "learning_rate_init": _number(low=0, low_open=True),
    "power_t": _number(low=0),
    "max_iter": _number(low=1, integer=True),
    "shuffle": _boolean,
    "random_state": lambda value, name: value,          # check_random_state checks it at fit
    "tol": _number(low=0),
    "verbose": _verbose,
    "warm_start": _boolean,
    "momentum": _number(low=0, high=1),
    "nesterovs_momentum": _boolean,
    "early_stopping": _boolean,
    "validation_fraction": _number(low=0, high=1, high_open=True),
    "beta_1": _number(low=0, high=1, high_open=True),
    "beta_2": _number(low=0, high=1, high_open=True),
    "epsilon": _number(low=0, low_open=True),
    "n_iter_no_change": _n_iter_no_change,
    "max_fun": _number(low=1, integer=True),
    "loss": _choice("squared_error", "poisson"),
    "dtype": _dtype,
    "threads": _number(low=1, integer=True, allow_none=True),
}


class _Hyper:
    """The checked hyper-parameters of one fit, as attributes."""

    def __init__(self, estimator):
        for name, value in estimator.get_params(deep=False).items():
            try:
                setattr(self, name, _CHECKS[name](value, name))
            except (TypeError, ValueError) as exc:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(estimator).__name__} is invalid: {exc}"
                ) from None


def _set_learning_rate(opt, lr):
    """Change the SGD learning rate kept in ``opt.learning_rate``. fastmlp's velocity is
    ``v = momentum * v + g`` and scikit-learn's is ``-learning_rate * v``: ``v`` is rescaled so
    that this product is kept (exact parity)."""
    if lr != opt.learning_rate and opt.opt != OPT_ADAM:
        opt.state1 *= opt.state1.dtype.type(opt.learning_rate / lr)
    opt.learning_rate = float(lr)


# ---------------------------------------------------------------- the shared estimator

class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share; not for direct use."""

    _is_classifier = False

    # ------------------------------------------------ layout of the flat buffer

    def _pinned(self):
        """True when the engine trains a 2-unit softmax for a logistic output (binary)."""
        return self._is_classifier and self.n_outputs_ == 1

    def _engine_units(self, units=None):
        units = list(units) if units is not None else (
            [self.coefs_[0].shape[0]] + [W.shape[1] for W in self.coefs_])
        if self._pinned():
            units[-1] = 2
        return units

    def _logical_views(self, flat, engine_units):
        """[(W, b)] in scikit-learn's shapes, viewing ``flat`` (the logistic column when pinned)."""
        views = layer_views(flat, engine_units)
        if self._pinned():
            W, b = views[-1]
            views[-1] = (W[:, 1:], b[1:])
        return views

    def _adopt(self, flat, engine_units):
        """Make ``flat`` the parameters: coefs_ and intercepts_ become views into it."""
        views = self._logical_views(flat, engine_units)
        self._flat = flat
        self.coefs_ = [W for W, _ in views]
        self.intercepts_ = [b for _, b in views]
        self._views = (tuple(self.coefs_), tuple(self.intercepts_))

    def _current_flat(self, dtype, store):
        """The flat buffer holding coefs_ / intercepts_: the trained buffer itself while they are
        still its views, otherwise packed anew (and kept when ``store``)."""
        flat = getattr(self, "_flat", None)
        views = getattr(self, "_views", None)
        if (flat is not None and flat.dtype == dtype and views is not None
                and len(views[0]) == len(self.coefs_) and len(views[1]) == len(self.intercepts_)
                and all(a is b for a, b in zip(views[0], self.coefs_))
                and all(a is b for a, b in zip(views[1], self.intercepts_))):
            return flat
        units = self._engine_units()
        flat = np.zeros(param_count(units), dtype=dtype)
        for l, (W, b) in enumerate(self._logical_views(flat, units)):
            for name, dst, src in (("coefs_", W, self.coefs_[l]), ("intercepts_", b, self.intercepts_[l])):
                src = np.asarray(src)
                if src.shape != dst.shape:
                    raise ValueError(f"{name}[{l}] has shape {src.shape}; expected {dst.shape}.")
                dst[...] = src
        if store:
            self._adopt(flat, units)
        return flat

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_flat", None)        # coefs_ / intercepts_ carry the weights
        state.pop("_views", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "coefs_" in self.__dict__:
            dtype = np.result_type(*self.coefs_)
            self._current_flat(dtype if dtype.kind == "f" else np.float64, store=True)

    # ------------------------------------------------ fitting

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hp = _Hyper(self)
        if getattr(hp, "loss", None) == "poisson":
            raise NotImplementedError(
                "loss='poisson' is not supported by fastmlp (its engine has no exponential "
                "output head); use sklearn.neural_network.MLPRegressor for Poisson regression.")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y_idx, Y, n_outputs = self._validate_input(X, y, hp, incremental, reset=first_pass)
        sw = _check_weights(sample_weight, X, hp.dtype)
        units = [X.shape[1]] + hp.hidden_layer_sizes + [n_outputs]
        multilabel = self._is_classifier and Y.shape[0] > 0
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(units, hp, multilabel)
        else:
            if multilabel != self._multilabel():
                # the head (and so the targets the compiled kernels read) would change
                raise ValueError(
                    f"warm_start / partial_fit needs the same kind of targets as the previous "
                    f"fit: the model was trained on "
                    f"{'multilabel' if self._multilabel() else 'single-label'} targets, this y is "
                    f"{'multilabel' if multilabel else 'single-label'}. Set warm_start=False to "
                    f"start over.")
            have = [self.coefs_[0].shape[0]] + [W.shape[1] for W in self.coefs_]
            if have != units:
                raise ValueError(
                    f"warm_start / partial_fit needs the same layer sizes as the previous fit: "
                    f"the model has {have}, this call needs {units}. Set warm_start=False to "
                    f"start over.")
        flat = self._current_flat(hp.dtype, store=True)
        if hp.solver in _STOCHASTIC:
            self._fit_stochastic(X, y_idx, Y, hp, incremental, sw)
        else:
            self._fit_lbfgs(X, y_idx, Y, hp, sw)
        if not np.isfinite(flat).all():
            raise ValueError(_NON_FINITE)
        return self

    def _initialize(self, units, hp, multilabel=False):
        """New weights exactly as scikit-learn draws them (Glorot uniform, same random stream)."""
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = units[-1]
        self.n_layers_ = len(units)
        if not self._is_classifier:
            self.out_activation_ = "identity"
        elif units[-1] == 1 or multilabel:
            self.out_activation_ = "logistic"
        else:
            self.out_activation_ = "softmax"
        engine_units = self._engine_units(units)
        flat64 = np.zeros(param_count(engine_units))
        factor = 2.0 if hp.activation == "logistic" else 6.0
        for (W, b), fan_in, fan_out in zip(self._logical_views(flat64, engine_units), units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            W[...] = self._random_state.uniform(-bound, bound, (fan_in, fan_out))
            b[...] = self._random_state.uniform(-bound, bound, fan_out)
        self._adopt(flat64.astype(hp.dtype), engine_units)
        self._best_flat = self._flat.copy()
        self.__dict__.pop("_optimizer", None)       # a new fit starts a new optimizer
        if hp.solver in _STOCHASTIC:
            self._reset_curves(hp)

    def _reset_curves(self, hp):
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if hp.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _network(self, flat=None):
        """The engine's view of the fitted parameters."""
        return _engine().Network(self._flat if flat is None else flat, tuple(self._engine_units()),
                                 ACTIVATIONS.index(ACTIVATION_NAMES[self.activation]), self._head())

    def _multilabel(self):
        """True for a classifier of several logistic outputs (multilabel indicator targets)."""
        return (self._is_classifier and getattr(self, "out_activation_", None) == "logistic"
                and self.n_outputs_ > 1)

    def _head(self):
        if not self._is_classifier:
            return HEAD_IDENTITY
        return HEAD_LOGISTIC if self._multilabel() else HEAD_SOFTMAX

    def _loss_divisor(self):
        # scikit-learn's squared loss is a mean over outputs too; the engine's sums over outputs
        return 1 if self._is_classifier else self.n_outputs_

    def _fit_stochastic(self, X, y_idx, Y, hp, incremental, sw=None):
        """scikit-learn's stochastic loop. With sample weights ``sw`` (the model's dtype) each
        minibatch's loss is the weighted mean plus ``0.5 * alpha * ||W||^2 / sw_sum`` (sw_sum:
        the minibatch's weight total) and the engine scales row i's gradient by w_i / sw_sum;
        loss_ sums those minibatch losses times the minibatch sizes over n, as scikit-learn."""
        flat = self._flat
        engine = _engine()
        if not incremental or getattr(self, "_optimizer", None) is None:
            self._optimizer = engine.OptimizerState(hp.solver, flat.shape[0], flat.dtype)
            self._optimizer.learning_rate = float(hp.learning_rate_init)
        opt = self._optimizer.astype(flat.dtype)
        if not hasattr(self, "loss_curve_"):     # warm start from an lbfgs fit
            self._reset_curves(hp)
        if hp.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        n = X.shape[0]
        if hp.early_stopping:
            # the same split scikit-learn makes (same random stream, same stratification)
            stratify = (y_idx == 1)[:, None] if self._pinned() else None
            train_rows, val_rows = train_test_split(np.arange(n), random_state=self._random_state,
                                                    test_size=hp.validation_fraction, stratify=stratify)
            if val_rows.shape[0] < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                                 "or the size of your dataset.")
            train_rows = train_rows.astype(np.int64)
            X_val = X[val_rows]
            val_targets = Y[val_rows] if Y.shape[0] else y_idx[val_rows]
            val_weights = None if sw is None else sw[val_rows].astype(np.float64)
            n_train = train_rows.shape[0]
        else:
            train_rows, X_val, val_targets, val_weights, n_train = None, None, None, None, n
        if hp.batch_size == "auto":
            batch_size = min(200, n_train)
        else:
            if hp.batch_size > n_train:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is "
                              "going to be clipped")
            batch_size = int(np.clip(hp.batch_size, 1, n_train))

        net = self._network()
        units = net.layers
        weight_slices = [slice(w0, b0) for w0, b0, _, _ in layer_offsets(units)]
        if self._pinned():
            W_last, b_last = layer_views(flat, units)[-1]
        divisor = self._loss_divisor()
        sample_idx = np.arange(n_train, dtype=np.int64)
        try:
            self.n_iter_ = 0
            for _ in range(hp.max_iter):
                if hp.shuffle:
                    sample_idx = _sk_shuffle(sample_idx, random_state=self._random_state)
                order = sample_idx if train_rows is None else train_rows[sample_idx]
                order = np.ascontiguousarray(order, dtype=np.int64)
                accumulated_loss = 0.0
                # one minibatch per engine call, under one thread setting for the epoch
                with engine.session(units, batch_size, hp.threads):
                    for start in range(0, n_train, batch_size):
                        rows = order[start:start + batch_size]
                        B = rows.shape[0]
                        # sw_sum: what scikit-learn divides the gradient and the L2 term by
                        sw_sum = B if sw is None else float(sw[rows].sum(dtype=np.float64))
                        decay = hp.alpha / sw_sum if sw_sum > 0 else 0.0
                        if hp.alpha and sw is None:
                            # scikit-learn's batch loss carries 0.5 * alpha * ||W||^2 / B
                            accumulated_loss += 0.5 * hp.alpha * sum(
                                float(np.dot(flat[s], flat[s])) for s in weight_slices)
                        elif hp.alpha and sw_sum > 0:
                            accumulated_loss += 0.5 * decay * B * sum(
                                float(np.dot(flat[s], flat[s])) for s in weight_slices)
                        if opt.opt == OPT_ADAM:
                            # scikit-learn adds epsilon to sqrt(v), fastmlp to sqrt(v_hat)
                            lr = hp.learning_rate_init
                            eps = hp.epsilon / math.sqrt(1.0 - hp.beta_2 ** (opt.step + 1))
                        else:
                            lr, eps = opt.learning_rate, hp.epsilon
                        hyper = engine.Hyper.of(opt.opt, lr, hp.momentum, hp.nesterovs_momentum,
                                                decay, hp.beta_1, hp.beta_2, eps)
                        # no guard: like scikit-learn, a non-finite loss raises and the
                        # estimator is left as it is
                        stats = engine.train(net, opt, engine.Batches(X, y_idx, Y, rows, batch_size, sw),
                                             hyper, hp.threads, guard=False)
                        if stats.diverged_at is not None:
                            raise ValueError(_NON_FINITE)
                        if self._pinned():
                            W_last[:, 0] = 0
                            b_last[0] = 0
                        if sw is None:
                            accumulated_loss += stats.loss_sum / divisor
                        elif stats.weight > 0:  # the weighted mean, times B as scikit-learn
                            accumulated_loss += stats.loss_sum / stats.weight / divisor * B
                self.n_iter_ += 1
                self.loss_ = accumulated_loss / n_train
                self.t_ += n_train
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
                self._update_no_improvement_count(hp, X_val, val_targets, val_weights)
                if hp.solver == "sgd" and hp.learning_rate == "invscaling":
                    _set_learning_rate(opt, hp.learning_rate_init / (self.t_ + 1) ** hp.power_t)
                if self._no_improvement_count > hp.n_iter_no_change:
                    if hp.early_stopping:
                        msg = ("Validation score did not improve more than tol=%f for %d "
                               "consecutive epochs." % (hp.tol, hp.n_iter_no_change))
                    else:
                        msg = ("Training loss did not improve more than tol=%f for %d "
                               "consecutive epochs." % (hp.tol, hp.n_iter_no_change))
                    if self._trigger_stopping(hp, opt, msg):
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == hp.max_iter:
                    warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                                  "optimization hasn't converged yet." % hp.max_iter,
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if hp.early_stopping:
            flat[...] = self._best_flat             # restore the best validation weights

    def _trigger_stopping(self, hp, opt, msg):
        """scikit-learn's rule: stop, unless 'adaptive' SGD can still divide its rate by 5."""
        if hp.solver != "sgd" or hp.learning_rate != "adaptive":
            if self.verbose:
                print(msg + " Stopping.")
            return True
        if opt.learning_rate <= 1e-6:
            if self.verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        _set_learning_rate(opt, opt.learning_rate / 5.0)
        if self.verbose:
            print(msg + " Setting learning rate to %f" % opt.learning_rate)
        return False

    def _update_no_improvement_count(self, hp, X_val, val_targets, val_weights=None):
        if hp.early_stopping:
            score = self._validation_score(hp, X_val, val_targets, val_weights)
            self.validation_scores_.append(score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            if score < self.best_validation_score_ + hp.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_flat = self._flat.copy()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - hp.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _fit_lbfgs(self, X, y_idx, Y, hp, sw=None):
        """Full-batch L-BFGS-B over scikit-learn's packed vector (all coefs, then all
        intercepts), with the compiled loss and gradient of the whole data set (with sample
        weights: the weighted mean loss, and the L2 term over their total, as scikit-learn)."""
        flat = self._flat
        units = self._engine_units()
        logical = self._logical_views(np.arange(flat.shape[0]), units)
        idx = np.concatenate([W.ravel() for W, _ in logical] + [b.ravel() for _, b in logical])
        n_weights = sum(W.size for W, _ in logical)
        engine = _engine()
        net = self._network()
        grad = np.empty_like(flat)
        n = X.shape[0] if sw is None else float(sw.sum(dtype=np.float64))
        divisor = self._loss_divisor()

        def loss_grad(x):
            flat[idx] = x
            loss, _ = engine.loss_and_grad(net, X, y_idx, Y, grad, sw, hp.threads)
            g = grad[idx].astype(np.float64)
            if not np.isfinite(loss):
                g[:] = np.nan
            w = x[:n_weights]
            # as scikit-learn: the reported loss is a mean over outputs, the gradient is not
            loss = loss / divisor + 0.5 * hp.alpha * float(np.dot(w, w)) / n
            g[:n_weights] += hp.alpha * w / n
            return loss, g

        options = {"maxfun": hp.max_fun, "maxiter": hp.max_iter, "gtol": hp.tol}
        if tuple(int(p) for p in scipy.__version__.split(".")[:2]) < (1, 15):
            options["iprint"] = 1 if self.verbose else -1
        result = scipy.optimize.minimize(loss_grad, flat[idx].astype(np.float64),
                                         method="L-BFGS-B", jac=True, options=options)
        self.n_iter_ = _check_lbfgs_result(result, hp.max_iter)
        self.loss_ = result.fun
        flat[idx] = result.x

    # ------------------------------------------------ inference

    def _forward(self, X, check_input=True):
        """The head's output for X: probabilities (n, 2 or n_classes) or values (n, n_outputs)."""
        if check_input:
            X = self._validate_X(X)
        flat = self._current_flat(X.dtype, store=False)
        threads = self.threads if isinstance(self.threads, numbers.Integral) else None
        return _engine().predict(self._network(flat), X, threads)

    def _fitted_dtype(self):
        flat = getattr(self, "_flat", None)
        if flat is not None:
            return flat.dtype
        return np.result_type(*self.coefs_)

    def _validate_X(self, X):
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                          dtype=self._fitted_dtype(), order="C")
        return _dense_writable(X, self._fitted_dtype())

    def _validation_score(self, hp, X_val, val_targets, val_weights=None):
        out = self._forward(X_val, check_input=False)
        if not np.isfinite(out).all():
            return np.nan
        if val_weights is not None:             # scikit-learn's score with the split's weights
            if self._multilabel():
                return float(accuracy_score(val_targets > 0.5, out > 0.5, sample_weight=val_weights))
            if self._is_classifier:
                return float(accuracy_score(val_targets, out.argmax(axis=1), sample_weight=val_weights))
            return float(r2_score(val_targets, out, sample_weight=val_weights))
        if self._multilabel():                  # subset accuracy, as scikit-learn's score
            return float(np.mean(np.all((out > 0.5) == (val_targets > 0.5), axis=1)))
        if self._is_classifier:
            return float(np.mean(out.argmax(axis=1) == val_targets))
        return float(r2_score(val_targets, out))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _dense_writable(X, dtype):
    """C-contiguous, writable, dense ``dtype`` array: read-only inputs are copied (the compiled
    kernels are specialised for writable arrays; a read-only one would cost a recompilation)."""
    if hasattr(X, "toarray"):
        X = X.toarray()
    X = np.ascontiguousarray(X, dtype=dtype)
    if not X.flags.writeable:
        X = X.copy()
    return X


def _check_weights(sample_weight, X, dtype):
    """``sample_weight`` checked as scikit-learn checks it (a number means that weight for every
    sample), then finite, >= 0 and not all zero; returned C-contiguous in ``dtype``, a new array
    (the caller's is never written). None stays None."""
    if sample_weight is None:
        return None
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
    if not np.isfinite(sw).all() or (sw < 0).any():
        raise ValueError("sample_weight must be finite and non-negative.")
    if not sw.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return np.array(sw, dtype=dtype, order="C")


def _check_lbfgs_result(result, max_iter):
    """n_iter_ and a ConvergenceWarning, as scikit-learn reports an L-BFGS run."""
    n_iter = min(result.nit, max_iter)
    if result.status != 0:
        msg = (f"lbfgs failed to converge after {n_iter} iteration(s) (status={result.status}):\n"
               f"{result.message}\n")
        if n_iter == max_iter:
            msg += (f"\nIncrease the number of iterations to improve the convergence "
                    f"(max_iter={max_iter}).")
        msg += ("\nYou might also want to scale the data as shown in:\n"
                "    https://scikit-learn.org/stable/modules/preprocessing.html")
        warnings.warn(msg, ConvergenceWarning, stacklevel=3)
    return n_iter


_PARAMS_DOC = """
    Parameters are scikit-learn's (same names, defaults and meanings; see
    ``sklearn.neural_network.{name}``), plus:

    dtype : {{"float64", "float32"}}, default="float64"
        Precision of the weights and of the computation. float64 reproduces scikit-learn's fits
        to rounding error; float32 is faster on large layers.
    threads : int or None, default=None
        Cores for the compiled engine; None uses every core this process may run on.
"""


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
