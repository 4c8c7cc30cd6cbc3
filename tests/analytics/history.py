"""Seeded request histories whose best deployments are known, as the router's events.

Run as a script to draw the documentation's chart from a realistic week::

    .venv/bin/python tests/analytics/history.py docs/report.png
"""

from __future__ import annotations

import math
import random
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmrelay.analytics import Analytics, Store, row_of
from llmrelay.events import Event, EventKind
from llmrelay.types import Attempt, ChatRequest, ChatResponse, Message, Usage

WEEK_START = 1_749_427_200.0
"""Monday 2025-06-09 00:00 UTC."""
DAY = 86_400.0


@dataclass(frozen=True)
class Profile:
    """How one deployment behaves: its figures are drawn around these."""

    deployment: str
    cost_micros: int
    """Mean cost of an answer."""
    latency_s: float
    """Median answer time."""
    quality: float
    error_rate: float
    share: float
    """Its share of the group's traffic (as the first deployment tried)."""
    group: str = "default"
    fallback: str | None = None
    """Where its failures are answered instead (``None``: the request fails)."""


def _event(
    rng: random.Random,
    profile: Profile,
    by_name: dict[str, Profile],
    at: float,
    task: str | None,
    tokens_scale: float,
) -> tuple[Event, float | None]:
    """One ``finished`` event of a request first sent to ``profile``, and the quality its
    answer deserves (``None`` when it failed)."""
    request = ChatRequest(
        messages=[Message(role="user", content="a question")],
        metadata={"task": task} if task else None,
        tags=["seeded"],
        user=f"user{rng.randrange(5)}",
    )
    attempts: list[Attempt] = []
    answering: Profile | None = profile
    if rng.random() < profile.error_rate:
        attempts.append(Attempt(deployment=profile.deployment, error="RateLimited",
                                status_code=429, latency_s=rng.uniform(0.05, 0.3)))  # fmt: skip
        answering = by_name[profile.fallback] if profile.fallback else None
    request_id = uuid.UUID(int=rng.getrandbits(128)).hex
    if answering is None:
        event = Event(kind=EventKind.FINISHED, group=profile.group, error="AllModelsExhausted",
                      message="every deployment failed", request_id=request_id,
                      request=request, attempts=tuple(attempts),
                      latency_s=sum(a.latency_s for a in attempts), started_at=at)  # fmt: skip
        return event, None
    latency = answering.latency_s * math.exp(rng.gauss(0, 0.3))
    wait = rng.choice((0.0, 0.0, 0.0, rng.uniform(0, 0.5)))
    attempts.append(Attempt(deployment=answering.deployment, status_code=200, latency_s=latency,
                            wait_s=wait))  # fmt: skip
    cost = max(1, round(answering.cost_micros * rng.uniform(0.7, 1.3)))
    streamed = rng.random() < 0.4
    input_tokens = round(rng.uniform(300, 1500) * tokens_scale)
    response = ChatResponse(
        content="an answer",
        usage=Usage(input_tokens=input_tokens, output_tokens=round(input_tokens * 0.3),
                    cached_input_tokens=input_tokens // 4 if rng.random() < 0.3 else 0),
        model=answering.deployment.partition("/")[2],
        provider=answering.deployment.partition("/")[0],
        deployment=answering.deployment,
        ttft_s=latency * 0.3 if streamed else None,
        cost_micros=cost,
        attempts=attempts,
        group=profile.group,
        request_id=request_id,
    )  # fmt: skip
    event = Event(kind=EventKind.FINISHED, group=profile.group, deployment=answering.deployment,
                  attempt=len(attempts) - 1, latency_s=sum(a.latency_s + a.wait_s for a in attempts),
                  input_tokens=input_tokens, output_tokens=response.usage.output_tokens,
                  cost_micros=cost, request_id=request_id, request=request, response=response,
                  attempts=tuple(attempts), streamed=streamed, started_at=at)  # fmt: skip
    quality = min(1.0, max(0.0, rng.gauss(answering.quality, 0.06)))
    return event, quality


def _hit(rng: random.Random, finished: Event, at: float) -> Event:
    """A later request answered from the cache with ``finished``'s answer."""
    assert finished.response is not None
    return Event(kind=EventKind.CACHE_HIT, group=finished.group,
                 deployment=finished.deployment, message=rng.choice(("exact", "semantic")),
                 cost_micros=finished.cost_micros, request=finished.request,
                 response=finished.response, request_id=uuid.UUID(int=rng.getrandbits(128)).hex,
                 started_at=at)  # fmt: skip


def busy(at: float) -> float:
    """Relative traffic at ``at``: a working day's curve, quieter at weekends."""
    hour = (at % DAY) / 3600
    weekday = int((at - WEEK_START) // DAY) % 7
    curve = 0.25 + math.exp(-(((hour - 14) / 4.0) ** 2))
    return curve * (0.45 if weekday >= 5 else 1.0)


def history(
    profiles: Sequence[Profile],
    *,
    requests: int,
    start: float = WEEK_START,
    days: float = 7.0,
    tasks: Sequence[str | None] = ("summarize",),
    seed: int = 7,
    cache_share: float = 0.05,
    scored_share: float = 0.6,
) -> Iterator[tuple[Event, float | None]]:
    """``requests`` events over ``days`` from ``start``, each with the quality score it is
    given (``None``: unscored), with traffic following :func:`busy`."""
    rng = random.Random(seed)
    by_name = {p.deployment: p for p in profiles}
    first = [p for p in profiles if p.share > 0]
    weights = [p.share for p in first]
    made = 0
    while made < requests:
        at = start + rng.uniform(0, days * DAY)
        if rng.random() > busy(at) / 1.25:
            continue
        profile = rng.choices(first, weights)[0]
        task = rng.choice(tasks)
        event, quality = _event(rng, profile, by_name, at, task, 1.0)
        made += 1
        yield event, quality if rng.random() < scored_share else None
        if quality is not None and rng.random() < cache_share and made < requests:
            made += 1
            yield _hit(rng, event, at + rng.uniform(60, 3600)), None


def seed_store(
    store: Store, events: Iterator[tuple[Event, float | None]], *, feedback_every: int = 0
) -> list[str]:
    """Write every event's row (its quality as the evaluator's score; every
    ``feedback_every``-th scored answer as a feedback score instead); the request ids."""
    rows, feedback = [], []
    for index, (event, quality) in enumerate(events):
        as_feedback = feedback_every and quality is not None and index % feedback_every == 0
        row = row_of(event, "task", None if as_feedback else quality)
        assert row is not None
        rows.append(row)
        if as_feedback:
            feedback.append((row.request_id, quality))
    for at in range(0, len(rows), 500):
        store.write(rows[at : at + 500])
    analytics = Analytics(store, owned=False)
    for request_id, score in feedback:
        assert score is not None
        analytics.feedback(request_id, score, "seeded")
    return [r.request_id for r in rows]


KNOWN = (
    Profile("openai/gpt-4o-mini", cost_micros=200, latency_s=0.9, quality=0.70,
            error_rate=0.02, share=0.3, fallback="gemini/gemini-2.5-flash"),
    Profile("gemini/gemini-2.5-flash", cost_micros=450, latency_s=0.45, quality=0.81,
            error_rate=0.03, share=0.25),
    Profile("anthropic/claude-sonnet-4-5", cost_micros=6_000, latency_s=1.9, quality=0.93,
            error_rate=0.01, share=0.2, fallback="openai/gpt-4o-mini"),
    Profile("openai/gpt-4o", cost_micros=4_000, latency_s=0.3, quality=0.97, error_rate=0.35,
            share=0.2),
    Profile("ollama/llama3", cost_micros=1, latency_s=0.1, quality=0.99, error_rate=0.0,
            share=0.005),
)  # fmt: skip
"""A history whose answers are known: by cost gpt-4o-mini, by speed gemini-2.5-flash, by
quality claude-sonnet-4-5; gpt-4o fails too often and llama3 answers too few."""

WEEK = (
    *KNOWN[:3],
    Profile("openai/gpt-4o", cost_micros=3_200, latency_s=1.2, quality=0.88, error_rate=0.04,
            share=0.12, fallback="anthropic/claude-sonnet-4-5"),
    Profile("ollama/llama3.1-8b", cost_micros=30, latency_s=2.6, quality=0.58, error_rate=0.06,
            share=0.08, group="local"),
)  # fmt: skip
"""A realistic week for the documentation's chart."""


def main(argv: Sequence[str]) -> int:
    import tempfile

    from llmrelay.analytics import SqliteStore
    from llmrelay.analytics.charts import write_png

    target = Path(argv[0] if argv else "docs/report.png")
    with tempfile.TemporaryDirectory() as folder:
        store = SqliteStore(Path(folder) / "analytics.sqlite")
        try:
            week = history(WEEK, requests=12_000, tasks=("summarize", "extract", "chat"))
            seed_store(store, week, feedback_every=9)
            with Analytics(store, owned=False) as analytics:
                write_png(analytics, target, WEEK_START, WEEK_START + 7 * DAY)
        finally:
            store.close()
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
