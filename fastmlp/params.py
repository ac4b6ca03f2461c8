"""All of a model's parameters live in one flat buffer; each layer's (W, b) is a view into it.

Layer ``l`` maps ``n_in = layers[l]`` inputs to ``n_out = layers[l + 1]`` outputs; its W is
(n_in, n_out), row-major, followed by its b (n_out,). The flat order is W0, b0, W1, b1, ...
so an optimizer update is one flat loop and a gradient check perturbs one vector.
"""

import numpy as np

from .codes import INITS, code_of


def param_count(layers):
    """Number of scalars in the flat buffer of a network with these layer widths."""
    return int(sum((n_in + 1) * n_out for n_in, n_out in zip(layers[:-1], layers[1:])))


def layer_offsets(layers):
    """For each layer, (w_start, b_start, n_in, n_out) into the flat buffer."""
    offsets, start = [], 0
    for n_in, n_out in zip(layers[:-1], layers[1:]):
        offsets.append((start, start + n_in * n_out, int(n_in), int(n_out)))
        start += (n_in + 1) * n_out
    return offsets


def layer_views(flat, layers):
    """List of (W, b) views into ``flat``: writing to a view writes the flat buffer."""
    return [
        (flat[w0:b0].reshape(n_in, n_out), flat[b0:b0 + n_out])
        for w0, b0, n_in, n_out in layer_offsets(layers)
    ]


def weight_mask(layers):
    """Boolean flat mask, True on weights and False on biases (weight decay skips biases)."""
    mask = np.zeros(param_count(layers), dtype=bool)
    for w0, b0, _, _ in layer_offsets(layers):
        mask[w0:b0] = True
    return mask


def init_params(layers, init, rng, dtype):
    """A new flat parameter buffer.

    - ``"he"``: W ~ N(0, 2 / n_in), b = 0 (for ReLU-like activations);
    - ``"glorot"``: W ~ U(-r, r) with r = sqrt(6 / (n_in + n_out)), b = 0;
    - ``"uniform"``: W and b ~ U(-0.5, 0.5), as classic from-scratch notebooks do;
    - ``"normal"``: W and b ~ N(0, 1).
    Draws are made in float64 from ``rng`` (a ``numpy.random.Generator``) and then cast, so
    float32 and float64 models with the same seed start from the same values.
    """
    code_of(INITS, init, "init")
    flat = np.empty(param_count(layers), dtype=np.float64)
    for (W, b), (n_in, n_out) in zip(layer_views(flat, layers), zip(layers[:-1], layers[1:])):
        if init == "he":
            W[...] = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
            b[...] = 0.0
        elif init == "glorot":
            limit = np.sqrt(6.0 / (n_in + n_out))
            W[...] = rng.uniform(-limit, limit, (n_in, n_out))
            b[...] = 0.0
        elif init == "uniform":
            W[...] = rng.uniform(-0.5, 0.5, (n_in, n_out))
            b[...] = rng.uniform(-0.5, 0.5, n_out)
        else:  # "normal"
            W[...] = rng.standard_normal((n_in, n_out))
            b[...] = rng.standard_normal(n_out)
    return flat.astype(dtype)
