"""What several test files share: the ``engine`` fixture."""

import os

import pytest

# Tests compare engines, thread counts and runs bit for bit: every compiled call compiles in the
# test process when its kernel is not cached yet (CI starts with an empty cache), never running
# the NumPy reference in its place (see fastmlp.engine.background; its tests set their own mode).
os.environ["FASTMLP_COMPILE"] = "wait"

ENGINES = ["numpy", "numba"]


@pytest.fixture(params=ENGINES)
def engine(request):
    """A test that takes ``engine`` runs once with each engine."""
    return request.param
