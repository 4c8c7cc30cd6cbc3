"""Two ``llmrelay serve`` processes sharing Redis and PostgreSQL behave as one gateway:
one provider limit, one key budget, one set of keys."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.gateway_support import MASTER, PRICES, deployment
from llmrelay.testing import SimulatorHandle, make_config, start_simulator_process
from services import redis_url, require_redis

AUTH = {"authorization": f"Bearer {MASTER}"}


@contextmanager
def serving(config: Path) -> Iterator[str]:
    """``llmrelay serve --config`` in a child process; its base URL once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "llmrelay.cli", "serve", "--config", str(config), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = None
        for line in process.stdout:
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "the gateway did not start"
        with httpx.Client(base_url=url) as client:
            for _ in range(500):  # start-up builds the router: wait until it answers
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                process.poll()
                assert process.returncode is None, "the gateway exited"
                time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture
def simulator() -> Iterator[SimulatorHandle]:
    """A simulator in a process of its own: the times it stamps arrivals with are not
    delayed by this process's client threads."""
    with start_simulator_process(make_config()) as handle:
        yield handle


@pytest.fixture
def pair(simulator: SimulatorHandle, postgres_url: str, tmp_path: Path) -> Iterator[list[str]]:
    """Two gateways over one simulator deployment limited to 300 requests a minute."""
    require_redis()
    name = f"sim-{secrets.token_hex(4)}"  # its own limiter state in the shared Redis
    simulator.set_limits("sim-openai", rpm=300)
    config: dict[str, Any] = {
        "catalog": PRICES,
        "redis_url": redis_url(),
        "models": {"default": {"primary": [deployment(simulator, "sim-openai", "openai",
                                                      name=name, rpm=300)]}},
        "budget": {"store": "redis"},
        "spend": {"ledger": "sqlite", "path": str(tmp_path / "spend.sqlite"), "flush_s": 0.05},
        "server": {"master_key": MASTER, "keys": {"store": "postgres",
                                                  "database_url": postgres_url}},
    }  # fmt: skip
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with ExitStack() as stack:
        yield [stack.enter_context(serving(path)) for _ in range(2)]


def _call(url: str, secret: str, body: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as client:
        return client.post("/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {secret}"})  # fmt: skip


CHAT = {"model": "default", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


def test_two_gateways_share_the_provider_limit(pair: list[str], simulator: SimulatorHandle) -> None:
    """Eight callers, four on each gateway, 48 calls against a provider allowing 5 a
    second: every call is answered and the provider never answers 429."""

    def caller(index: int) -> list[int]:
        with httpx.Client(base_url=pair[index % 2], timeout=60, headers=AUTH) as client:
            return [client.post("/v1/chat/completions", json=CHAT).status_code for _ in range(6)]

    with ThreadPoolExecutor(8) as pool:
        statuses = [status for answers in pool.map(caller, range(8)) for status in answers]
    assert statuses == [200] * 48
    served = simulator.ledger()["totals"]
    assert served["requests"] == 48
    assert served["refused"].get("429", 0) == 0


def test_two_gateways_share_a_key_budget_and_a_revocation(pair: list[str]) -> None:
    """A key's budget is spent through both gateways and never passed; a key revoked on
    one gateway is refused by the other at its next request."""
    with httpx.Client(base_url=pair[0]) as admin:
        key = admin.post("/admin/keys", headers=AUTH,
                         json={"name": "shared", "budgets": [{"usd": 0.0006}]}).json()  # fmt: skip
        other = admin.post("/admin/keys", headers=AUTH, json={"name": "other"}).json()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: _call(pair[i % 2], key["secret"], CHAT), range(40)))
    statuses = [a.status_code for a in answers]
    assert set(statuses) == {200, 429}
    spent = sum(float(a.headers["x-llmrelay-cost-usd"]) for a in answers if a.status_code == 200)
    assert spent <= 0.0006
    refused = next(a for a in answers if a.status_code == 429)
    assert f"key:{key['id']}/day" in refused.json()["error"]["message"]

    assert _call(pair[1], other["secret"], CHAT).status_code == 200
    with httpx.Client(base_url=pair[0]) as admin:
        assert admin.delete(f"/admin/keys/{other['id']}", headers=AUTH).status_code == 200
    assert _call(pair[1], other["secret"], CHAT).status_code == 401
