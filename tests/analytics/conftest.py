"""Fixtures of the analytics tests: a store of each kind, empty, for one test."""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrelay.analytics import AnalyticsSettings

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)


@pytest.fixture
def postgres_settings() -> Iterator[AnalyticsSettings]:
    """Settings for a PostgreSQL schema of this test's own (dropped after it), so tests
    running at once never see each other's rows; skipped when no server answers."""
    import psycopg

    url = database_url()
    schema = f"analytics_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {url} ({exc}): start one or set DATABASE_URL")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        options = urllib.parse.quote(f"-csearch_path={schema}")
        try:
            yield AnalyticsSettings(
                store="postgres",
                database_url=f"{url}{separator}options={options}",
                flush_s=3600.0,
            )
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> AnalyticsSettings:
    return AnalyticsSettings(store="sqlite", path=str(tmp_path / "analytics.sqlite"),
                             flush_s=3600.0)  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest) -> AnalyticsSettings:
    """An empty store of each kind (rows are written only when a test flushes)."""
    made: AnalyticsSettings = request.getfixturevalue(f"{request.param}_settings")
    return made
