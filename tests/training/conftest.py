"""Fixtures of the training tests."""
from __future__ import annotations

import pytest
from twin_cases import make_twin


@pytest.fixture(scope="session")
def twin40(lc):
    """The twin on gauges with <= 40 upstream reaches, 96 hours."""
    return make_twin(lc, 40, 96)
