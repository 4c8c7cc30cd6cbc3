"""Video file names → what they mean, with a calibrated confidence per field.

A deterministic parse (guessit) scored by a calibrated model; names below a threshold go
to a chain of LLM model groups, many names per call, and every answer is checked against
the name. Results are cached. See ``docs/media.md``.

Names are exported lazily: ``llmrelay --help`` imports :mod:`llmrelay.media.cli` and
must not pay for guessit (about a second to build its rules) when it does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrelay.media.config import MediaSettings
    from llmrelay.media.parse import MediaInputError
    from llmrelay.media.result import FieldInfo, MediaResult
    from llmrelay.media.service import MediaParser, ParseRequest, ParseResponse, parse_batch

_EXPORTS = {
    "FieldInfo": "llmrelay.media.result",
    "MediaInputError": "llmrelay.media.parse",
    "MediaParser": "llmrelay.media.service",
    "MediaResult": "llmrelay.media.result",
    "MediaSettings": "llmrelay.media.config",
    "ParseRequest": "llmrelay.media.service",
    "ParseResponse": "llmrelay.media.service",
    "parse_batch": "llmrelay.media.service",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmrelay.media' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FieldInfo",
    "MediaInputError",
    "MediaParser",
    "MediaResult",
    "MediaSettings",
    "ParseRequest",
    "ParseResponse",
    "parse_batch",
]
