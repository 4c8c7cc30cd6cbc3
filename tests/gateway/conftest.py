"""Fixtures of the gateway tests: a PostgreSQL schema of the test's own."""

from __future__ import annotations

import os
import urllib.parse
import uuid
from collections.abc import Iterator

import pytest

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A ``DATABASE_URL`` whose tables land in a schema of this test's own (dropped after
    it), so tests running at once never see each other's rows; skipped when no server
    answers."""
    import psycopg

    url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    schema = f"gateway_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {url} ({exc}): start one or set DATABASE_URL")
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        options = urllib.parse.quote(f"-csearch_path={schema}")
        try:
            yield f"{url}{separator}options={options}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
