"""An example third-party tool package: ``word_count``, registered by entry point."""

from __future__ import annotations

from typing import Any

from llmrelay.agents.tools import Tool


async def _count(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"words": len(arguments["text"].split())}


def tools() -> list[Tool]:
    """What the ``llmrelay.agents.tools`` entry point returns."""
    return [
        Tool(
            name="word_count",
            version="2.1.0",
            description="Count the words of a text.",
            input_schema={
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
            output_schema={
                "type": "object",
                "properties": {"words": {"type": "integer"}},
                "required": ["words"],
            },
            run=_count,
        )
    ]
