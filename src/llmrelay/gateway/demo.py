"""``llmrelay demo``: a mixed workload through the gateway, and what the router did with it.

Five phases over real HTTP, each shown live with its counts: a burst above the primary's
rate limits (the router queues or falls back: no 429 reaches the caller), an outage of the
primary (faults injected through the simulator's ``/_sim/config``: the fallbacks answer),
a prompt larger than the primary's context window (a larger window answers), a virtual
key with a tiny budget used until the gateway refuses it, and one temperature-0 request
repeated (the exact cache answers). Then a table of the router's own figures, the
difference of the gateway's ``/metrics`` before and after.

Without ``--url`` it runs its own world in this process: a :class:`SimulatorServer` whose
primary model has tight limits and a small window (:func:`simulator_config`) and a
:class:`GatewayServer` with a master key and the exact cache over it
(:func:`router_config`). ``llmrelay serve`` offline can serve the same world. With
``--url`` it drives a running gateway and skips, saying why, what it cannot set up there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmrelay.errors import LLMRelayError

if TYPE_CHECKING:
    import aiohttp
    from rich.console import Console, RenderableType

    from llmrelay.simulator.config import SimulatorConfig

DESCRIPTION = (
    "Drive a mixed workload through the gateway over HTTP and show what the router does: "
    "a burst above the primary model's rate limits (queued or sent to a fallback: no 429 "
    "reaches the caller), an outage of the primary (faults injected into the simulator), "
    "a prompt larger than the primary's context window, a virtual key whose tiny budget "
    "runs out, and a repeated temperature-0 request answered from the cache. Ends with "
    "the gateway's own figures from /metrics. Without --url it starts a simulator and a "
    "gateway in this process, offline; with --url it drives that gateway and skips what "
    "it cannot set up there (faults need --simulator, budgets need an admin key)."
)

DEFAULT_SECONDS = 8.0
DEFAULT_RATE = 6.0
"""Requests per second of the burst: six times the demo primary's 60 a minute."""
PRIMARY_RPM = 60
PRIMARY_WINDOW = 8192
DEFAULT_GROUP = "default"
WORLD: Mapping[str, Mapping[str, int]] = {
    "gpt-4o-mini": {"rpm": PRIMARY_RPM, "tpm": 200_000, "rpd": 100_000,
                    "context_window": PRIMARY_WINDOW, "max_output_tokens": 4096},
    "claude-haiku-4-5": {"rpm": 600, "itpm": 400_000, "otpm": 80_000},
    "gemini-2.5-flash": {"rpm": 600, "tpm": 1_000_000, "rpd": 100_000},
}  # fmt: skip
"""The demo's models, primary first: the simulator enforces these and the router knows
them. A tight, small primary (60 requests a minute, an 8k window) and roomy fallbacks."""
_APIS = {"gpt": "openai", "claude": "anthropic", "gemini": "gemini"}
_SIM_KEY = "sk-simulated"
_BUDGET_USD = 0.001
_BUDGET_PROMPT_WORDS = 1000
"""At ~1000 prompt tokens a request costs $0.00016 on the cheapest demo model: the budget
runs out within seven requests whichever deployment answers."""
_BUDGET_TRIES = 40
_OUTAGE_REQUESTS = 6
_CACHE_REPEATS = 5
_TIMEOUT_S = 300.0
_SETTLE_S = 10.0

PhaseName = Literal["burst", "outage", "oversized", "budget", "cache"]
State = Literal["waiting", "running", "done", "skipped"]


# -- the demo world ------------------------------------------------------------------------


def simulator_config() -> SimulatorConfig:
    """The shipped simulator models with :data:`WORLD`'s limits and windows laid over them."""
    from llmrelay.simulator.config import load_config, validate_config

    shipped = load_config()
    models = [m.model_dump() | dict(WORLD.get(m.name, {})) for m in shipped.models]
    data = shipped.model_dump() | {"models": models}
    return validate_config(data, source="llmrelay demo")


def router_config(
    simulator_url: str, groups: Mapping[str, Sequence[str]] | None = None
) -> dict[str, Any]:
    """Router settings over the simulator at ``simulator_url`` (one serving
    :func:`simulator_config`): model groups of its models, primary first (default: group
    ``default`` of :data:`WORLD`), the limits of :data:`WORLD` as the simulator enforces
    them, and the exact cache in memory."""

    def deployment(model: str) -> dict[str, Any]:
        api = _APIS[model.split("-")[0]]
        base = f"{simulator_url}/v1" if api == "openai" else simulator_url
        return {"provider": api, "model": model, "api_key": _SIM_KEY, "base_url": base,
                **WORLD.get(model, {})}  # fmt: skip

    groups = groups or {DEFAULT_GROUP: list(WORLD)}
    return {
        "models": {
            group: {"primary": [deployment(first)], "fallbacks": [deployment(m) for m in rest]}
            for group, (first, *rest) in groups.items()
        },
        "cache": {"exact": {"backend": "memory"}},
    }


@contextlib.contextmanager
def local_world(master_key: str) -> Iterator[tuple[str, str]]:
    """A simulator and a gateway (key store in a temporary directory) on loopback, in
    this process: ``(gateway_url, simulator_url)``; both stopped on exit."""
    from llmrelay.config import parse_settings
    from llmrelay.gateway.server import GatewayServer
    from llmrelay.gateway.settings import ServerSettings
    from llmrelay.simulator.server import SimulatorServer

    with tempfile.TemporaryDirectory(prefix="llmrelay-demo-") as tmp, \
            SimulatorServer(simulator_config()) as simulator:  # fmt: skip
        raw = router_config(simulator.url)
        raw["server"] = {"master_key": master_key, "keys": {"path": str(Path(tmp, "keys.db"))}}
        settings = parse_settings(raw, "llmrelay demo", sections={"server": ServerSettings})
        with GatewayServer(settings, settings.server) as gateway:
            yield gateway.url, simulator.url


# -- what the demo records -----------------------------------------------------------------


@dataclass
class Phase:
    """One phase of the workload and what its requests got."""

    name: PhaseName
    title: str
    state: State = "waiting"
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    deployments: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    refusal: str = ""
    """The gateway's message when it refused a request (the budget phase)."""
    note: str = ""
    elapsed_s: float = 0.0

    @property
    def answered(self) -> int:
        return self.statuses[200]

    def record(self, answer: Answer) -> None:
        self.statuses[answer.status] += 1
        if answer.deployment:
            self.deployments[answer.deployment] += 1
        if answer.cache not in ("", "miss"):
            self.cache_hits += 1


@dataclass
class Figures:
    """What the router did during the demo, from the gateway's ``/metrics``."""

    outcomes: dict[str, float]
    fallbacks: dict[str, float]
    avoided_429: float
    received_429: float
    cache_hits: float
    cache_saved_usd: float
    spend_usd: float


@dataclass
class Summary:
    """The demo's result: each phase, and the router's figures (``None`` when ``/metrics``
    could not be read; ``metrics_note`` says why)."""

    url: str
    phases: dict[PhaseName, Phase]
    figures: Figures | None = None
    metrics_note: str = ""

    @property
    def caller_429s(self) -> int:
        """429s for rate limits the callers got (budget refusals are not among them)."""
        return sum(p.statuses[429] for p in self.phases.values() if p.name != "budget")


def new_phases() -> dict[PhaseName, Phase]:
    titles: dict[PhaseName, str] = {
        "burst": "burst above the primary's rate limit",
        "outage": "outage of the primary",
        "oversized": "prompt larger than the primary's window",
        "budget": "virtual key with a tiny budget",
        "cache": "same temperature-0 request repeated",
    }
    return {name: Phase(name, title) for name, title in titles.items()}


# -- HTTP ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What the gateway answered one chat request: status, the ``x-llmrelay-*`` headers,
    and the error's message and code when it refused."""

    status: int
    deployment: str = ""
    cache: str = ""
    error: str = ""
    code: str = ""


class Client:
    """The gateway (and, when known, the simulator's control endpoints) over HTTP."""

    def __init__(self, http: aiohttp.ClientSession, url: str, master_key: str | None) -> None:
        self.http, self.url, self.master_key = http, url.rstrip("/"), master_key

    async def request(self, method: str, url: str, *, key: str | None = None, json: Any = None,
                      anonymous: bool = False) -> tuple[int, Any, Mapping[str, str]]:  # fmt: skip
        """Status, decoded body (text when not JSON) and headers of one request, sent with
        ``key``, else the master key (none when ``anonymous``)."""
        import aiohttp

        key = None if anonymous else key or self.master_key
        auth = {"authorization": f"Bearer {key}"} if key else {}
        try:
            async with self.http.request(method, url, json=json, headers=auth) as r:
                text = await r.text()
                try:
                    body: Any = await r.json(content_type=None) if text else None
                except ValueError:
                    body = text
                return r.status, body, r.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LLMRelayError(f"{method} {url}: {type(exc).__name__}: {exc}") from None

    async def chat(self, group: str, prompt: str, *, key: str | None = None,
                   **extra: Any) -> Answer:  # fmt: skip
        body = {"model": group, "messages": [{"role": "user", "content": prompt}], **extra}
        status, data, headers = await self.request(
            "POST", f"{self.url}/v1/chat/completions", key=key, json=body
        )
        error = data.get("error") if isinstance(data, dict) else None
        return Answer(
            status,
            deployment=headers.get("x-llmrelay-deployment", ""),
            cache=headers.get("x-llmrelay-cache", ""),
            error=str(error.get("message", "")) if isinstance(error, dict) else "",
            code=str(error.get("code", "")) if isinstance(error, dict) else "",
        )


# -- the phases ---------------------------------------------------------------------------------


@dataclass
class Run:
    """What every phase works with."""

    client: Client
    group: str
    primary: str
    """The deployment that answered the first request (``openai/gpt-4o-mini``)."""
    simulator: str | None
    phases: dict[PhaseName, Phase]
    seconds: float
    rate: float
    stamp: str = field(default_factory=lambda: f"{time.time_ns():x}")
    """Sets this run's prompts apart from an earlier run's, which a cache may remember."""

    @property
    def primary_model(self) -> str:
        return self.primary.partition("/")[2]


async def _phase(run: Run, name: PhaseName) -> None:
    phase = run.phases[name]
    phase.state = "running"
    started = time.monotonic()
    await PHASES[name](run, phase)
    phase.elapsed_s = time.monotonic() - started
    if phase.state == "running":
        phase.state = "done"


def _skip(phase: Phase, why: str) -> None:
    phase.state, phase.note = "skipped", f"skipped: {why}"


async def burst(run: Run, phase: Phase) -> None:
    """``rate`` requests a second for ``seconds``, all distinct (no cache), none waited for
    before the next is sent."""
    count = max(2, math.ceil(run.rate * run.seconds))

    async def one(i: int) -> None:
        await asyncio.sleep(i / run.rate)  # the arrival schedule, not a wait for a result
        phase.sent += 1
        phase.record(await run.client.chat(run.group, f"burst {run.stamp} #{i}", max_tokens=16))

    await asyncio.gather(*(one(i) for i in range(count)))
    phase.note = f"{count} requests at {run.rate:g}/s"


async def outage(run: Run, phase: Phase) -> None:
    """Requests sent together while the simulator answers 500 to every call to the
    primary; the faults it had before are put back afterwards."""
    if run.simulator is None:
        _skip(phase, "no simulator to inject faults into (pass --simulator URL)")
        return
    control = f"{run.simulator.rstrip('/')}/_sim/config"
    status, config, _ = await run.client.request("GET", control)
    models = config.get("models", []) if status == 200 and isinstance(config, dict) else []
    before = next((m.get("faults", {}) for m in models if m.get("name") == run.primary_model), None)
    if before is None:
        _skip(phase, f"the simulator at {run.simulator} does not serve {run.primary_model}")
        return

    async def one(i: int) -> None:
        phase.sent += 1
        phase.record(await run.client.chat(run.group, f"outage {run.stamp} #{i}", max_tokens=16))

    await _faults(run, control, {"500": 1.0})
    try:
        await asyncio.gather(*(one(i) for i in range(_OUTAGE_REQUESTS)))
    finally:
        await _faults(run, control, before)
    others = sum(n for d, n in phase.deployments.items() if d != run.primary)
    phase.note = f"{run.primary} answered 500 to everything; {others} answered by fallbacks"


async def _faults(run: Run, control: str, faults: Mapping[str, float]) -> None:
    patch = {"models": [{"name": run.primary_model, "faults": dict(faults)}]}
    status, body, _ = await run.client.request("POST", control, json=patch)
    if status != 200:
        raise LLMRelayError(f"--simulator: POST {control} answered {status}: {body}")


async def oversized(run: Run, phase: Phase) -> None:
    """A prompt of about 1.1 times the primary's window (one token a word)."""
    window = await _window(run)
    if window is None:
        _skip(phase, f"the window of {run.primary} is unknown (pass --simulator URL)")
        return
    words = int(window * 1.1)
    phase.sent += 1
    answer = await run.client.chat(run.group, "big " * words, max_tokens=16)
    phase.record(answer)
    phase.note = f"~{words} tokens, primary window {window}: answered by {answer.deployment or '-'}"


async def _window(run: Run) -> int | None:
    """The primary's context window: the simulator's, else the catalog's."""
    if run.simulator is not None:
        status, config, _ = await run.client.request("GET", f"{run.simulator}/_sim/config")
        for model in config.get("models", []) if status == 200 and isinstance(config, dict) else []:
            if model.get("name") == run.primary_model:
                return int(model["context_window"])
    from llmrelay.catalog import Catalog

    provider, _, model = run.primary.partition("/")
    info = Catalog.default().get(provider, model)
    return None if info is None else info.context_window


async def budget(run: Run, phase: Phase) -> None:
    """A new key with a budget of a tenth of a cent a day, used until the gateway refuses
    it, then revoked."""
    keys = f"{run.client.url}/admin/keys"
    status, _, _ = await run.client.request("GET", keys, anonymous=True)
    if status == 200:
        _skip(phase, "the gateway has no master key: it checks no key, so no budget")
        return
    spec = {"name": "llmrelay-demo", "budgets": [{"usd": _BUDGET_USD}], "groups": [run.group]}
    status, key, _ = await run.client.request("POST", keys, json=spec)
    if status != 201 or not isinstance(key, dict):
        _skip(phase, f"POST /admin/keys answered {status}: pass the master key (--master-key)")
        return
    filler = "spend " * _BUDGET_PROMPT_WORDS
    try:
        for i in range(_BUDGET_TRIES):
            phase.sent += 1
            answer = await run.client.chat(run.group, f"budget {run.stamp} #{i} {filler}",
                                           key=key["secret"], max_tokens=16)  # fmt: skip
            phase.record(answer)
            if answer.code == "insufficient_quota":
                phase.refusal = answer.error
                break
    finally:
        await run.client.request("DELETE", f"{keys}/{key['id']}")
    refused = phase.refusal.partition(": ")[0]  # "budget 'key:…/day' cannot afford this request"
    phase.note = (f"refused after {phase.answered} answers: {refused}" if phase.refusal
                  else f"not refused within {_BUDGET_TRIES} requests")  # fmt: skip


async def cache(run: Run, phase: Phase) -> None:
    """One temperature-0 request, sent again and again: the first is made, the rest cached."""
    for _ in range(_CACHE_REPEATS):
        phase.sent += 1
        phase.record(await run.client.chat(run.group, f"cache {run.stamp}", temperature=0,
                                           max_tokens=16))  # fmt: skip
    if phase.cache_hits == 0:
        phase.note = "no hits: the gateway's cache is off (cache.exact.backend)"
    else:
        phase.note = f"{phase.cache_hits} of {phase.sent} from the cache"


PHASES: Mapping[PhaseName, Callable[[Run, Phase], Awaitable[None]]] = {
    "burst": burst, "outage": outage, "oversized": oversized, "budget": budget, "cache": cache,
}  # fmt: skip


# -- /metrics --------------------------------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: Client) -> tuple[Samples | None, str]:
    """The gateway's counters (``*_total``), or ``None`` and why they cannot be read."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body, _ = await client.request("GET", f"{client.url}/metrics")
    if status != 200 or not isinstance(body, str):
        why = "pass an admin key (--master-key)" if status in (401, 403) else f"status {status}"
        return None, f"/metrics could not be read: {why}"
    return {
        (s.name, frozenset(s.labels.items())): float(s.value)
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name.endswith("_total")
    }, ""


async def _settled(client: Client, before: Samples, routed: int) -> tuple[Samples | None, str]:
    """The counters once they count the ``routed`` requests the demo had answers for: the
    gateway counts events on a thread of its own, a moment after it answers. After
    :data:`_SETTLE_S`, the counters as they are."""
    deadline = time.monotonic() + _SETTLE_S
    while True:
        after, note = await scrape(client)
        if after is None or time.monotonic() >= deadline:
            return after, note
        if sum(figures(before, after).outcomes.values()) >= routed:
            return after, note
        await asyncio.sleep(0.05)


def figures(before: Samples, after: Samples) -> Figures:
    """The router's figures over the demo: the counters' growth from ``before`` to ``after``."""

    def by(metric: str, label: str | None = None) -> dict[str, float]:
        out: dict[str, float] = {}
        for (name, labels), value in after.items():
            if name == metric or name.endswith(f"_{metric}"):
                grown = value - before.get((name, labels), 0.0)
                if grown:
                    which = dict(labels).get(label, "") if label else ""
                    out[which] = out.get(which, 0.0) + grown
        return out

    def total(metric: str) -> float:
        return sum(by(metric).values())

    return Figures(
        outcomes=by("requests_total", "outcome"),
        fallbacks=by("fallbacks_total", "reason"),
        avoided_429=total("rate_limits_avoided_total"),
        received_429=total("rate_limits_received_total"),
        cache_hits=total("cache_hits_total"),
        cache_saved_usd=total("cache_saved_usd_total"),
        spend_usd=total("cost_usd_total"),
    )


# -- display -----------------------------------------------------------------------------------


def progress(phases: Mapping[PhaseName, Phase]) -> RenderableType:
    """A line per phase with its counts."""
    from rich.table import Table

    marks = {"waiting": "[dim]·[/]", "running": "[yellow]…[/]", "done": "[green]✓[/]",
             "skipped": "[dim]-[/]"}  # fmt: skip
    table = Table(title="llmrelay demo", title_justify="left", expand=False)
    for column in ("", "phase", "time", "sent", "200", "429", "other", "answered by", "note"):
        table.add_column(column, overflow="fold")
    for p in phases.values():
        other = p.sent - p.answered - p.statuses[429] if p.state != "waiting" else 0
        by = ", ".join(f"{d.partition('/')[2] or d} {n}" for d, n in p.deployments.most_common())
        seconds = f"{p.elapsed_s:.1f}s" if p.state in ("done", "skipped") else ""
        table.add_row(marks[p.state], p.title, seconds, str(p.sent), str(p.answered),
                      str(p.statuses[429]), str(max(other, 0)), by, p.note)  # fmt: skip
    return table


def report(summary: Summary) -> RenderableType:
    """The final table: what the router did, from ``/metrics``."""
    from rich.table import Table

    table = Table(title="what the router did (from /metrics)", title_justify="left")
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    f = summary.figures
    if f is None:
        table.add_row("/metrics", summary.metrics_note)
        return table

    def counts(values: Mapping[str, float]) -> str:
        return ", ".join(f"{k or '-'} {v:g}" for k, v in sorted(values.items())) or "none"

    table.add_row("requests by outcome", counts(f.outcomes))
    table.add_row("fallbacks by reason", counts(f.fallbacks))
    table.add_row("429s avoided (held in the queue)", f"{f.avoided_429:g}")
    table.add_row("429s received from providers", f"{f.received_429:g}")
    table.add_row("429s sent to callers (rate limits)", str(summary.caller_429s))
    table.add_row("cache hits", f"{f.cache_hits:g} (saved ${f.cache_saved_usd:.6f})")
    table.add_row("spend", f"${f.spend_usd:.6f}")
    return table


# -- running it --------------------------------------------------------------------------------


async def drive(
    url: str,
    *,
    master_key: str | None,
    simulator: str | None,
    group: str | None,
    seconds: float,
    rate: float,
    console: Console | None,
) -> Summary:
    """Every phase against the gateway at ``url``, then its figures; shown on ``console``
    (live, then the final table) when there is one."""
    import aiohttp

    phases = new_phases()
    timeout = aiohttp.ClientTimeout(total=_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        client = Client(http, url, master_key)
        try:
            before, _ = await scrape(client)
        except LLMRelayError as exc:
            raise LLMRelayError(f"--url: cannot reach the gateway: {exc}") from None
        group = group or await _group(client)
        first = await client.chat(group, "hello", max_tokens=16)
        if first.status != 200:
            option = "--master-key" if first.status in (401, 403) else "--model"
            raise LLMRelayError(f"{option}: the gateway at {url} answered {first.status}: "
                                f"{first.error or 'no answer'}")  # fmt: skip
        run = Run(client, group, first.deployment, simulator, phases, seconds, rate)
        with _live(console, phases):
            for name in PHASES:
                await _phase(run, name)
        routed = 1 + sum(p.answered + bool(p.refusal) for p in phases.values())
        after, note = await _settled(client, before or {}, routed)
    summary = Summary(url, phases, metrics_note=note)
    if after is not None:
        summary.figures = figures(before or {}, after)
    if console is not None:
        console.line()
        console.print(report(summary))
    return summary


def _live(console: Console | None, phases: Mapping[PhaseName, Phase]) -> Any:
    """The progress table redrawn while the phases run (nothing without a console)."""
    if console is None:
        return contextlib.nullcontext()
    from rich.live import Live

    return Live(get_renderable=lambda: progress(phases), console=console, refresh_per_second=8)


async def _group(client: Client) -> str:
    """``default`` when the gateway serves it, else the first group it lists."""
    status, body, _ = await client.request("GET", f"{client.url}/v1/models")
    if status in (401, 403):
        raise LLMRelayError(f"--master-key: the gateway at {client.url} wants a key "
                            "(or set LLMRELAY_MASTER_KEY)")  # fmt: skip
    names = [m["id"] for m in body.get("data", [])] if isinstance(body, dict) else []
    if not names:
        raise LLMRelayError(f"--url: {client.url}/v1/models answered {status} with no model group")
    return DEFAULT_GROUP if DEFAULT_GROUP in names else names[0]


def run_demo(
    *,
    url: str | None = None,
    master_key: str | None = None,
    simulator: str | None = None,
    group: str | None = None,
    seconds: float = DEFAULT_SECONDS,
    rate: float = DEFAULT_RATE,
    console: Console | None = None,
) -> Summary:
    """Run the demo (in this process's own world when ``url`` is None); with a
    ``console``, show its progress live and the final table."""

    def go(target: str, key: str | None, sim: str | None) -> Summary:
        return asyncio.run(drive(target, master_key=key, simulator=sim, group=group,
                                 seconds=seconds, rate=rate, console=console))  # fmt: skip

    if url is not None:
        return go(url, master_key, simulator)
    key = master_key or f"sk-demo-{os.urandom(8).hex()}"
    with local_world(key) as (gateway_url, simulator_url):
        if console is not None:
            console.print(f"gateway {gateway_url} over the simulator {simulator_url}")
        return go(gateway_url, key, simulator_url)


# -- command line --------------------------------------------------------------------------------


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="a running gateway to drive, e.g. http://127.0.0.1:8080 "
                        "(default: start a simulator and a gateway in this process)")  # fmt: skip
    parser.add_argument("--master-key", metavar="KEY",
                        default=os.environ.get("LLMRELAY_MASTER_KEY"),
                        help="the gateway's master key, for /admin/keys and /metrics "
                             "(default: $LLMRELAY_MASTER_KEY)")  # fmt: skip
    parser.add_argument("--simulator", metavar="URL",
                        help="with --url: the simulator behind that gateway, to inject "
                             "faults into (llmrelay serve prints it); without it the outage "
                             "is skipped")  # fmt: skip
    parser.add_argument("--model", metavar="GROUP", help="the model group to call (default: "
                        f"{DEFAULT_GROUP}, else the first the gateway lists)")  # fmt: skip
    parser.add_argument("--seconds", type=_positive, default=DEFAULT_SECONDS, metavar="N",
                        help="how long the burst lasts (default: %(default)s)")  # fmt: skip
    parser.add_argument("--rate", type=_positive, default=DEFAULT_RATE, metavar="R",
                        help="requests per second of the burst (default: %(default)s, six "
                             "times the demo primary's limit)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    import logging

    from rich.console import Console

    if args.simulator and not args.url:
        raise LLMRelayError("--simulator: only with --url (without it the demo runs its own)")
    # The demo shows what the router did in its tables; its warnings would break the display.
    logging.getLogger("llmrelay").setLevel(logging.ERROR)
    run_demo(url=args.url, master_key=args.master_key, simulator=args.simulator,
             group=args.model, seconds=args.seconds, rate=args.rate, console=Console())  # fmt: skip
    return 0


__all__ = [
    "DESCRIPTION", "WORLD", "Figures", "Phase", "Summary", "configure", "local_world",
    "router_config", "run", "run_demo", "simulator_config",
]  # fmt: skip
