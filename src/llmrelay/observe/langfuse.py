"""Langfuse generations from the router's events (extra ``langfuse``)."""

from __future__ import annotations

import msgspec


class LangfuseSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.langfuse:`` — a Langfuse generation per call."""

    public_key: str | None = None
    """Default: the ``LANGFUSE_PUBLIC_KEY`` variable."""
    secret_key: str | None = None
    """Default: the ``LANGFUSE_SECRET_KEY`` variable."""
    host: str | None = None
    """Default: the ``LANGFUSE_HOST`` variable, else Langfuse Cloud."""
    record_content: bool = True
    """Send prompts and answers (Langfuse shows them; turn off to send only figures)."""
