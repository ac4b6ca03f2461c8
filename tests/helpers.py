"""What several test files share besides fixtures: synthetic problems and finite differences."""

import numpy as np


def blobs(n=240, n_features=4, n_classes=3, seed=0, spread=0.6, center_scale=3.0):
    """Gaussian blobs, class i around a centre drawn from N(0, center_scale); with the defaults
    well separated: an easy classification problem. Labels cycle 0, 1, ..., n_classes - 1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, center_scale, (n_classes, n_features))
    y = np.arange(n) % n_classes
    X = centers[y] + rng.normal(0, spread, (n, n_features))
    return X.astype(np.float32), y


def noisy_problem(seed=0):
    """(X, y, X_val, y_val): 200 training samples with 30% of the labels flipped and 100 clean
    validation samples; a big network at a high rate overfits it, so the validation loss soon
    turns up."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, 4)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    flip = rng.random(200) < 0.3
    y[flip] = 1 - y[flip]
    X_val = rng.normal(size=(100, 4)).astype(np.float32)
    y_val = (X_val[:, 0] + X_val[:, 1] > 0).astype(int)
    return X, y, X_val, y_val


def central_differences(loss, flat, eps=1e-6):
    """d loss / d flat[i] ~ (loss(flat + eps e_i) - loss(flat - eps e_i)) / (2 eps) for every i;
    ``loss`` takes a flat parameter buffer and returns a float. ``flat`` is left as it was."""
    numeric = np.empty_like(flat)
    for i in range(flat.size):
        saved = flat[i]
        flat[i] = saved + eps
        up = loss(flat)
        flat[i] = saved - eps
        down = loss(flat)
        flat[i] = saved
        numeric[i] = (up - down) / (2 * eps)
    return numeric
