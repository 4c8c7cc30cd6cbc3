"""Fixtures of the analytics tests: a store of each kind, empty, for one test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrelay.analytics import AnalyticsSettings
from services import postgres_schema


@pytest.fixture
def postgres_settings() -> Iterator[AnalyticsSettings]:
    """Settings for a PostgreSQL schema of this test's own (dropped after it), so tests
    running at once never see each other's rows; skipped when no server answers."""
    with postgres_schema("analytics_test") as url:
        yield AnalyticsSettings(store="postgres", database_url=url, flush_s=3600.0)


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> AnalyticsSettings:
    return AnalyticsSettings(store="sqlite", path=str(tmp_path / "analytics.sqlite"),
                             flush_s=3600.0)  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest) -> AnalyticsSettings:
    """An empty store of each kind (rows are written only when a test flushes)."""
    made: AnalyticsSettings = request.getfixturevalue(f"{request.param}_settings")
    return made
