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

try:
    import sklearn
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        'fastmlp.sklearn needs scikit-learn; install it with: pip install "fastmlp[sklearn]"'
    ) from None


_MIN_SKLEARN = (1, 6)
if tuple(int(p) for p in sklearn.__version__.split(".")[:2] if p.isdigit()) < _MIN_SKLEARN:
    raise ImportError(
        f"fastmlp.sklearn needs scikit-learn>=1.6 (found {sklearn.__version__}); upgrade it with: "
        f'pip install -U "fastmlp[sklearn]"'
    )

from .estimators import MLPClassifier, MLPRegressor  # noqa: E402
from .params import InvalidParameterError  # noqa: E402

__all__ = ["MLPClassifier", "MLPRegressor", "InvalidParameterError"]
