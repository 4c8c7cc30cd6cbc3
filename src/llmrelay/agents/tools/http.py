"""The ``http_get`` tool: a GET to a host on the configured allow-list, body capped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from llmrelay.agents.errors import ToolFailed
from llmrelay.agents.tools.registry import Tool

MAX_BODY = 65_536


def allowed(url: str, allow: Iterable[str]) -> bool:
    """Whether ``url`` is http(s) to a host (or ``host:port``) of ``allow``."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        return False
    host = split.hostname.lower()
    with_port = f"{host}:{split.port}" if split.port else host
    return any(entry.lower() in (host, with_port) for entry in allow)


def http_get_tool(allow: Iterable[str], *, max_body: int = MAX_BODY) -> Tool:
    hosts = tuple(allow)

    async def get(arguments: dict[str, Any]) -> dict[str, Any]:
        url = arguments["url"]
        if not allowed(url, hosts):
            shown = ", ".join(hosts) or "none"
            raise ToolFailed(f"http_get: {url!r} is not on the allow-list (allowed: {shown})")
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, allow_redirects=False) as response,
        ):
            body = await response.content.read(max_body)
            return {
                "status": response.status,
                "content_type": response.headers.get("content-type", ""),
                "body": body.decode("utf-8", "replace"),
            }

    return Tool(
        name="http_get",
        version="1.0.0",
        description="GET a URL on the allow-list; the status, content type and body text.",
        input_schema={
            "type": "object",
            "properties": {"url": {"type": "string", "pattern": "^https?://"}},
            "required": ["url"],
            "additionalProperties": False,
        },
        output_schema={
            "type": "object",
            "properties": {
                "status": {"type": "integer"},
                "content_type": {"type": "string"},
                "body": {"type": "string"},
            },
            "required": ["status", "body"],
        },
        run=get,
        timeout_s=10.0,
        idempotent=True,
        retries=2,
    )


__all__ = ["allowed", "http_get_tool"]
