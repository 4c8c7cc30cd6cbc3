"""``/openapi.json`` tells the truth: schemathesis sends each operation bodies generated from
the description (valid ones, and for operations with a body, invalid ones too) over HTTP,
and every answer is no 5xx, has a documented status and content type, and conforms to the
documented schema (streamed events included); an invalid body is refused with a 4xx.

Generation is derandomized and bounded (``MAX_EXAMPLES`` per operation), so a run is the
same every time and quick. Valid chat bodies are mostly steered to a configured model
group, streaming or not, with a small ``max_tokens``, so that they reach the router and are
answered (generated values would mostly name no group or ask more than any window holds).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.gateway_support import MASTER, running_gateway
from llmrelay.gateway.openapi import document
from llmrelay.testing import SimulatorHandle

MAX_EXAMPLES = 30
SCHEMA = schemathesis.openapi.from_dict(json.loads(document()))
Operation = APIOperation[Any, Any, Any, Any]
OPERATIONS: list[Operation] = [r.ok() for r in SCHEMA.get_all_operations() if isinstance(r, Ok)]
"""Every operation schemathesis could read (the last test checks none was unreadable)."""
CALLS = ("/v1/chat/completions", "/v1/messages")
GROUPS = ("default", "claude", "backup")
STEERED_MAX_TOKENS = 64
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]  # fmt: skip
RUNS = [
    *((operation, GenerationMode.POSITIVE) for operation in OPERATIONS),
    *((operation, GenerationMode.NEGATIVE) for operation in OPERATIONS if operation.body),
]


def _steer(drawn: tuple[Case[Any], str | None, bool]) -> Case[Any]:
    """The case with a configured model group, ``stream`` set and an output small enough
    for the models' windows (when a group is drawn)."""
    case, group, stream = drawn
    if group is not None and isinstance(case.body, dict):
        case.body.pop("max_completion_tokens", None)
        case.body.update(model=group, stream=stream, max_tokens=STEERED_MAX_TOKENS)
    return case


def cases(operation: Operation, mode: GenerationMode) -> st.SearchStrategy[Case[Any]]:
    """What schemathesis generates for ``operation``; valid chat bodies steered (see the
    module docstring). Invalid ones are left as generated: steering could make them valid."""
    generated = operation.as_strategy(generation_mode=mode)
    if operation.path not in CALLS or mode is GenerationMode.NEGATIVE:
        return generated
    groups = st.sampled_from([*GROUPS, None])
    return st.tuples(generated, groups, st.booleans()).map(_steer)


@pytest.mark.parametrize(
    ("operation", "mode"), RUNS, ids=[f"{op.label}-{mode.value}" for op, mode in RUNS]
)
def test_answers_conform_to_the_description(
    operation: Operation, mode: GenerationMode, simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """Every answer to generated requests is no 5xx and is as the description says; invalid
    bodies get a 4xx."""
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    statuses: Counter[tuple[int, bool]] = Counter()
    with running_gateway(simulator, tmp_path) as gateway:

        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases(operation, mode))
        def answer_conforms(case: Case[Any]) -> None:
            response = case.call_and_validate(
                base_url=gateway.url,
                headers={"authorization": f"Bearer {MASTER}"},
                checks=checks,
            )
            streamed = "text/event-stream" in response.headers.get("content-type", [""])[0]
            statuses[response.status_code, streamed] += 1

        answer_conforms()
    if operation.path in CALLS and mode is GenerationMode.POSITIVE:
        assert statuses[200, False] > 0, f"no whole answer among {dict(statuses)}"
        assert statuses[200, True] > 0, f"no streamed answer among {dict(statuses)}"


def test_the_description_is_served(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """GET /openapi.json answers the document the tests above check against."""
    import httpx

    with running_gateway(simulator, tmp_path) as gateway:
        served: dict[str, Any] = httpx.get(f"{gateway.url}/openapi.json", timeout=10).json()
    assert served == json.loads(document())
    assert {(m.upper(), p) for p, item in served["paths"].items() for m in item
            if m != "parameters"} == {(op.method.upper(), op.path) for op in OPERATIONS}  # fmt: skip
