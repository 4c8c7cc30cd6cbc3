"""``server:`` — the gateway's section of the configuration file (``llmrelay serve``).

The rest of the file configures the router exactly as for :class:`~llmrelay.SmartLLM`;
this section is validated with it, at start, and its errors name the key:

.. code-block:: yaml

    server:
      host: 0.0.0.0
      port: 8080
      workers: 2
      master_key: ${LLMRELAY_MASTER_KEY}
      keys: {store: postgres, database_url: postgresql://db/llmrelay}
      cors_origins: [https://app.example.com]
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyStoreSettings(Section):
    """``server.keys:`` — where virtual keys are kept (hashed)."""

    store: Literal["sqlite", "postgres"] = "sqlite"
    path: str = "~/.llmrelay/keys.sqlite"
    """The SQLite file, for ``store: sqlite``."""
    database_url: str | None = None
    """PostgreSQL, for ``store: postgres`` (default: the ``DATABASE_URL`` variable)."""


class ServerSettings(Section):
    """``server:`` — how ``llmrelay serve`` listens, authenticates and protects itself."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    """Processes serving the same port; with more than one, share state through Redis and
    PostgreSQL (``redis_url``, ``budget.store: redis``, ``server.keys.store: postgres``)."""
    master_key: str | None = None
    """The administrator's key (default: the ``LLMRELAY_MASTER_KEY`` variable). Without
    one, the gateway asks for no key at all: keep it on loopback."""
    keys: KeyStoreSettings = Field(default_factory=KeyStoreSettings)
    max_body_bytes: int = Field(default=8 * 2**20, gt=0)
    """Larger request bodies are refused with 413 before they are read in full."""
    request_timeout_s: float = Field(default=600.0, gt=0)
    """A request still unanswered after this long is answered 504 and its call cancelled."""
    shutdown_grace_s: float = Field(default=30.0, ge=0)
    """On SIGTERM: stop accepting, then give answers and streams in flight this long."""
    cors_origins: list[str] = Field(default_factory=list)
    """Origins browsers may call from (``*`` for any); none by default."""
    ready_cache_s: float = Field(default=10.0, ge=0)
    """``/ready`` probes each deployment at most this often."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "warning"

    def resolved_master_key(self) -> str | None:
        """``master_key``, else the ``LLMRELAY_MASTER_KEY`` variable (empty: none)."""
        return self.master_key or os.environ.get("LLMRELAY_MASTER_KEY", "").strip() or None

    @field_validator("master_key")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


__all__ = ["KeyStoreSettings", "ServerSettings"]
