"""The hyper-parameters of the scikit-learn estimators, checked as scikit-learn checks them."""

import numbers

import numpy as np


from ..codes import SKLEARN_ACTIVATIONS
from ..validation import check_number


ACTIVATION_NAMES = SKLEARN_ACTIVATIONS       # scikit-learn's activation names -> fastmlp's
_STOCHASTIC = ("sgd", "adam")
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large "
               "values and need to be preprocessed.")


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a bad type or value (raised by fit, like scikit-learn's)."""


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


_PARAMS_DOC = """
    Parameters are scikit-learn's (same names, defaults and meanings; see
    ``sklearn.neural_network.{name}``), plus:

    dtype : {{"float64", "float32"}}, default="float64"
        Precision of the weights and of the computation. float64 reproduces scikit-learn's fits
        to rounding error; float32 is faster on large layers.
    threads : int or None, default=None
        Cores for the compiled engine; None uses every core this process may run on.
"""
