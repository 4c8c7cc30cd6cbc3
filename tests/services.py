"""Where the tests find Redis: ``REDIS_URL``, else the standard loopback port."""

from __future__ import annotations

import os
import socket
import urllib.parse

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
