"""LiteLLM's client, pointed at the gateway as an OpenAI-compatible server, gets answers
whole and streamed.

LiteLLM is not a dependency of llmrelay: it lives in ``.bench-venv`` (``make bench``
makes it), so the client runs there, in a process of its own, and these tests are skipped
when that environment cannot import it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from gateway.gateway_support import MASTER, running_gateway
from llmrelay.gateway.server import GatewayServer
from llmrelay.testing import SimulatorHandle

BENCH_PYTHON = Path(__file__).resolve().parents[2] / ".bench-venv" / "bin" / "python"

CLIENT = """
import json, sys
import litellm

base, key, stream = sys.argv[1], sys.argv[2], sys.argv[3] == "stream"
messages = [{"role": "user", "content": "Hello LiteLLM"}]
if stream:
    chunks = list(litellm.completion(model="openai/default", api_base=base, api_key=key,
                                     messages=messages, stream=True,
                                     stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next((c.usage for c in reversed(chunks) if getattr(c, "usage", None)), None)
    print(json.dumps({"text": text, "chunks": len(chunks),
                      "completion_tokens": usage.completion_tokens if usage else None}))
else:
    response = litellm.completion(model="openai/default", api_base=base, api_key=key,
                                  messages=messages)
    print(json.dumps({"text": response.choices[0].message.content,
                      "finish_reason": response.choices[0].finish_reason,
                      "completion_tokens": response.usage.completion_tokens}))
"""


@cache
def litellm_missing() -> str | None:
    """Why LiteLLM's client cannot run here, or None when it can."""
    if not BENCH_PYTHON.exists():
        return f"{BENCH_PYTHON} does not exist (make bench creates it)"
    probe = subprocess.run(
        [str(BENCH_PYTHON), "-c", "import importlib.util as u; assert u.find_spec('litellm')"],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return f"{BENCH_PYTHON} has no litellm (make bench installs it)"
    return None


@pytest.fixture
def gateway(simulator: SimulatorHandle, tmp_path: Path) -> Iterator[GatewayServer]:
    reason = litellm_missing()
    if reason is not None:
        pytest.skip(reason)
    with running_gateway(simulator, tmp_path) as server:
        yield server


def run_client(gateway: GatewayServer, mode: str) -> dict[str, Any]:
    """What LiteLLM's client got, as the script above prints it."""
    done = subprocess.run(
        [str(BENCH_PYTHON), "-c", CLIENT, f"{gateway.url}/v1", MASTER, mode],
        capture_output=True,
        text=True,
        timeout=300,
        env={"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_litellm_completion(gateway: GatewayServer) -> None:
    """litellm.completion gets the answer, its finish reason and its usage."""
    result = run_client(gateway, "whole")
    assert result == {"text": "Echo: Hello LiteLLM", "finish_reason": "stop",
                      "completion_tokens": 6}  # fmt: skip


def test_litellm_streamed_completion(gateway: GatewayServer) -> None:
    """litellm.completion(stream=True) gets the answer in chunks, and the usage."""
    result = run_client(gateway, "stream")
    assert result["text"] == "Echo: Hello LiteLLM"
    assert result["chunks"] > 1
    assert result["completion_tokens"] == 6
