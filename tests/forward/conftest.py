"""Forward tests run tiny models: one torch thread avoids contention on small matmuls."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_module(one_thread):
    """The root conftest's ``one_thread``, for every module here."""
