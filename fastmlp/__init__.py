"""fastmlp: multi-layer perceptrons trained on the CPU by Numba-compiled kernels.

>>> from fastmlp import MLP
>>> model = MLP(layers=[64, 32, 10])              # doctest: +SKIP
>>> history = model.fit(X, y, epochs=10)          # doctest: +SKIP
>>> model.predict(X_new)                          # doctest: +SKIP
"""

from ._version import __version__
from .io import ModelFileError
from .model import MLP, NotFittedError, TrainingDiverged
from .schedules import Constant, Cosine, InverseScaling, Piecewise

__all__ = ["MLP", "ModelFileError", "NotFittedError", "TrainingDiverged", "Constant", "Cosine",
           "InverseScaling", "Piecewise", "__version__"]
