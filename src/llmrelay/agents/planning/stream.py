"""Plan steps out of a planner's streamed JSON, each as soon as its object closes.

The planner answers ``{"steps": [{…}, {…}, …]}`` (the schema allows nothing else at the
top). :class:`StepStream` is fed the text as it arrives and returns every step object that
has just been completed, so a caller can show the plan taking shape; the whole answer is
still parsed and checked once it has ended, and only that plan runs.
"""

from __future__ import annotations

import json
from typing import Any

_STEP_DEPTH = 3
"""Nesting of a step object: the answer (1), its ``steps`` array (2), the step (3)."""


class StepStream:
    """A character scanner that knows strings, escapes and nesting, and nothing else."""

    def __init__(self) -> None:
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._step: list[str] | None = None
        """The characters of the step object being read, if one is open."""

    def feed(self, chunk: str) -> list[dict[str, Any]]:
        """The steps completed by ``chunk`` (objects that do not parse are left out)."""
        done: list[dict[str, Any]] = []
        for char in chunk:
            if self._step is not None:
                self._step.append(char)
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
                continue
            if char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
                if char == "{" and self._depth == _STEP_DEPTH:
                    self._step = ["{"]
            elif char in "}]":
                if char == "}" and self._depth == _STEP_DEPTH and self._step is not None:
                    step = _load("".join(self._step))
                    if step is not None:
                        done.append(step)
                    self._step = None
                self._depth -= 1
        return done


def _load(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


__all__ = ["StepStream"]
