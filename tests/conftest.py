"""What several test files share: the ``engine`` fixture."""

import pytest

ENGINES = ["numpy", "numba"]


@pytest.fixture(params=ENGINES)
def engine(request):
    """A test that takes ``engine`` runs once with each engine."""
    return request.param
