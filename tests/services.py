"""Where the tests find Redis (``REDIS_URL``) and PostgreSQL (``DATABASE_URL``), else on
their standard loopback ports."""

from __future__ import annotations

import os
import socket
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    """Skip the calling test, saying how to start Redis, when none answers."""
    parsed = urllib.parse.urlparse(redis_url())
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), 1):
            return
    except OSError:
        pytest.skip(f"no Redis at {redis_url()}: start one (see README) or set REDIS_URL")


DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"


def database_url() -> str:
    return os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)


@contextmanager
def postgres_schema(prefix: str) -> Iterator[str]:
    """A database URL whose tables land in a new schema (dropped on exit), so tests running
    at once never see each other's rows; the calling test is skipped when no server
    answers."""
    import psycopg

    url = database_url()
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
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
