"""Every compiled kernel has a NumPy twin of the same name and arguments in fastmlp.reference.

The kernels are the public compiled functions of fastmlp.engine.kernels, .optimizer,
.lowlevel.tiles, .lowlevel.dots and .lowlevel.sparse (the schemes' loops in .parts, .units,
.rows and .infer are tested whole, against the reference's train_batches, in test_engine.py).
The comparisons of values are in test_kernels.py, test_tiles.py, test_dots.py, test_sparse.py
and test_properties.py; this test makes sure none is missing.
"""

import inspect

import pytest
from numba.core.dispatcher import Dispatcher

from fastmlp import engine, reference
from fastmlp.engine import kernels, optimizer
from fastmlp.engine.lowlevel import dots, sparse, tiles


def compiled_kernels():
    found = []
    for module in (kernels, optimizer, tiles, dots, sparse):
        for name, f in vars(module).items():
            if (isinstance(f, Dispatcher) and not name.startswith("_")
                    and f.py_func.__module__ == module.__name__):
                found.append((module.__name__, name, f))
    return found


KERNELS = compiled_kernels()


def test_the_walk_finds_the_kernels():
    names = {name for _, name, _ in KERNELS}
    assert {"dense_forward", "head_backward", "optimizer_update", "update_block",
            "matmul_rows", "rank_update", "dot_rows_epilogue", "dot_rank_update",
            "sparse_rows_epilogue", "sparse_column_sums"} <= names
    assert len(KERNELS) >= 25


@pytest.mark.parametrize("module,name,kernel", KERNELS, ids=[n for _, n, _ in KERNELS])
def test_kernel_has_a_reference_twin_with_its_arguments(module, name, kernel):
    twin = getattr(reference, name, None)
    assert callable(twin), f"{module}.{name} has no twin reference.{name}"
    want = list(inspect.signature(kernel.py_func).parameters)
    got = list(inspect.signature(twin).parameters)
    assert got == want, f"reference.{name}{tuple(got)} vs {module}.{name}{tuple(want)}"


@pytest.mark.parametrize("name", ["train_batches"])
def test_engine_contract_twin(name):
    want = list(inspect.signature(getattr(engine, name)).parameters)
    assert list(inspect.signature(getattr(reference, name)).parameters) == want
