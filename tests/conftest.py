"""Fixtures for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import forget_connections


@pytest.fixture(autouse=True)
def _no_stale_connections() -> Iterator[None]:
    """No test is handed a connection an earlier test left behind (``forget_connections``)."""
    yield
    forget_connections()
