"""The reference: every operation of fastmlp in plain NumPy, written to be read.

It is the ground truth the compiled kernels are tested against, the baseline of the benchmarks,
and the ``engine="numpy"`` of :class:`fastmlp.MLP`. Row-major throughout: X is (B, n_in), a
layer's W is (n_in, n_out), b is (n_out,). Backward functions overwrite their outputs; the
mean over the batch is taken once, in the loss gradient (``dz = (...) / B``).

Per-sample weights: the heads (and everything above them) take an optional ``w``, the rows'
weights (None or an empty array: all 1). The batch loss is then the weighted mean
sum_i w_i loss_i / sum_i w_i and row i's gradient is scaled by w_i / sum_i w_i instead of 1 / B
(a batch of total weight 0 has loss 0 and gradient 0).

The package's modules: :mod:`.ops` (the operations, NumPy-style), :mod:`.twins` (one twin per
compiled kernel, with its name and arguments) and :mod:`.contract` (the engine's
``train_batches`` and friends for ``engine="numpy"``). Everything is importable from here.
"""

from .contract import *  # noqa: F403
from .ops import *  # noqa: F403
from .twins import *  # noqa: F403
