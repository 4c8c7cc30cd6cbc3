"""A gateway in front of the test simulator, for the gateway's tests.

``running_gateway(simulator, tmp_path, ...)`` starts :class:`GatewayServer` (real HTTP on
loopback, one worker in a background thread) with model groups over the simulator's
models and its key store in ``tmp_path``; ``MASTER`` is its master key.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from llmrelay.config import parse_settings
from llmrelay.gateway.server import GatewayServer
from llmrelay.gateway.settings import ServerSettings
from llmrelay.testing import SimulatorHandle

MASTER = "sk-master-test"
PRICES = {
    f"{api}/{model}": {"price": {"input": 1.0, "output": 2.0}, "context_window": 16000,
                       "max_output_tokens": 4096}
    for api, model in (("openai", "sim-openai"), ("anthropic", "sim-anthropic"))
}  # fmt: skip
"""Dollars per million tokens, so calls cost something and budgets can run out."""
API_KEY = "sk-sim"


def deployment(simulator: SimulatorHandle, model: str, api: str, **extra: Any) -> dict[str, Any]:
    base = simulator.openai_base_url if api == "openai" else simulator.url
    return {"provider": api, "model": model, "api_key": API_KEY, "base_url": base, **extra}


def config(simulator: SimulatorHandle, **sections: Any) -> dict[str, Any]:
    """Groups ``default`` (openai, then anthropic), ``claude`` (anthropic) and ``backup``
    (openai only), priced (:data:`PRICES`), plus ``sections`` laid over the top level."""
    openai = deployment(simulator, "sim-openai", "openai")
    anthropic = deployment(simulator, "sim-anthropic", "anthropic")
    return {
        "catalog": PRICES,
        "models": {
            "default": {"primary": [openai], "fallbacks": [anthropic]},
            "claude": {"primary": [anthropic]},
            "backup": {"primary": [openai]},
        },
        **sections,
    }


@contextmanager
def running_gateway(
    simulator: SimulatorHandle,
    tmp_path: Path,
    *,
    master_key: str | None = MASTER,
    server: dict[str, Any] | None = None,
    **sections: Any,
) -> Iterator[GatewayServer]:
    """A started gateway (see the module docstring); stopped on exit."""
    raw = config(simulator, **sections)
    raw["server"] = {"master_key": master_key, "keys": {"path": str(tmp_path / "keys.sqlite")},
                     **(server or {})}  # fmt: skip
    settings = parse_settings(raw, "test", sections={"server": ServerSettings})
    with GatewayServer(settings, settings.server) as gateway:
        yield gateway


def new_key(url: str, **spec: Any) -> dict[str, Any]:
    """A virtual key made through the admin API of the gateway at ``url``: its public
    fields and its ``secret``."""
    answer = httpx.post(f"{url}/admin/keys", json=spec, timeout=10,
                        headers={"authorization": f"Bearer {MASTER}"})  # fmt: skip
    assert answer.status_code == 201, answer.text
    return answer.json()  # type: ignore[no-any-return]
