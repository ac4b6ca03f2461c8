"""Weights between fastmlp models and scikit-learn's MLPClassifier / MLPRegressor."""

import numpy as np

from .codes import DTYPES, SKLEARN_ACTIVATIONS
from .model import NotFittedError



def from_sklearn(cls, estimator, **kwargs):
    """A model holding the weights of a fitted scikit-learn ``MLPClassifier`` /
    ``MLPRegressor`` (or ``fastmlp.sklearn``'s), predicting what the estimator predicts.

    ``kwargs`` go to the constructor (``engine``, ``threads``, ``seed``...). The weights are
    copied. A binary classifier's single logistic unit z becomes a 2-unit softmax over
    (0, z), which gives the same probabilities. A multilabel classifier (several logistic
    outputs) becomes ``output="logistic"``. Single-class classifiers and Poisson regressors
    have no fastmlp equivalent: ValueError.
    """
    coefs = getattr(estimator, "coefs_", None)
    if coefs is None:
        raise NotFittedError(f"{type(estimator).__name__} is not fitted; call its fit first.")
    names = SKLEARN_ACTIVATIONS
    if estimator.activation not in names:
        raise ValueError(f"activation={estimator.activation!r} has no fastmlp equivalent.")
    pairs = [(np.asarray(W), np.asarray(b)) for W, b in zip(coefs, estimator.intercepts_)]
    layers = [pairs[0][0].shape[0]] + [W.shape[1] for W, _ in pairs]
    out = estimator.out_activation_
    classes = getattr(estimator, "classes_", None)
    multilabel = out == "logistic" and pairs[-1][0].shape[1] > 1
    if out == "logistic" and not multilabel and (classes is None or len(classes) != 2):
        raise ValueError("single-class classifiers have no fastmlp equivalent: a fastmlp "
                         "classifier needs at least two classes.")
    if out not in ("softmax", "logistic", "identity"):
        raise ValueError(f"out_activation_={out!r} has no fastmlp output head.")
    if out == "logistic" and not multilabel:    # sigmoid(z) = softmax((0, z))[1]
        W, b = pairs[-1]
        pairs[-1] = (np.hstack([np.zeros_like(W), W]), np.concatenate([np.zeros_like(b), b]))
        layers[-1] = 2
    dtype = np.result_type(*[W for W, _ in pairs])
    output = "logistic" if multilabel else "identity" if out == "identity" else "softmax"
    model = cls(layers=layers, activation=names[estimator.activation], output=output,
                dtype=dtype.name if dtype.name in DTYPES else "float64", **kwargs)
    model.params = pairs
    if out == "identity":
        model.target_ndim_ = 1 if layers[-1] == 1 else 2
    elif not multilabel:                    # multilabel: label j is column j, no classes_
        model.classes_ = np.asarray(classes)
    return model

def to_sklearn(model):
    """A fitted scikit-learn ``MLPClassifier`` / ``MLPRegressor`` with a copy of these weights
    (needs scikit-learn): it predicts what this model predicts. A 2-class softmax becomes
    scikit-learn's single logistic unit on the logit difference. ``output="logistic"``
    becomes a multilabel classifier (classes_ 0..n_labels-1); with a single output it is
    scikit-learn's binary classifier of classes [0, 1], whose predict returns a 1-D array.
    ``output="sigmoid"`` and ``activation="leaky_relu"`` have no scikit-learn equivalent:
    ValueError.
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import LabelBinarizer

    names = {ours: theirs for theirs, ours in SKLEARN_ACTIVATIONS.items()}
    if model.activation not in names:
        raise ValueError(f"activation={model.activation!r} has no scikit-learn equivalent; "
                         f"use one of {sorted(names)}.")
    if model.output == "sigmoid":
        raise ValueError("output='sigmoid' (squared error on sigmoid outputs) has no "
                         "scikit-learn equivalent; use output='softmax'.")
    pairs = [(W.copy(), b.copy()) for W, b in model.params]
    kwargs = {"hidden_layer_sizes": tuple(model.layers[1:-1]), "activation": names[model.activation]}
    if model.output == "identity":
        est = MLPRegressor(**kwargs)
        est.out_activation_ = "identity"
    elif model.output == "logistic":
        est = MLPClassifier(**kwargs)
        n_labels = model.layers[-1]
        est.classes_ = np.arange(max(n_labels, 2))
        # what its predict reads: an indicator binarizer (several labels) or a binary one
        est._label_binarizer = LabelBinarizer().fit(
            np.eye(n_labels, dtype=np.int64) if n_labels > 1 else est.classes_)
        est.out_activation_ = "logistic"
    else:
        est = MLPClassifier(**kwargs)
        est.classes_ = (model.classes_ if model.classes_ is not None
                        else np.arange(model.layers[-1]))
        est._label_binarizer = LabelBinarizer().fit(est.classes_)   # what its predict reads
        if model.layers[-1] == 2:            # softmax((z0, z1))[1] = sigmoid(z1 - z0)
            W, b = pairs[-1]
            pairs[-1] = (W[:, 1:] - W[:, :1], b[1:] - b[:1])
            est.out_activation_ = "logistic"
        else:
            est.out_activation_ = "softmax"
    est.coefs_ = [W for W, _ in pairs]
    est.intercepts_ = [b for _, b in pairs]
    est.n_features_in_ = model.layers[0]
    est.n_layers_ = len(model.layers)
    est.n_outputs_ = pairs[-1][0].shape[1]
    est.n_iter_ = len(model.history_.get("epoch", []))
    return est
