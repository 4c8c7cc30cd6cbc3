"""Fixtures of the gateway tests: a PostgreSQL schema of the test's own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services import postgres_schema


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A ``DATABASE_URL`` whose tables land in a schema of this test's own (dropped after
    it); skipped when no server answers."""
    with postgres_schema("gateway_test") as url:
        yield url
