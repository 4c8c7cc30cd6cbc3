"""The runs API over real loopback HTTP: runs, events (SSE and WebSocket), keys, limits,
and a 4xx naming what is wrong for every refused request, with nothing stored."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI

from agents.support import Ledger, effect_tool
from llmrelay.agents.api import create_app, create_owned_app
from llmrelay.agents.config import AgentSettings
from llmrelay.agents.service import AgentService

PROMPT = "calculate 5*3, add the result as a todo, then list my todos"


def step(n: int, tool: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"step_{n}", "tool": tool, "input": {"label": label, **extra}}


@dataclass
class Api:
    """A served app, a client session and the service behind them."""

    url: str
    http: aiohttp.ClientSession
    service: AgentService

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, **kwargs) as response:
            return response.status, await response.json()


@asynccontextmanager
async def served(app: FastAPI, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """``app`` on a free loopback port, in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan=lifespan, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the server stopped while starting"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


MakeApi = Callable[..., AbstractAsyncContextManager[Api]]


def _tools(ledger: Ledger) -> list[Any]:
    return [effect_tool(ledger), effect_tool(ledger, "effect_retry", retries=2)]


@pytest.fixture
def make_api(settings: AgentSettings, ledger: Ledger) -> MakeApi:
    """An API on its own service (one at a time: DBOS is one engine per process)."""

    @asynccontextmanager
    async def make(
        rate_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        **update: Any,
    ) -> AsyncIterator[Api]:
        custom = settings.model_copy(update=update)
        async with (
            AgentService(custom, tools=_tools(ledger), instance=f"t{uuid.uuid4().hex}") as svc,
            served(create_app(svc, rate_per_minute=rate_per_minute, clock=clock)) as url,
            aiohttp.ClientSession() as http,
        ):
            yield Api(url, http, svc)

    return make


@pytest.fixture
async def api(make_api: MakeApi) -> AsyncIterator[Api]:
    """An open API (no keys, no rate limit)."""
    async with make_api() as opened:
        yield opened


async def read_sse(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The events of a text/event-stream answer, each as ``{"id", "event", "data"}``."""
    fields: dict[str, Any] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if fields:
                yield {**fields, "data": json.loads(fields["data"])}
            fields = {}
            continue
        name, _, value = line.partition(": ")
        fields[name] = value


async def nothing_stored(api: Api) -> None:
    status, page = await api.call("GET", "/api/v1/runs")
    assert status == 200 and page == {"runs": [], "next_cursor": None}
    assert api.service.store.sizes()["agent_runs"] == 0


# -- runs ---------------------------------------------------------------------------------


async def test_a_prompt_is_planned_run_and_read_back(api: Api) -> None:
    """POST a pattern-planner prompt: 201 with the run; once finished, GET shows results."""
    status, run = await api.call("POST", "/api/v1/runs", json={"prompt": PROMPT})
    assert status == 201 and run["planner"] == "pattern" and len(run["steps"]) == 3
    await api.service.wait(run["id"])
    status, done = await api.call("GET", f"/api/v1/runs/{run['id']}")
    assert status == 200 and done["status"] == "succeeded"
    assert done["steps"][0]["result"] == {"value": 15}
    assert done["steps"][2]["result"]["items"][-1]["text"] == "15"


async def test_a_given_plan_runs(api: Api, ledger: Ledger) -> None:
    """A plan in the body is checked and run as given."""
    plan = {"steps": [step(1, "effect", "a"), step(2, "effect", "b", after="{step_1.value}")]}
    status, run = await api.call("POST", "/api/v1/runs", json={"plan": plan, "prompt": "mine"})
    assert status == 201 and run["planner"] == "given" and run["prompt"] == "mine"
    await api.service.wait(run["id"])
    _, done = await api.call("GET", f"/api/v1/runs/{run['id']}")
    assert done["status"] == "succeeded" and ledger.done == ["a", "b"]


async def test_runs_list_by_page_and_by_status(api: Api, ledger: Ledger) -> None:
    """Newest first; the cursor gives the next page; status and creation time filter."""
    ledger.fail["bad"] = 1
    ids = []
    for label in ("a", "bad", "c"):
        _, run = await api.call("POST", "/api/v1/runs", json={"plan": {"steps": [
            step(1, "effect", label)]}})  # fmt: skip
        await api.service.wait(run["id"])
        ids.append(run["id"])
    _, first = await api.call("GET", "/api/v1/runs", params={"limit": 2})
    assert [r["id"] for r in first["runs"]] == ids[::-1][:2] and first["next_cursor"]
    _, rest = await api.call("GET", "/api/v1/runs",
                             params={"limit": 2, "cursor": first["next_cursor"]})  # fmt: skip
    assert [r["id"] for r in rest["runs"]] == [ids[0]] and rest["next_cursor"] is None
    _, failed = await api.call("GET", "/api/v1/runs", params={"status": "failed"})
    assert [r["id"] for r in failed["runs"]] == [ids[1]]
    newest = first["runs"][0]["created_at"]
    _, late = await api.call("GET", "/api/v1/runs", params={"created_after": newest})
    assert [r["id"] for r in late["runs"]] == [ids[2]]
    _, early = await api.call("GET", "/api/v1/runs", params={"created_before": newest})
    assert [r["id"] for r in early["runs"]] == ids[1::-1]


async def test_bad_list_parameters_are_refused(api: Api) -> None:
    """An unknown status is a 422 naming it; a cursor we did not give out is a 400."""
    status, answer = await api.call("GET", "/api/v1/runs", params={"status": "done"})
    assert status == 422 and "query.status" in answer["error"]["message"]
    status, answer = await api.call("GET", "/api/v1/runs", params={"cursor": "!!"})
    assert status == 400 and answer["error"]["message"].startswith("cursor:")


async def test_an_unknown_run_is_a_404(api: Api) -> None:
    status, answer = await api.call("GET", "/api/v1/runs/nope")
    assert status == 404
    assert answer == {"error": {"type": "run_not_found", "message": "no run 'nope'"}}
    for action in ("restart", "cancel"):
        assert (await api.call("POST", f"/api/v1/runs/nope/{action}"))[0] == 404
    assert (await api.call("GET", "/api/v1/runs/nope/events"))[0] == 404


async def test_restart_reruns_only_the_failed_steps(api: Api, ledger: Ledger) -> None:
    """A failed run restarts; the steps that succeeded are not executed again."""
    ledger.fail["b"] = 1
    plan = {"steps": [step(1, "effect", "a"), step(2, "effect", "b", after="{step_1.value}"),
                      step(3, "effect", "c", after="{step_2.value}")]}  # fmt: skip
    _, run = await api.call("POST", "/api/v1/runs", json={"plan": plan})
    assert (await api.service.wait(run["id"]))["status"] == "failed"
    status, restarted = await api.call("POST", f"/api/v1/runs/{run['id']}/restart")
    assert status == 200 and restarted["attempt"] == 2
    await api.service.wait(run["id"])
    _, done = await api.call("GET", f"/api/v1/runs/{run['id']}")
    assert done["status"] == "succeeded"
    assert [s["executions"] for s in done["steps"]] == [1, 2, 1]
    assert ledger.started == ["a", "b", "b", "c"]


async def test_cancel_stops_a_run_and_conflicts_are_409(api: Api, ledger: Ledger) -> None:
    """Cancelling a running run stops it; restarting a running run or cancelling a
    finished one is a conflict."""
    ledger.gates["slow"] = asyncio.Event()
    plan = {"steps": [step(1, "effect", "slow"), step(2, "effect", "never", after="{step_1}")]}
    _, run = await api.call("POST", "/api/v1/runs", json={"plan": plan})
    while "slow" not in ledger.started:
        await api.service.hub.wait(run["id"], 1.0)
    status, answer = await api.call("POST", f"/api/v1/runs/{run['id']}/restart")
    assert status == 409 and answer["error"]["type"] == "run_conflict"
    status, cancelled = await api.call("POST", f"/api/v1/runs/{run['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled"
    await api.service.wait(run["id"])
    status, answer = await api.call("POST", f"/api/v1/runs/{run['id']}/cancel")
    assert status == 409 and "already cancelled" in answer["error"]["message"]
    assert "never" not in ledger.started


# -- refused requests ---------------------------------------------------------------------


def _cycle() -> dict[str, Any]:
    one = {"id": "step_1", "tool": "calculator", "input": {"expression": "1"}}
    return {"plan": {"steps": [{**one, "depends_on": ["step_2"]},
                               {**one, "id": "step_2", "depends_on": ["step_1"]}]}}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "kind", "message"),
    [
        ({"prompt": "   "}, 400, "prompt_rejected", "prompt: empty"),
        ({"prompt": "x" * 5000}, 400, "prompt_too_long", "prompt: 5000 characters, at most 4000"),
        ({}, 400, "prompt_rejected", "prompt: give a prompt or a plan"),
        ({"prompt": "paint the fence"}, 422, "planning_failed", "paint the fence"),
        ({"plan": {"steps": [{"id": "step_1"}]}}, 422, "plan_invalid",
         "steps[0]: Object missing required field `tool`"),
        ({"plan": {"steps": []}}, 422, "plan_invalid", "steps: a plan needs at least one step"),
        ({"plan": "steps"}, 422, "invalid_request", "body.plan: Input should be a valid dict"),
        ({"prompt": "x", "extra": 1}, 422, "invalid_request", "body.extra: Extra inputs"),
        ({"plan": {"steps": [{"id": "step_1", "tool": "nope"}]}}, 422, "plan_invalid",
         "steps[0].tool: unknown tool 'nope'"),
        (_cycle(), 422, "plan_invalid", "dependency cycle step_1 -> step_2 -> step_1"),
        ({"plan": {"steps": [{"id": "step_1", "tool": "calculator", "input": {"expression": 5}}]}},
         422, "plan_invalid", "steps[0].input.expression: expected a string, got integer 5"),
    ],
)  # fmt: skip
async def test_a_refused_run_names_the_problem_and_stores_nothing(
    api: Api, body: dict[str, Any], status: int, kind: str, message: str
) -> None:
    got, answer = await api.call("POST", "/api/v1/runs", json=body)
    assert (got, answer["error"]["type"]) == (status, kind)
    assert message in answer["error"]["message"]
    await nothing_stored(api)


async def test_a_plan_problem_carries_its_code_and_problems(api: Api) -> None:
    _, answer = await api.call("POST", "/api/v1/runs", json=_cycle())
    assert answer["error"]["code"] == "cycle"
    assert answer["error"]["problems"] == ["steps: dependency cycle step_1 -> step_2 -> step_1"]


async def test_a_body_that_is_not_json_is_a_400(api: Api) -> None:
    got, answer = await api.call(
        "POST", "/api/v1/runs", data=b'{"prompt": ', headers={"content-type": "application/json"}
    )
    assert got == 400 and answer["error"]["type"] == "invalid_json"
    await nothing_stored(api)


async def test_too_large_a_body_is_a_413(make_api: MakeApi) -> None:
    """Refused from the Content-Length, and when streamed without one."""
    body = json.dumps({"prompt": "calculate 1+1" + " " * 2000}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    async with make_api(max_body_bytes=1024) as api:
        got, answer = await api.call("POST", "/api/v1/runs", data=body,
                                     headers={"content-type": "application/json"})  # fmt: skip
        assert got == 413 and "larger than 1024 bytes" in answer["error"]["message"]
        got, answer = await api.call("POST", "/api/v1/runs", data=chunks(),
                                     headers={"content-type": "application/json"})  # fmt: skip
        assert got == 413 and answer["error"]["type"] == "content_too_large"
        await nothing_stored(api)


# -- events -------------------------------------------------------------------------------


async def test_sse_streams_live_and_resumes(api: Api, ledger: Ledger) -> None:
    """The stream shows each event as it happens, ends with the run, and resumes after
    Last-Event-ID (or ``after``)."""
    ledger.gates["slow"] = asyncio.Event()
    _, run = await api.call("POST", "/api/v1/runs", json={"plan": {"steps": [
        step(1, "effect", "slow")]}})  # fmt: skip
    path = f"{api.url}/api/v1/runs/{run['id']}/events"
    seen: list[dict[str, Any]] = []
    async with api.http.get(path) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for event in read_sse(response):
            seen.append(event)
            if event["event"] == "step_started":
                ledger.gates["slow"].set()  # only now can the run finish
    kinds = [(e["event"], e["data"]["data"].get("status")) for e in seen]
    assert kinds[0] == ("planned", None) and ("step_started", None) in kinds
    assert kinds[-2:] == [("step_finished", "succeeded"), ("status", "succeeded")]
    assert [int(e["id"]) for e in seen] == [e["data"]["seq"] for e in seen]
    resume_at = seen[1]["id"]
    async with api.http.get(path, headers={"Last-Event-ID": resume_at}) as response:
        resumed = [e async for e in read_sse(response)]
    assert resumed == seen[2:]
    async with api.http.get(path, params={"after": seen[-2]["id"]}) as response:
        assert [e async for e in read_sse(response)] == seen[-1:]


async def test_websocket_sends_each_event_then_closes(api: Api, ledger: Ledger) -> None:
    ledger.gates["slow"] = asyncio.Event()
    _, run = await api.call("POST", "/api/v1/runs", json={"plan": {"steps": [
        step(1, "effect", "slow")]}})  # fmt: skip
    kinds: list[str] = []
    async with api.http.ws_connect(f"{api.url}/ws/runs/{run['id']}") as ws:
        async for message in ws:
            assert message.type == aiohttp.WSMsgType.TEXT
            event = json.loads(message.data)
            kinds.append(event["kind"])
            if event["kind"] == "step_started":
                ledger.gates["slow"].set()
        assert ws.close_code == 1000
    assert kinds[0] == "planned" and kinds[-1] == "status" and "step_finished" in kinds
    async with api.http.ws_connect(f"{api.url}/ws/runs/{run['id']}?after=2") as ws:
        resumed = [json.loads(message.data)["seq"] async for message in ws]
    assert resumed == list(range(3, len(kinds) + 1))


async def test_websocket_for_an_unknown_run_closes_4404(api: Api) -> None:
    async with api.http.ws_connect(f"{api.url}/ws/runs/nope") as ws:
        message = await ws.receive()
        assert message.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4404


# -- keys, limits, headers, schema --------------------------------------------------------


async def test_keys_are_required_when_configured(make_api: MakeApi) -> None:
    """No key or an unknown key: 401 with WWW-Authenticate; /health stays open; a
    WebSocket needs the key in a header too."""
    async with make_api(api_keys=["alpha", "beta"]) as api:
        for headers in ({}, {"Authorization": "Bearer gamma"}, {"X-API-Key": "alph"}):
            async with api.http.get(api.url + "/api/v1/runs", headers=headers) as response:
                assert response.status == 401 and response.headers["www-authenticate"] == "Bearer"
                assert (await response.json())["error"]["type"] == "unauthorized"
        for headers in ({"Authorization": "Bearer alpha"}, {"X-API-Key": "beta"}):
            assert (await api.call("GET", "/api/v1/runs", headers=headers))[0] == 200
        assert (await api.call("GET", "/openapi.json"))[0] == 401
        assert await api.call("GET", "/health") == (200, {"status": "ok"})
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await api.http.ws_connect(f"{api.url}/ws/runs/nope")
        assert refused.value.status == 401
        ws_url = f"{api.url}/ws/runs/nope"
        async with api.http.ws_connect(ws_url, headers={"X-API-Key": "alpha"}) as ws:
            await ws.receive()
            assert ws.close_code == 4404


async def test_without_keys_the_api_is_open(api: Api) -> None:
    assert (await api.call("GET", "/api/v1/tools"))[0] == 200


async def test_each_key_has_its_own_rate_limit(make_api: MakeApi) -> None:
    """Past its bucket a key gets 429 with Retry-After; another key is not affected; the
    bucket refills with time (a fake clock here)."""
    now = [1000.0]
    async with make_api(api_keys=["alpha", "beta"], rate_per_minute=2, clock=lambda: now[0]) as api:
        alpha = {"X-API-Key": "alpha"}
        for _ in range(2):
            assert (await api.call("GET", "/api/v1/runs", headers=alpha))[0] == 200
        async with api.http.get(api.url + "/api/v1/runs", headers=alpha) as response:
            assert response.status == 429 and response.headers["retry-after"] == "30"
            assert (await response.json())["error"]["type"] == "rate_limited"
        assert (await api.call("GET", "/api/v1/runs", headers={"X-API-Key": "beta"}))[0] == 200
        assert (await api.call("GET", "/health"))[0] == 200
        now[0] += 30  # one token back
        assert (await api.call("GET", "/api/v1/runs", headers=alpha))[0] == 200
        assert (await api.call("GET", "/api/v1/runs", headers=alpha))[0] == 429


async def test_security_headers_on_every_answer(api: Api) -> None:
    for method, path in (("GET", "/health"), ("GET", "/api/v1/runs"), ("GET", "/nope"),
                         ("POST", "/api/v1/runs")):  # fmt: skip
        async with api.http.request(method, api.url + path, json={}) as response:
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["cache-control"] == "no-store"


async def test_openapi_describes_every_route(api: Api) -> None:
    status, schema = await api.call("GET", "/openapi.json")
    assert status == 200 and "/ws/runs/{run_id}" in schema["info"]["description"]
    routes = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert routes == {
        ("/api/v1/runs", "post"), ("/api/v1/runs", "get"), ("/api/v1/runs/{run_id}", "get"),
        ("/api/v1/runs/{run_id}/restart", "post"), ("/api/v1/runs/{run_id}/cancel", "post"),
        ("/api/v1/runs/{run_id}/events", "get"), ("/api/v1/tools", "get"), ("/health", "get"),
    }  # fmt: skip
    post = schema["paths"]["/api/v1/runs"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "RunRequest"
    )
    assert "201" in post["responses"] and "422" in post["responses"]
    assert {"Run", "RunPage", "Step", "ToolInfo", "ErrorAnswer"} <= set(
        schema["components"]["schemas"]
    )
    sse = schema["paths"]["/api/v1/runs/{run_id}/events"]["get"]["responses"]["200"]["content"]
    assert set(sse["text/event-stream"]["schema"]["properties"]) == {"seq", "kind", "data", "at"}


async def test_tools_are_listed(api: Api) -> None:
    status, tools = await api.call("GET", "/api/v1/tools")
    names = {t["name"] for t in tools}
    assert status == 200 and {"calculator", "todo_add", "effect"} <= names
    assert all("input_schema" in t and "metrics" in t for t in tools)


async def test_the_owned_app_opens_and_closes_its_service(settings: AgentSettings) -> None:
    """create_owned_app: the lifespan opens the service, runs work, and closes it once."""
    unique = settings.model_copy(update={"name": f"t{uuid.uuid4().hex[:20]}"})
    app = create_owned_app(AgentService(unique))
    async with served(app, lifespan="on") as url, aiohttp.ClientSession() as http:
        async with http.post(url + "/api/v1/runs", json={"prompt": "calculate 2+2"}) as answer:
            assert answer.status == 201
            run = await answer.json()
        service: AgentService = app.state.service
        assert (await service.wait(run["id"]))["status"] == "succeeded"
    assert not hasattr(app.state, "service")


async def test_an_unexpected_error_is_a_generic_500(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No traceback or internal detail reaches the caller; the exception is logged."""

    async def broken(run_id: str) -> dict[str, Any]:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(api.service, "get", broken)
    async with api.http.get(api.url + "/api/v1/runs/x") as response:
        assert response.status == 500 and response.headers["x-frame-options"] == "DENY"
        body = await response.text()
    assert json.loads(body) == {
        "error": {"type": "internal_error", "message": "internal server error"}
    }
    assert "secret" not in body and "Traceback" not in body
    assert "secret detail" in caplog.text
