"""The states of a run, defined once (light: the CLI's ``--help`` reads them)."""

from __future__ import annotations

from typing import Literal, get_args

RunState = Literal["queued", "running", "succeeded", "failed", "cancelled", "outcome_unknown"]
RUN_STATES: tuple[RunState, ...] = get_args(RunState)
FINISHED: tuple[RunState, ...] = ("succeeded", "failed", "cancelled", "outcome_unknown")
"""A run in one of these has ended; it changes again only when restarted."""
RESTARTABLE: tuple[RunState, ...] = ("failed", "cancelled", "outcome_unknown")

__all__ = ["FINISHED", "RESTARTABLE", "RUN_STATES", "RunState"]
