"""Callables named in configuration as ``package.module:name``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def import_callable(
    path: str, *, shape: str = "ClassName", noun: str = "class or factory named"
) -> Callable[..., Any]:
    """The callable at ``package.module:name``; ``ValueError`` saying what failed
    (``shape`` and ``noun`` say what was expected)."""
    module_name, _, attribute = path.strip().partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'package.module:{shape}', got {path!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    found = getattr(module, attribute, None)
    if not callable(found):
        raise ValueError(f"{module_name!r} has no {noun} {attribute!r}")
    named: Callable[..., Any] = found
    return named


__all__ = ["import_callable"]
