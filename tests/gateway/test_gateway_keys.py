"""Virtual keys at the gateway: who may call, which groups, how fast, how much."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from gateway.gateway_support import MASTER, new_key, running_gateway
from llmrelay.testing import SimulatorHandle

CHAT = {"model": "default", "messages": [{"role": "user", "content": "hello"}]}
MESSAGE = {"model": "claude", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}


def _admin(client: httpx.Client, **spec: Any) -> dict[str, Any]:
    return new_key(str(client.base_url).rstrip("/"), **spec)


def _chat(client: httpx.Client, secret: str, body: dict[str, Any] = CHAT) -> httpx.Response:
    headers = {"authorization": f"Bearer {secret}"} if secret else {}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def test_unknown_revoked_and_expired_keys_get_401_in_each_apis_format(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """No key, a wrong key, a revoked key and an expired key: 401, OpenAI's error shape on
    its path and Anthropic's on /v1/messages."""
    with running_gateway(simulator, tmp_path) as gw, httpx.Client(base_url=gw.url) as client:
        revoked = _admin(client, name="gone")
        expired = _admin(client, name="old", expires_at=time.time() - 1)
        client.delete(f"/admin/keys/{revoked['id']}", headers={"authorization": f"Bearer {MASTER}"})
        for secret, says in (("", "no API key"), ("sk-relay-wrong", "invalid API key"),
                             (revoked["secret"], "revoked"), (expired["secret"], "expired")):  # fmt: skip
            openai = _chat(client, secret)
            assert openai.status_code == 401
            assert openai.json()["error"]["code"] == "invalid_api_key"
            assert says in openai.json()["error"]["message"]
            headers = {"x-api-key": secret} if secret else {}
            anthropic = client.post("/v1/messages", json=MESSAGE, headers=headers)
            assert anthropic.status_code == 401
            assert anthropic.json()["type"] == "error"
            assert anthropic.json()["error"]["type"] == "authentication_error"


def test_a_key_reaches_only_its_groups(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """A key limited to ``claude`` is answered there, refused 403 elsewhere, and lists only
    that group in /v1/models."""
    with running_gateway(simulator, tmp_path) as gw, httpx.Client(base_url=gw.url) as client:
        key = _admin(client, groups=["claude"])
        auth = {"authorization": f"Bearer {key['secret']}"}
        assert _chat(client, key["secret"], {**CHAT, "model": "claude"}).status_code == 200
        refused = _chat(client, key["secret"])
        assert refused.status_code == 403
        assert "'default'" in refused.json()["error"]["message"]
        models = client.get("/v1/models", headers=auth).json()
        assert [m["id"] for m in models["data"]] == ["claude"]


def test_over_a_keys_rpm_the_caller_gets_429_with_retry_after(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """rpm 2: the third call in the minute is refused 429 with retry-after, and never
    reaches a provider; another key is not affected."""
    with running_gateway(simulator, tmp_path) as gw, httpx.Client(base_url=gw.url) as client:
        slow, other = _admin(client, rpm=2), _admin(client)
        assert [_chat(client, slow["secret"]).status_code for _ in range(2)] == [200, 200]
        refused = _chat(client, slow["secret"])
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(refused.headers["retry-after"]) >= 1
        assert _chat(client, other["secret"]).status_code == 200
        assert simulator.ledger()["totals"]["requests"] == 3


def test_over_a_keys_budget_the_error_names_the_budget_and_nothing_overshoots(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """A key with a budget smaller than one call's worst case is refused before anything
    is sent: OpenAI's 429 insufficient_quota and Anthropic's 400, both naming the budget."""
    with running_gateway(simulator, tmp_path) as gw, httpx.Client(base_url=gw.url) as client:
        key = _admin(client, name="tiny", budgets=[{"usd": 0.000001, "period": "day"}])
        refused = _chat(client, key["secret"], {**CHAT, "max_tokens": 1000})
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "insufficient_quota"
        assert f"key:{key['id']}/day" in refused.json()["error"]["message"]
        assert "(key 'tiny')" in refused.json()["error"]["message"]
        assert refused.headers["x-should-retry"] == "false"
        anthropic = client.post("/v1/messages", json={**MESSAGE, "max_tokens": 1000},
                                headers={"x-api-key": key["secret"]})  # fmt: skip
        assert anthropic.status_code == 400
        assert f"key:{key['id']}/day" in anthropic.json()["error"]["message"]
        assert simulator.ledger()["totals"]["requests"] == 0


def test_a_revoked_key_is_refused_on_the_next_request(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """A key answered once is cached; revoking it (admin API) refuses the very next call."""
    with running_gateway(simulator, tmp_path) as gw, httpx.Client(base_url=gw.url) as client:
        key = _admin(client)
        assert _chat(client, key["secret"]).status_code == 200
        client.delete(f"/admin/keys/{key['id']}", headers={"authorization": f"Bearer {MASTER}"})
        assert _chat(client, key["secret"]).status_code == 401


def test_only_admins_use_the_admin_api_and_metrics(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """A plain key gets 403 from /admin/keys and /metrics; an admin key gets through."""
    with running_gateway(simulator, tmp_path) as gw, httpx.Client(base_url=gw.url) as client:
        plain, admin = _admin(client), _admin(client, admin=True)
        for path in ("/admin/keys", "/metrics"):
            assert client.get(path, headers={"authorization": f"Bearer {plain['secret']}"}
                              ).status_code == 403  # fmt: skip
            assert client.get(path, headers={"authorization": f"Bearer {admin['secret']}"}
                              ).status_code == 200  # fmt: skip
        listed = client.get("/admin/keys", headers={"authorization": f"Bearer {MASTER}"}).json()
        assert {k["id"] for k in listed["data"]} == {plain["id"], admin["id"]}
        assert all("secret" not in k and "hash" not in k for k in listed["data"])
