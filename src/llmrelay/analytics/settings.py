"""``observe.analytics:`` settings."""

from __future__ import annotations

from typing import Literal

import msgspec


class AnalyticsSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.analytics:`` — per-request figures kept for analysis and ``llmrelay report``."""

    store: Literal["sqlite", "postgres"] = "sqlite"
    path: str = "~/.llmrelay/analytics.sqlite"
    """The SQLite file, for ``store: sqlite``."""
    database_url: str | None = None
    """PostgreSQL, for ``store: postgres`` (default: the ``DATABASE_URL`` variable)."""
    task_key: str = "task"
    """The request metadata key that names a request's task (``metadata={"task": …}``)."""
    evaluator: str | None = None
    """``package.module:function`` scoring each answer: ``f(request, response)`` returns a
    quality in [0, 1], or ``None`` to leave it unscored."""
    flush_s: float = 0.5
    """Rows are written in batches at least this often."""

    def __post_init__(self) -> None:
        if not self.flush_s > 0:
            raise ValueError(f"flush_s must be > 0, got {self.flush_s}")
