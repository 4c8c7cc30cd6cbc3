"""``llmrelay serve``: the gateway from a config file, from the environment, or offline.

Which router it serves, in order: ``--config FILE`` (or ``LLMRELAY_CONFIG``); else the
providers whose keys are in the environment (``OPENAI_API_KEY``…, as
:meth:`SmartLLM.for_tier`); else — nothing to call — the built-in simulator, started in
this process, behind model groups named like real models' tiers. The banner says which,
and how to call the gateway.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

DESCRIPTION = (
    "Serve the OpenAI (/v1/chat/completions) and Anthropic (/v1/messages) APIs in front of "
    "the router: any SDK or language points its base URL here and gets rate-limit "
    "scheduling, fallbacks, budgets, caching and metrics. Virtual keys (llmrelay keys) "
    "limit what each caller may use and spend. Without --config or provider keys in the "
    "environment it serves the built-in simulator, offline."
)

SIMULATED_GROUPS: dict[str, list[str]] = {
    "default": ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"],
    "smart": ["claude-sonnet-4-5", "gpt-4o"],
    "long": ["gemini-2.5-pro", "gpt-4.1"],
}
"""The simulated router: groups of the simulator's models, primary first."""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=os.environ.get("LLMRELAY_CONFIG"),
                        help="router config YAML with a server: section (default: "
                             "$LLMRELAY_CONFIG; else providers from the environment; else "
                             "the built-in simulator)")  # fmt: skip
    parser.add_argument("--host", help="address to listen on (default: server.host, 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default: server.port, 8080; 0: any free)")
    parser.add_argument("--workers", type=int, help="processes sharing the port (default: "
                        "server.workers, 1; more need redis_url)")  # fmt: skip
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="serve the built-in simulator even when provider keys are set",
    )
    parser.add_argument("--simulator-port", type=int, default=0, metavar="PORT",
                        help="where the built-in simulator listens, when it is used "
                             "(default: any free port)")  # fmt: skip
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                        help="log level (default: server.log_level, warning)")  # fmt: skip


def _simulated(url: str) -> dict[str, Any]:
    """The demo's world (:mod:`llmrelay.gateway.demo`: a primary with tight limits and a
    small window, the exact cache on) behind :data:`SIMULATED_GROUPS`, with a spend ledger."""
    from llmrelay.gateway.demo import router_config

    return {**router_config(url, SIMULATED_GROUPS), "spend": {"ledger": "sqlite"}}


def run(args: argparse.Namespace) -> int:
    from llmrelay.builder import tier_settings
    from llmrelay.config import load_settings, parse_settings
    from llmrelay.errors import ConfigError
    from llmrelay.gateway.server import serve
    from llmrelay.gateway.settings import ServerSettings

    sections = {"server": ServerSettings}
    simulator = None
    if args.config:
        settings = load_settings(args.config, sections=sections)
        source, mode = args.config, f"config {args.config}"
    else:
        try:
            if args.simulate:
                raise ConfigError("asked to simulate")
            settings, source, mode = (
                tier_settings("tier1"),
                "environment",
                "providers from the environment",
            )
        except ConfigError:
            from llmrelay.gateway.demo import simulator_config
            from llmrelay.simulator.server import SimulatorServer

            simulator = SimulatorServer(simulator_config(), port=args.simulator_port).__enter__()
            settings = parse_settings(_simulated(simulator.url), "simulator", sections=sections)
            source, mode = (
                "simulator",
                f"the built-in simulator at {simulator.url} (no provider key set)",
            )
    server: ServerSettings = settings.server or ServerSettings()
    overrides = {k: v for k in ("host", "port", "workers", "log_level")
                 if (v := getattr(args, k)) is not None}  # fmt: skip
    if overrides:
        server = ServerSettings.model_validate({**server.model_dump(), **overrides})
    try:
        serve(
            settings,
            server,
            source=source,
            on_listening=lambda url: print(banner(url, mode, settings, server), flush=True),
        )
    finally:
        if simulator is not None:
            simulator.__exit__(None, None, None)
    return 0


def banner(url: str, mode: str, settings: Any, server: Any) -> str:
    """What the gateway serves and how to call it, ready to paste."""
    group = next(iter(settings.models))
    secured = server.resolved_master_key() is not None
    key = "$LLMRELAY_MASTER_KEY" if secured else "any-key"
    hello = '[{"role": "user", "content": "Hello"}]'
    auth = (
        "master key and virtual keys (llmrelay keys create)"
        if secured
        else "none (no master key set: anyone who can reach this port may call it)"
    )
    lines = [
        f"llmrelay gateway listening on {url}  ({server.workers} worker(s))",
        f"routing to: {mode}",
        f"model groups: {', '.join(settings.models)}",
        f"auth: {auth}",
        "",
        f"  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer {key}' \\",
        "       -H 'Content-Type: application/json' \\",
        f'       -d \'{{"model": "{group}", "messages": {hello}}}\'',
        "",
        f'  from openai import OpenAI; client = OpenAI(base_url="{url}/v1", api_key="{key}")',
        f'  client.chat.completions.create(model="{group}", messages={hello})',
        "",
        f'  from anthropic import Anthropic; client = Anthropic(base_url="{url}", api_key="{key}")',
        f'  client.messages.create(model="{group}", max_tokens=100, messages={hello})',
        "",
        f"metrics: {url}/metrics   readiness: {url}/ready   API: {url}/openapi.json",
    ]  # fmt: skip
    if "simulator" in mode:
        lines += [
            "",
            "To call real providers: set OPENAI_API_KEY, ANTHROPIC_API_KEY or GEMINI_API_KEY",
            "and restart, or pass --config FILE (README: Gateway).",
        ]
    return "\n".join(lines)


__all__ = ["DESCRIPTION", "banner", "configure", "run"]
