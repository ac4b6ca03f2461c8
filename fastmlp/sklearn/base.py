"""What MLPClassifier and MLPRegressor share: the flat parameters behind coefs_ and
intercepts_, the stochastic solvers and L-BFGS on the engine, inference."""

import math
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator

import scipy
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils import shuffle as _sk_shuffle
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ..codes import ACTIVATIONS, HEAD_IDENTITY, HEAD_LOGISTIC, HEAD_SOFTMAX, OPT_ADAM
from ..validation import check_sample_weight
from ..params import layer_offsets, layer_views, param_count

from .params import _NON_FINITE, _STOCHASTIC, ACTIVATION_NAMES, _Hyper


def _engine():
    from .. import engine

    return engine


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
        if not first_pass:
            self._check_fitted_attributes()
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
                with engine.session(units, batch_size, hp.threads, flat.dtype):
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
            self._check_fitted_attributes()
            X = self._validate_X(X)
        flat = self._current_flat(X.dtype, store=False)
        threads = self.threads if isinstance(self.threads, numbers.Integral) else None
        return _engine().predict(self._network(flat), X, threads)

    def _check_fitted_attributes(self):
        """The fitted attributes a user can assign (coefs_, intercepts_, n_features_in_,
        n_outputs_, classes_) must describe one network before any compiled code reads them:
        it does no bounds checking."""
        check_is_fitted(self, "coefs_")
        coefs, intercepts = self.coefs_, getattr(self, "intercepts_", None)
        if (not isinstance(coefs, (list, tuple)) or not isinstance(intercepts, (list, tuple))
                or not coefs or len(coefs) != len(intercepts)):
            raise ValueError("coefs_ and intercepts_ must be lists of one array per layer, of "
                             "the same length; refit or assign both.")
        n_in = getattr(self, "n_features_in_", None)
        for l, (W, b) in enumerate(zip(coefs, intercepts)):
            W, b = np.asarray(W), np.asarray(b)
            if W.ndim != 2 or W.dtype.kind not in "biuf" or W.shape[0] != n_in:
                raise ValueError(f"coefs_[{l}] has shape {W.shape} ({W.dtype}); layer {l} needs "
                                 f"a real ({n_in}, n_out) matrix (n_features_in_={self.n_features_in_}"
                                 f" for layer 0, else the previous layer's outputs).")
            if b.shape != (W.shape[1],) or b.dtype.kind not in "biuf":
                raise ValueError(f"intercepts_[{l}] has shape {b.shape}; coefs_[{l}] is "
                                 f"{W.shape}, so it needs shape ({W.shape[1]},).")
            if not (np.isfinite(W).all() and np.isfinite(b).all()):
                raise ValueError(f"coefs_[{l}] or intercepts_[{l}] holds NaN or Inf.")
            n_in = W.shape[1]
        if getattr(self, "n_outputs_", n_in) != n_in:
            raise ValueError(f"n_outputs_={self.n_outputs_} but the last layer has {n_in} "
                             f"outputs; refit or set them to agree.")
        if self._is_classifier and not self._multilabel():
            classes = np.asarray(getattr(self, "classes_", []))
            n_classes = 2 if n_in == 1 else n_in   # one logistic unit: 2 classes (or 1 seen)
            if (classes.ndim != 1 or len(classes) not in (n_classes, n_in)
                    or (len(classes) > 1 and not (classes[1:] > classes[:-1]).all())):
                raise ValueError(f"classes_ must be the {n_classes} sorted, distinct labels the "
                                 f"output layer stands for; got {classes!r}.")

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
    """``sample_weight`` as scikit-learn reads it (a number means that weight for every sample),
    then checked as fastmlp checks weights (finite, >= 0, not all zero); a new C-contiguous
    array in ``dtype`` (the caller's is never written). None stays None."""
    if sample_weight is None:
        return None
    sw = _check_sample_weight(sample_weight, X, dtype=np.float64)
    return np.array(check_sample_weight(sw, X.shape[0], dtype), dtype=dtype, order="C")


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
