"""Names of the model's choices and the integer codes the compiled kernels use for them.

Kernels take integer codes rather than Python functions so that one cached compilation serves
every activation and loss (jitted functions passed as arguments would defeat ``cache=True``).
The position of a name in its tuple is its code.
"""

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")
# softmax + cross-entropy, MSE, sigmoid + squared error, sigmoid + binary cross-entropy (multilabel)
HEADS = ("softmax", "identity", "sigmoid", "logistic")
OPTIMIZERS = ("sgd", "adam")
INITS = ("he", "glorot", "uniform", "normal")
ENGINES = ("numba", "numpy")
DTYPES = ("float32", "float64")

# leaky_relu(z) = z if z > 0 else LEAKY_SLOPE * z
LEAKY_SLOPE = 0.01

ACT_IDENTITY, ACT_RELU, ACT_LEAKY_RELU, ACT_SIGMOID, ACT_TANH = range(len(ACTIVATIONS))
HEAD_SOFTMAX, HEAD_IDENTITY, HEAD_SIGMOID, HEAD_LOGISTIC = range(len(HEADS))
# Heads whose targets are the float matrix Y (n, n_out); the others take class indices y (n,).
Y_HEADS = (HEAD_IDENTITY, HEAD_LOGISTIC)
OPT_SGD, OPT_ADAM = range(len(OPTIMIZERS))


def code_of(table, name, argument):
    """Return the code of ``name`` in ``table``; a ValueError suggests the closest valid name."""
    import difflib

    if isinstance(name, str) and name in table:
        return table.index(name)
    close = difflib.get_close_matches(str(name), table, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"{argument}={name!r} is not supported; choose one of {', '.join(map(repr, table))}.{hint}"
    )

# scikit-learn's activation names -> fastmlp's
SKLEARN_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
