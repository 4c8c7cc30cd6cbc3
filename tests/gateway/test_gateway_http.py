"""The gateway as an HTTP server: limits on input, headers, CORS, errors without
tracebacks, and a client that leaves in the middle of a stream."""

from __future__ import annotations

import socket
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import msgspec

from gateway.gateway_support import MASTER, running_gateway
from llmrelay.testing import SimulatorHandle

T = TypeVar("T")
AUTH = {"authorization": f"Bearer {MASTER}"}
CHAT = {"model": "default", "messages": [{"role": "user", "content": "hello"}]}


def test_a_body_over_the_limit_is_refused_413(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """A body longer than max_body_bytes gets 413 whether or not it says its length."""
    with running_gateway(simulator, tmp_path, server={"max_body_bytes": 1000}) as gw:
        big = msgspec.json.encode({**CHAT, "messages": [{"role": "user", "content": "x" * 2000}]})
        with httpx.Client(base_url=gw.url, headers=AUTH) as client:
            said = client.post("/v1/chat/completions", content=big)
            assert said.status_code == 413
            chunked = client.post("/v1/chat/completions", content=iter([big[:600], big[600:]]))
            assert chunked.status_code == 413
            assert "1000 bytes" in chunked.json()["error"]["message"]


def test_bad_json_and_bad_fields_get_400_naming_what_is_wrong(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """Malformed JSON, a wrong type, an unknown field and n > 1: 400, the field named."""
    with (
        running_gateway(simulator, tmp_path) as gw,
        httpx.Client(base_url=gw.url, headers=AUTH) as client,
    ):
        cases = {
            b"{not json": "body: not valid JSON",
            msgspec.json.encode({**CHAT, "max_tokens": "ten"}): "max_tokens:",
            msgspec.json.encode({**CHAT, "logprobs": True}): "logprobs: unrecognized",
            msgspec.json.encode({**CHAT, "n": 2}): "n: only 1",
            msgspec.json.encode({"model": "default"}): "messages",
        }
        for body, says in cases.items():
            answer = client.post("/v1/chat/completions", content=body)
            assert answer.status_code == 400, body
            assert says in answer.json()["error"]["message"], answer.text


def test_every_answer_carries_the_request_id_and_security_headers(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """Success or failure: x-request-id (the caller's, when given), nosniff, no-store,
    and no server banner; an answer says which deployment, attempts, cache and cost."""
    with running_gateway(simulator, tmp_path) as gw:
        with httpx.Client(base_url=gw.url, headers=AUTH) as client:
            ok = client.post("/v1/chat/completions", json=CHAT,
                             headers={"x-request-id": "trace-42"})  # fmt: skip
            missing = client.get("/nowhere")
        assert ok.headers["x-request-id"] == "trace-42"
        assert ok.headers["x-llmrelay-deployment"] == "openai/sim-openai"
        assert ok.headers["x-llmrelay-attempts"] == "1"
        assert ok.headers["x-llmrelay-cache"] == "miss"
        assert float(ok.headers["x-llmrelay-cost-usd"]) > 0
        assert missing.status_code == 404
        for answer in (ok, missing):
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-store"
            assert "server" not in answer.headers
            assert answer.headers["x-request-id"]


def test_cors_answers_allowed_origins_only(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """A preflight from an allowed origin is answered 204 with the asked headers; another
    origin gets no CORS header at all."""
    server = {"cors_origins": ["https://app.example"]}
    with running_gateway(simulator, tmp_path, server=server) as gw:
        with httpx.Client(base_url=gw.url) as client:
            asked = {"origin": "https://app.example", "access-control-request-method": "POST",
                     "access-control-request-headers": "authorization, content-type"}  # fmt: skip
            preflight = client.options("/v1/chat/completions", headers=asked)
            other = client.post("/v1/chat/completions", json=CHAT,
                                headers={**AUTH, "origin": "https://evil.example"})  # fmt: skip
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert preflight.headers["access-control-allow-headers"] == "authorization, content-type"
        assert other.status_code == 200
        assert "access-control-allow-origin" not in other.headers


def test_an_unexpected_failure_is_a_500_without_a_traceback(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """A bug inside a handler answers 500 with a generic message and the request id; the
    traceback stays in the log."""
    with running_gateway(simulator, tmp_path) as gw:

        def broken(*args: object, **kwargs: object) -> None:
            raise ZeroDivisionError("secret internals")

        gw.app.llm.router.quick_estimator.count_request = broken  # type: ignore[method-assign,assignment]
        with httpx.Client(base_url=gw.url, headers=AUTH) as client:
            answer = client.post("/v1/chat/completions", json=CHAT)
        assert answer.status_code == 500
        assert "secret internals" not in answer.text
        assert "Traceback" not in answer.text
        assert answer.json()["error"]["type"] == "server_error"


def test_every_deployment_failing_is_a_503_with_retry_after(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """Both deployments of the group answering 500: 503 with retry-after, never a 429."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    simulator.set_faults("sim-anthropic", {"500": 1.0})
    with (
        running_gateway(simulator, tmp_path, routing={"retries": 0}) as gw,
        httpx.Client(base_url=gw.url, headers=AUTH) as client,
    ):
        answer = client.post("/v1/chat/completions", json=CHAT)
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) >= 1
    assert "sim-anthropic" in answer.json()["error"]["message"]


def test_a_client_leaving_mid_stream_cancels_the_call_and_its_usage_is_recorded(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """The client reads the first chunks of a slow stream and disconnects: the provider
    sees the disconnect (it stops generating) and the spend ledger has the call, with
    the output generated so far estimated."""
    simulator.set_model("sim-openai", tokens_per_s=50)
    spend = tmp_path / "spend.sqlite"
    prompt = " ".join(f"word{i}" for i in range(300))
    body = msgspec.json.encode({**CHAT, "stream": True,
                                "messages": [{"role": "user", "content": prompt}]})  # fmt: skip
    with running_gateway(simulator, tmp_path,
                         spend={"ledger": "sqlite", "path": str(spend), "flush_s": 0.05}) as gw:  # fmt: skip
        host, port = gw.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as conn:
            conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                         b"authorization: Bearer " + MASTER.encode() + b"\r\n"
                         b"content-type: application/json\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip
            received = b""
            while received.count(b"data: ") < 3:
                received += conn.recv(65536)
        assert b"200 OK" in received
        refused = _wait_for(lambda: simulator.ledger()["totals"]["refused"].get("499"))
        assert refused == 1
        rows = _wait_for(lambda: _ledger_rows(spend))
    assert len(rows) == 1
    output_tokens, estimated = rows[0]
    assert estimated == 1
    assert 0 < output_tokens < 300


def _ledger_rows(path: Path) -> list[tuple[int, int]]:
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        try:
            return db.execute("SELECT output_tokens, estimated FROM spend_ledger").fetchall()
        except sqlite3.OperationalError:  # the table is not made yet
            return []


def _wait_for(probe: Callable[[], T | None]) -> T:
    """Poll ``probe`` until it returns something truthy (a safety net of 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError("timed out waiting")
