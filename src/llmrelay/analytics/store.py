"""Where analytics rows live: a SQLite file, or PostgreSQL shared by every replica.

Both stores hold the same three tables and answer the same SQL (written with ``?``
placeholders; booleans are integers), so every query in :mod:`llmrelay.analytics.queries`
runs unchanged on either and gives the same figures.

PostgreSQL is reached through psycopg 3 in its synchronous form, not asyncpg: every call
into a store comes from a plain thread — the sink's writer thread, the report command, a
caller's short feedback or query — where a blocking driver needs no event loop of its own,
and psycopg's COPY-free ``executemany`` (pipelined) is quick enough for batches of a few
hundred rows.

Each store serializes its calls with a lock, so one instance may be shared by threads.
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from llmrelay.analytics.records import AttemptRow, FeedbackRow, RequestRow
from llmrelay.analytics.settings import AnalyticsSettings
from llmrelay.errors import ConfigError
from llmrelay.sqlite import open_sqlite

REQUEST_COLUMNS = tuple(f for f in RequestRow.__struct_fields__ if f != "tries")
ATTEMPT_COLUMNS = AttemptRow.__struct_fields__
FEEDBACK_COLUMNS = FeedbackRow.__struct_fields__
_QUOTED = {"group": '"group"', "user": '"user"'}

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS analytics_requests (request_id TEXT PRIMARY KEY, "
    'at {real} NOT NULL, "group" TEXT, deployment TEXT, provider TEXT, model TEXT, task TEXT, '
    'tags TEXT, key TEXT, "user" TEXT, error TEXT, message TEXT, cached TEXT, latency_s {real}, '
    "deployment_latency_s {real}, ttft_s {real}, wait_s {real}, attempts {int}, "
    "fell_back {int}, input_tokens {int}, output_tokens {int}, cached_input_tokens {int}, "
    "cache_write_input_tokens {int}, reasoning_tokens {int}, cost_micros {int}, "
    "saved_micros {int}, streamed {int}, quality {real})",
    "CREATE INDEX IF NOT EXISTS analytics_requests_at ON analytics_requests (at)",
    "CREATE TABLE IF NOT EXISTS analytics_attempts (request_id TEXT NOT NULL, deployment TEXT, "
    "error TEXT, status_code {int}, latency_s {real}, wait_s {real}, sent {int})",
    "CREATE INDEX IF NOT EXISTS analytics_attempts_request ON analytics_attempts (request_id)",
    "CREATE TABLE IF NOT EXISTS analytics_feedback (request_id TEXT NOT NULL, score {real} "
    "NOT NULL, comment TEXT, at {real} NOT NULL)",
    "CREATE INDEX IF NOT EXISTS analytics_feedback_request ON analytics_feedback (request_id)",
)


def _columns(names: Sequence[str]) -> str:
    return ", ".join(_QUOTED.get(n, n) for n in names)


def _insert(table: str, names: Sequence[str], conflict: str = "") -> str:
    marks = ", ".join("?" * len(names))
    return f"INSERT INTO {table} ({_columns(names)}) VALUES ({marks}){conflict}"


_INSERT_REQUEST = _insert(
    "analytics_requests", REQUEST_COLUMNS, " ON CONFLICT (request_id) DO NOTHING"
)
_INSERT_ATTEMPT = _insert("analytics_attempts", ATTEMPT_COLUMNS)
_INSERT_FEEDBACK = _insert("analytics_feedback", FEEDBACK_COLUMNS)
_KNOWN = "SELECT 1 FROM analytics_requests WHERE request_id = ?"


def _values(struct: msgspec.Struct, names: Sequence[str]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, bool) else v for v in (getattr(struct, n) for n in names))


def _batch(rows: Sequence[RequestRow]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    requests = [_values(r, REQUEST_COLUMNS) for r in rows]
    attempts = [_values(t, ATTEMPT_COLUMNS) for r in rows for t in r.tries]
    return requests, attempts


class Store(Protocol):
    """Rows written in batches and read back with SQL."""

    name: str
    """Where it is, for messages (never with a password)."""

    def write(self, rows: Sequence[RequestRow]) -> None:
        """Write ``rows`` (and their attempts) in one transaction: all or none."""
        ...

    def add_feedback(self, row: FeedbackRow) -> bool:
        """Record feedback; ``False`` (nothing written) when no such request is stored."""
        ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query written with ``?`` placeholders."""
        ...

    def close(self) -> None: ...


class SqliteStore:
    """The tables in one SQLite file (WAL: the report reads while a router writes)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self.name = f"sqlite:{self.path}"
        schema = [s.format(real="REAL", int="INTEGER") for s in _SCHEMA]
        self._db = open_sqlite(
            self.path, key="observe.analytics.path", busy_timeout_s=10.0, schema=schema
        )
        self._lock = threading.Lock()

    def write(self, rows: Sequence[RequestRow]) -> None:
        requests, attempts = _batch(rows)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(_INSERT_REQUEST, requests)
                self._db.executemany(_INSERT_ATTEMPT, attempts)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add_feedback(self, row: FeedbackRow) -> bool:
        with self._lock:
            if self._db.execute(_KNOWN, (row.request_id,)).fetchone() is None:
                return False
            self._db.execute(_INSERT_FEEDBACK, _values(row, FEEDBACK_COLUMNS))
            return True

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class PostgresStore:
    """The tables in PostgreSQL (psycopg 3, one connection, reopened after a failure)."""

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.name = f"postgres:{redacted(url)}"
        self._timeout = max(1, round(connect_timeout_s))
        self._lock = threading.Lock()
        self._conn: Any = None
        try:
            with self._lock:
                conn = self._connection()
                with conn.transaction():
                    # Two processes creating the same tables at once would collide.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('llmrelay.analytics'))")
                    for statement in _SCHEMA:
                        conn.execute(statement.format(real="DOUBLE PRECISION", int="BIGINT"))
        except Exception as exc:
            self.close()
            raise ConfigError(
                f"observe.analytics.database_url: cannot open {redacted(url)}: {exc}"
            ) from None

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed or self._conn.broken:
            import psycopg  # the ``postgres`` extra

            self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=self._timeout)
        return self._conn

    def write(self, rows: Sequence[RequestRow]) -> None:
        requests, attempts = _batch(rows)
        with self._lock:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(_pg(_INSERT_REQUEST), requests)
                if attempts:
                    cursor.executemany(_pg(_INSERT_ATTEMPT), attempts)

    def add_feedback(self, row: FeedbackRow) -> bool:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                if conn.execute(_pg(_KNOWN), (row.request_id,)).fetchone() is None:
                    return False
                conn.execute(_pg(_INSERT_FEEDBACK), _values(row, FEEDBACK_COLUMNS))
                return True

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            rows: list[tuple[Any, ...]] = self._connection().execute(_pg(sql), params).fetchall()
            return rows

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def database_url(settings: AnalyticsSettings) -> str:
    """``database_url``, else the ``DATABASE_URL`` variable; :class:`ConfigError` if neither."""
    url = settings.database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError("observe.analytics: store: postgres needs database_url (or DATABASE_URL)")
    return url


def open_store(settings: AnalyticsSettings, *, create: bool = True) -> Store:
    """The store ``settings`` name, its tables created. ``create=False``: a SQLite file that
    does not exist is a :class:`ConfigError` instead of a new empty store."""
    if settings.store == "postgres":
        return PostgresStore(database_url(settings))
    path = Path(settings.path).expanduser()
    if not create and not path.exists():
        raise ConfigError(
            f"no analytics store at {path}: nothing was recorded there (turn on "
            "observe.analytics in the configuration, or give the file with --analytics)"
        )
    return SqliteStore(path)


def settings_for(location: str) -> AnalyticsSettings:
    """Analytics settings pointing at ``location``: a ``postgres://`` or ``postgresql://``
    URL, else a SQLite file."""
    if location.startswith(("postgres://", "postgresql://")):
        return AnalyticsSettings(store="postgres", database_url=location)
    return AnalyticsSettings(store="sqlite", path=location)


__all__ = [
    "PostgresStore",
    "SqliteStore",
    "Store",
    "database_url",
    "open_store",
    "redacted",
    "settings_for",
]
