"""The ``llmrelay`` command line.

Each command is one small :class:`Command` registered in :data:`COMMANDS`; ``main`` only
parses arguments and dispatches through that registry.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmrelay.agents import cli as agents_cli  # argparse only; run() imports the rest
from llmrelay.analytics import cli as analytics_cli  # argparse only; run() imports the rest
from llmrelay.errors import LLMRelayError
from llmrelay.gateway import cli as serve_cli  # argparse only; run() imports the rest
from llmrelay.gateway import demo as demo_cli  # argparse only; run() imports the rest
from llmrelay.gateway import keys_cli  # argparse only; run() imports the rest
from llmrelay.media import cli as media_cli  # argparse only; run() imports the rest


@dataclass(frozen=True, slots=True)
class Command:
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _simulate_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=8900,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML file of models, limits, latency and faults (default: the shipped one)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="server log level (default: %(default)s)",
    )


def _usage_text(url: str, models: Sequence[tuple[str, str]]) -> str:
    first = {api: name for name, api in reversed(models)}
    lines = [f"llmrelay simulator listening on {url}", "", "models:"]
    lines += [f"  {name:<24} {api}" for name, api in models]
    lines += ["", "Call it with curl:"]
    lines.append(
        f"  curl -s {url}/v1/chat/completions -H 'Authorization: Bearer sk-test' "
        "-H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"model": "{first.get("openai", "MODEL")}", '
        '"messages": [{"role": "user", "content": "Hello"}]}\''
    )
    lines += [
        "",
        "or with the openai SDK:",
        "  from openai import OpenAI",
        f'  client = OpenAI(base_url="{url}/v1", api_key="sk-test")',
        f'  client.chat.completions.create(model="{first.get("openai", "MODEL")}", '
        'messages=[{"role": "user", "content": "Hello"}])',
        "",
        f"Ledger of what was served: curl -s {url}/_sim/ledger",
        "",
    ]
    return "\n".join(lines)


def _simulate(args: argparse.Namespace) -> int:
    from llmrelay.simulator.app import Simulator
    from llmrelay.simulator.config import load_config
    from llmrelay.simulator.server import bind, serve

    config = load_config(args.config)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        raise LLMRelayError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{host}:{sock.getsockname()[1]}"
    print(_usage_text(url, [(m.name, m.api) for m in config.models]), flush=True)
    serve(Simulator(config), sock, log_level=args.log_level)
    return 0


COMMANDS: dict[str, Command] = {
    "serve": Command(
        help="the gateway: OpenAI- and Anthropic-compatible HTTP API in front of the router",
        description=serve_cli.DESCRIPTION,
        configure=serve_cli.configure,
        run=serve_cli.run,
    ),
    "keys": Command(
        help="virtual keys of the gateway: create, list, show, update, revoke",
        description=keys_cli.DESCRIPTION,
        configure=keys_cli.configure,
        run=keys_cli.run,
    ),
    "demo": Command(
        help="watch the router work: a burst, an outage, a long prompt, a budget, the cache",
        description=demo_cli.DESCRIPTION,
        configure=demo_cli.configure,
        run=demo_cli.run,
    ),
    "simulate": Command(
        help="serve the provider simulator (OpenAI, Anthropic, Gemini, Ollama, vLLM, llama.cpp)",
        description=(
            "Serve the OpenAI, Anthropic, Gemini and Ollama HTTP APIs (and vLLM's and "
            "llama.cpp's OpenAI-style servers, with /v1/models, /props and Ollama's /api/show "
            "reporting context sizes) on loopback for the models of a YAML config, with their "
            "context windows, rate limits enforced per minute and per second (short_window_s), "
            "latency and injected faults. Control endpoints: GET /_sim/ledger, "
            "POST /_sim/reset, GET|POST /_sim/config."
        ),
        configure=_simulate_args,
        run=_simulate,
    ),
    "media": Command(
        help="parse video file names (calibrated confidence, LLM refinement), plan renames",
        description=(
            "Parse video file names with guessit, score each field with a calibrated "
            "confidence, send the unsure ones to the LLM chain of the media: section, and "
            "plan or apply renames (never overwriting, with an undo file)."
        ),
        configure=media_cli.configure,
        run=media_cli.run,
    ),
    "agent": Command(
        help='the agents runs service: llmrelay agent "prompt", runs, show, restart, serve…',
        description=(
            "Turn a prompt into a plan of tool steps and run it durably (independent steps "
            "in parallel); list, inspect, restart, cancel and prune runs; serve the runs API. "
            '`llmrelay agent "prompt"` is `llmrelay agent run "prompt"`.'
        ),
        configure=agents_cli.configure,
        run=agents_cli.run,
    ),
    "report": Command(
        help="per model group and deployment: calls, errors, latency, cost, cache, quality",
        description=analytics_cli.DESCRIPTION,
        configure=analytics_cli.configure,
        run=analytics_cli.run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmrelay", description="llmrelay: LLM calls that do not fail."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        command.configure(sub.add_parser(name, help=command.help, description=command.description))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = agents_cli.expand_bare_prompt(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except LLMRelayError as exc:
        print(f"llmrelay {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
