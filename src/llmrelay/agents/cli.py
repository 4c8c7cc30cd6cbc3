"""``llmrelay agent run | runs | show | restart | cancel | prune | tools | serve``.

``configure`` and ``run`` are what :mod:`llmrelay.cli` registers; everything heavy (the
service, the durable engine, the facade, uvicorn) is imported inside ``run`` so
``llmrelay --help`` stays fast. Each command opens one :class:`AgentService` and closes
it once; only the commands that execute or cancel runs start the durable engine (starting
it resumes the runs an earlier process left unfinished).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrelay.agents.states import RUN_STATES

if TYPE_CHECKING:
    from llmrelay.agents.service import AgentService

SUBCOMMANDS = ("run", "runs", "show", "restart", "cancel", "prune", "tools", "serve")


def expand_bare_prompt(argv: Sequence[str]) -> list[str]:
    """``agent "some prompt"`` → ``agent run "some prompt"``: what :mod:`llmrelay.cli` may
    call on its argv before parsing (argparse sub-commands cannot take a bare prompt)."""
    args = list(argv)
    if (
        len(args) >= 2
        and args[0] == "agent"
        and args[1] not in SUBCOMMANDS
        and not args[1].startswith("-")
    ):
        args.insert(1, "run")
    return args


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get("LLMRELAY_CONFIG"),
        help="llmrelay.yaml with an agents: section, and models: for the LLM planner "
        "(default: $LLMRELAY_CONFIG; none: default settings, the pattern planner only)",
    )
    common.add_argument(
        "--data-dir", metavar="DIR", default=None, help="where runs are kept (overrides data_dir)"
    )
    return common


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``agent`` command's sub-commands and options."""
    sub = parser.add_subparsers(dest="agent_command", metavar="SUBCOMMAND", required=True)
    common = _common()

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description, parents=[common])

    run_ = add(
        "run",
        "plan a prompt and run it, showing each step as it happens",
        "Plan PROMPT (or take --plan FILE), run it here and print each step as it "
        "starts and ends, then the final status. Exit status 0 when it succeeded.",
    )
    run_.add_argument("prompt", nargs="?", metavar="PROMPT", help="what to do, in words")
    run_.add_argument("--plan", metavar="FILE", help='a plan as JSON: {"steps": [...]}')
    runs = add(
        "runs", "list runs, newest first", "List runs, newest first, with their status and prompt."
    )
    runs.add_argument("--status", choices=RUN_STATES, help="only runs in this state")
    runs.add_argument("--limit", type=int, default=20, help="how many (default: %(default)s)")
    runs.add_argument("--cursor", help="the next page (printed after a full page)")
    runs.add_argument("--json", action="store_true", help="one JSON document")
    show = add(
        "show",
        "show one run: its plan, steps and events",
        "Show one run with its steps (status, result or error) and its events.",
    )
    show.add_argument("run_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="one JSON document")
    restart = add(
        "restart",
        "run again the steps of a finished run that have not succeeded",
        "Restart a failed or cancelled run: the steps that succeeded are kept, the "
        "others run again here, shown as they happen.",
    )
    restart.add_argument("run_id", metavar="ID")
    restart.add_argument(
        "--rerun-unknown", action="store_true", help="call again the steps whose outcome is unknown"
    )
    cancel = add("cancel", "cancel a run that has not finished", "Cancel a queued or running run.")
    cancel.add_argument("run_id", metavar="ID")
    prune = add(
        "prune",
        "delete old finished runs; print what was deleted and what is left",
        "Delete the runs finished more than --older-than-days ago (default: "
        "agents.retention_days) with their steps and events.",
    )
    prune.add_argument("--older-than-days", type=float, default=None, metavar="N")
    tools = add(
        "tools",
        "list the tools a plan may call",
        "List every registered tool version with its policies.",
    )
    tools.add_argument("--json", action="store_true", help="one JSON document")
    serve = add(
        "serve",
        "serve the runs API (/api/v1/runs, /ws/runs/{id}) over HTTP",
        "Serve the runs API; the service opens with the server and closes with it. "
        "Keys come from agents.api_keys.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8920, help="port (default: %(default)s)")
    serve.add_argument(
        "--rate-per-minute",
        type=int,
        default=None,
        metavar="N",
        help="requests a minute per key (default: no limit)",
    )


def run(args: argparse.Namespace) -> int:
    """Dispatch to the sub-command (a registry, like the top-level commands)."""
    command = _SUBCOMMANDS[args.agent_command]
    return asyncio.run(command(args))


# -- the service a command opens ----------------------------------------------------------


def make_service(args: argparse.Namespace, *, llm: bool) -> AgentService:
    """The service of ``--config`` (defaults without it) with ``--data-dir``; with ``llm``,
    its planner has the SmartLLM of the file's ``models:`` (the service owns it)."""
    from llmrelay.agents.config import AgentSettings
    from llmrelay.agents.service import AgentService

    overrides: dict[str, Any] = {"data_dir": Path(args.data_dir)} if args.data_dir else {}
    if args.config:
        return AgentService.from_config(args.config, llm=llm, **overrides)
    return AgentService(AgentSettings(**overrides))


@asynccontextmanager
async def opened(
    args: argparse.Namespace, *, engine: bool, llm: bool = False
) -> AsyncIterator[AgentService]:
    """The command's service, closed once (with its SmartLLM) whatever happens."""
    service = make_service(args, llm=llm)
    try:
        if engine:
            await service.start()
        yield service
    finally:
        await service.close()


# -- progress -----------------------------------------------------------------------------


def _short(value: Any, width: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _planned(data: dict[str, Any]) -> str:
    steps = data["plan"]["steps"]
    listed = ", ".join(f"{s['id']} {s['tool']}" for s in steps)
    count = f"{len(steps)} step" + ("s" if len(steps) != 1 else "")
    return f"planned by {data['planner']}: {count} ({listed})"


def _step_started(data: dict[str, Any]) -> str:
    return f"  {data['step']} started" + (" (again, after a crash)" if data["after_crash"] else "")


def _step_finished(data: dict[str, Any]) -> str:
    if data["status"] == "succeeded":
        return f"  {data['step']} succeeded: {_short(data.get('result'))}"
    return f"  {data['step']} {data['status']}: {data.get('error')}"


_EVENT_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    "planned": _planned,
    "step_started": _step_started,
    "step_finished": _step_finished,
    "step_unknown": lambda d: f"  {d['step']}: outcome unknown (interrupted while running)",
    "restarted": lambda d: f"restarted (attempt {d['attempt']})",
    "status": lambda d: f"run {d['status']}" + (f": {d['error']}" if d.get("error") else ""),
}


def event_line(event: dict[str, Any]) -> str:
    """One event as a line of progress."""
    render = _EVENT_LINES.get(event["kind"])
    return render(event["data"]) if render else f"{event['kind']}: {_short(event['data'])}"


async def _follow(service: AgentService, run_id: str, after: int) -> int:
    async for event in service.follow(run_id, after):
        print(event_line(event), flush=True)
    final = await service.get(run_id)
    print(f"{run_id} {final['status']}")
    return 0 if final["status"] == "succeeded" else 1


# -- the sub-commands ---------------------------------------------------------------------


def _plan_file(path: str | None) -> bytes | None:
    from llmrelay.agents.errors import AgentError

    if path is None:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AgentError(f"--plan: cannot read {path}: {exc.strerror}") from None


async def _run(args: argparse.Namespace) -> int:
    from llmrelay.agents.errors import PromptRejected

    plan = _plan_file(args.plan)
    if plan is None and args.prompt is None:
        raise PromptRejected("prompt: give a PROMPT or --plan FILE")
    async with opened(args, engine=True, llm=plan is None) as service:
        run_ = await service.submit(args.prompt, plan=plan)
        print(f"run {run_['id']}", flush=True)
        return await _follow(service, run_["id"], 0)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


async def _runs(args: argparse.Namespace) -> int:
    async with opened(args, engine=False) as service:
        runs, cursor = await service.list_runs(
            status=args.status, limit=args.limit, cursor=args.cursor
        )
    if args.json:
        print(json.dumps({"runs": runs, "next_cursor": cursor}, indent=2))
        return 0
    print(f"{'id':<32}  {'status':<15}  {'created (UTC)':<19}  prompt")
    for r in runs:
        prompt = _short(r["prompt"] or f"(plan of {len(r['plan']['steps'])} steps)", 60)
        print(f"{r['id']:<32}  {r['status']:<15}  {_when(r['created_at'])}  {prompt}")
    if cursor:
        print(f"more: --cursor {cursor}")
    return 0


async def _show(args: argparse.Namespace) -> int:
    async with opened(args, engine=False) as service:
        run_ = await service.get(args.run_id)
        events = await service.events(args.run_id)
    if args.json:
        print(json.dumps({**run_, "events": events}, indent=2))
        return 0
    print(f"run {run_['id']}: {run_['status']} (attempt {run_['attempt']}, planner "
          f"{run_['planner']}, created {_when(run_['created_at'])} UTC)")  # fmt: skip
    if run_["prompt"]:
        print(f"prompt: {run_['prompt']}")
    if run_["error"]:
        print(f"error: {run_['error']}")
    print("steps:")
    for s in run_["steps"]:
        outcome = _short(s["result"]) if s["status"] == "succeeded" else (s["error"] or "")
        print(f"  {s['id']:<8} {s['tool']:<14} {s['status']:<15} x{s['executions']}  {outcome}")
    print("events:")
    for event in events:
        print(f"  {event['seq']:>5}  {_when(event['at'])}  {event_line(event).strip()}")
    return 0


async def _restart(args: argparse.Namespace) -> int:
    async with opened(args, engine=True) as service:
        before = await service.events(args.run_id)
        await service.restart(args.run_id, rerun_unknown=args.rerun_unknown)
        return await _follow(service, args.run_id, before[-1]["seq"] if before else 0)


async def _cancel(args: argparse.Namespace) -> int:
    async with opened(args, engine=True) as service:
        cancelled = await service.cancel(args.run_id)
    print(f"{cancelled['id']} {cancelled['status']}")
    return 0


async def _prune(args: argparse.Namespace) -> int:
    async with opened(args, engine=False) as service:
        report = await asyncio.to_thread(service.prune, args.older_than_days)
    deleted = report["deleted"]
    print(f"deleted {deleted['runs']} runs, {deleted['steps']} steps, "
          f"{deleted['events']} events")  # fmt: skip
    print("left: " + ", ".join(f"{table} {rows}" for table, rows in report["sizes"].items()))
    return 0


async def _tools(args: argparse.Namespace) -> int:
    async with opened(args, engine=False) as service:
        tools = service.tools()
    if args.json:
        print(json.dumps(tools, indent=2))
        return 0
    for t in tools:
        flags = "idempotent" if t["idempotent"] else "not idempotent"
        print(f"{t['name']:<16} {t['version']:<8} {flags:<15} {t['timeout_s']:>5} s  "
              f"{t['description']}")  # fmt: skip
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from llmrelay.agents.api import serve

    service = make_service(args, llm=True)
    await serve(service, host=args.host, port=args.port, rate_per_minute=args.rate_per_minute)
    return 0


_SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "run": _run,
    "runs": _runs,
    "show": _show,
    "restart": _restart,
    "cancel": _cancel,
    "prune": _prune,
    "tools": _tools,
    "serve": _serve,
}

__all__ = ["SUBCOMMANDS", "configure", "event_line", "expand_bare_prompt", "make_service", "run"]
