"""Opening the SQLite files llmrelay keeps state in (budgets, ledger, caches)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from llmrelay.errors import ConfigError


def open_sqlite(
    path: Path | str,
    *,
    key: str,
    schema: Sequence[str],
    busy_timeout_s: float = 5.0,
    pragmas: Sequence[str] = (),
) -> sqlite3.Connection:
    """``path`` (its directory created) in autocommit mode with WAL, usable from any thread,
    with ``pragmas`` and the ``schema`` statements run; a :class:`ConfigError` naming the
    config ``key`` when it cannot be opened. ``busy_timeout_s``: how long a write waits
    for another process's lock."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        for statement in ("PRAGMA journal_mode=WAL", *pragmas, *schema):
            db.execute(statement)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"{key}: cannot open {path}: {exc}") from None
    return db


__all__ = ["open_sqlite"]
