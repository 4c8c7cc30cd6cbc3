"""The analytics sink and store: rows in, the same figures out of SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import msgspec
import pytest

from llmrelay.analytics import (
    Analytics,
    AnalyticsSettings,
    AnalyticsSink,
    DeploymentStats,
    FeedbackRow,
    RequestRow,
    Store,
    open_store,
)
from llmrelay.errors import BadRequest, ConfigError
from llmrelay.events import Event, EventKind
from llmrelay.types import Attempt, ChatRequest, ChatResponse, Message, Usage

A, B = "alpha/one", "beta/two"


def request(task: str | None = "summarize") -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="hi")],
                       metadata={"task": task} if task else None, tags=["x", "y"], user="ann",
                       key="key-1")  # fmt: skip


def answered(
    request_id: str,
    at: float,
    attempts: Sequence[Attempt],
    *,
    cost: int,
    ttft: float | None = None,
    task: str | None = "summarize",
) -> Event:
    deployment = attempts[-1].deployment
    response = ChatResponse(
        content="ok", usage=Usage(input_tokens=100, output_tokens=10, cached_input_tokens=20),
        model=deployment.partition("/")[2], provider=deployment.partition("/")[0],
        deployment=deployment, ttft_s=ttft, cost_micros=cost, attempts=list(attempts),
        request_id=request_id,
    )  # fmt: skip
    return Event(kind=EventKind.FINISHED, group="default", deployment=deployment,
                 attempt=len(attempts) - 1, latency_s=sum(a.latency_s for a in attempts) + 0.5,
                 cost_micros=cost, request_id=request_id, request=request(task),
                 response=response, attempts=tuple(attempts), streamed=ttft is not None,
                 started_at=at)  # fmt: skip


def failed(request_id: str, at: float, attempts: Sequence[Attempt]) -> Event:
    return Event(kind=EventKind.FINISHED, group="default", error="AllModelsExhausted",
                 message="every deployment failed", latency_s=1.5, request_id=request_id,
                 request=request(), attempts=tuple(attempts), started_at=at)  # fmt: skip


def ok(deployment: str, latency: float) -> Attempt:
    return Attempt(deployment=deployment, status_code=200, latency_s=latency, wait_s=0.25)


def error(deployment: str) -> Attempt:
    return Attempt(deployment=deployment, error="RateLimited", status_code=429, latency_s=0.1)


def five_requests() -> list[Event]:
    """Answered on A; fell back from A to B; failed on A then B; a cache hit of the first
    answer; answered on A (another task, later)."""
    first = answered("r1", 100.0, [ok(A, 1.0)], cost=100, ttft=0.2)
    assert first.response is not None
    return [
        first,
        answered("r2", 200.0, [error(A), ok(B, 2.0)], cost=300),
        failed("r3", 300.0, [error(A), error(B)]),
        Event(
            kind=EventKind.CACHE_HIT,
            group="default",
            deployment=A,
            message="exact",
            cost_micros=100,
            request_id="r4",
            request=first.request,
            response=first.response,
            started_at=400.0,
        ),
        answered(
            "r5",
            500.0,
            [Attempt(deployment=B, error="CircuitOpen"), ok(A, 3.0)],
            cost=200,
            task="extract",
        ),
    ]


def recorded(settings: AnalyticsSettings, events: Sequence[Event]) -> AnalyticsSink:
    """A sink of ``settings`` given ``events`` (its evaluator scores r5 0.5)."""

    def evaluator(request: ChatRequest, response: ChatResponse) -> float | None:
        return 0.5 if response.request_id == "r5" else None

    sink = AnalyticsSink(settings, evaluator=evaluator)
    for event in events:
        sink.handle(event)
    return sink


def test_rows_hold_every_figure_of_a_request(settings: AnalyticsSettings) -> None:
    """The row of a fallback keeps who answered, the attempts, wait, tokens and cost."""
    sink = recorded(settings, five_requests())
    try:
        assert sink.flush(timeout=30)
        rows = {r[0]: r for r in sink.store.fetch(
            "SELECT request_id, deployment, provider, task, tags, key, \"user\", error, cached, "
            "attempts, fell_back, wait_s, deployment_latency_s, cost_micros, saved_micros, "
            "input_tokens, cached_input_tokens, streamed, ttft_s, quality "
            "FROM analytics_requests")}  # fmt: skip
        assert rows["r2"][1:] == (B, "beta", "summarize", "x,y", "key-1", "ann", None,
                                  None, 2, 1, 0.25, 2.0, 300, 0, 100, 20, 0, None,
                                  None)  # fmt: skip
        assert rows["r3"][1:4] == (B, "beta", "summarize")
        assert rows["r3"][7:11] == ("AllModelsExhausted", None, 2, 0)
        assert rows["r4"][1:] == (A, "alpha", "summarize", "x,y", "key-1", "ann", None, "exact",
                                  0, 0, 0.0, None, 0, 100, 0, 0, 0, None, None)  # fmt: skip
        assert rows["r5"][9:11] == (1, 1)  # the skipped attempt was not sent, yet it fell back
        assert rows["r5"][-1] == 0.5 and rows["r1"][-2:] == (0.2, None)
        tries = sink.store.fetch("SELECT deployment, error, sent FROM analytics_attempts "
                                 "WHERE request_id = 'r5' ORDER BY deployment")  # fmt: skip
        assert tries == [(A, None, 1), (B, "CircuitOpen", 0)]
    finally:
        sink.close()


def test_stats_are_the_same_in_every_store(settings: AnalyticsSettings) -> None:
    """Per deployment: requests, calls and errors, percentiles, cost, cache and quality."""
    recorded(settings, five_requests()).close()  # rows queued are written on close
    with Analytics.open(settings) as analytics:
        analytics.feedback("r1", 0.9)
        analytics.feedback("r1", 0.7, "a bit short")
        on_a, on_b = analytics.stats(by=("deployment",))
    assert on_a.quality_mean == pytest.approx(0.65)  # (0.9 + 0.7) / 2 by feedback, 0.5 scored
    assert msgspec.structs.replace(on_a, quality_mean=None) == DeploymentStats(
        group=None, deployment=A, task=None, requests=2, answered=2, failed=0, calls=4,
        errors=2, error_rate=0.5, latency_p50_s=2.0, latency_p95_s=2.9, latency_p99_s=2.98,
        ttft_p50_s=0.2, input_tokens=200, output_tokens=20, cached_input_tokens=40,
        reasoning_tokens=0, cost_micros=300, mean_cost_micros=150.0, fallbacks=1,
        cache_hits=1, saved_micros=100, quality_mean=None, quality_n=2,
    )  # fmt: skip
    assert on_b == DeploymentStats(
        group=None, deployment=B, task=None, requests=2, answered=1, failed=1, calls=2,
        errors=1, error_rate=0.5, latency_p50_s=2.0, latency_p95_s=2.0, latency_p99_s=2.0,
        ttft_p50_s=None, input_tokens=100, output_tokens=10, cached_input_tokens=20,
        reasoning_tokens=0, cost_micros=300, mean_cost_micros=300.0, fallbacks=1,
        cache_hits=0, saved_micros=0, quality_mean=None, quality_n=0,
    )  # fmt: skip


def test_stats_by_task_group_and_window(settings: AnalyticsSettings) -> None:
    """Filters and groupings select the right rows; the window is [since, until)."""
    recorded(settings, five_requests()).close()
    with Analytics.open(settings) as analytics:
        by_task = {(s.deployment, s.task): s.answered
                   for s in analytics.stats(by=("group", "deployment", "task"))}  # fmt: skip
        assert by_task == {(A, "summarize"): 1, (A, "extract"): 1, (B, "summarize"): 1}
        assert [s.group for s in analytics.stats(by=("group", "deployment"))] == ["default"] * 2
        window = analytics.stats(since=100.0, until=300.0, by=("deployment",))
        assert [(s.deployment, s.requests, s.calls) for s in window] == [(A, 1, 2), (B, 1, 1)]
        assert analytics.stats(task="extract", by=("deployment",))[0].calls == 1
        assert analytics.stats(group="elsewhere") == []
        assert analytics.span() == (100.0, 500.0, 5)
        points = analytics.series(bucket_s=250.0)
        assert [(p.start, p.deployment, p.requests, p.cost_micros) for p in points] == [
            (0.0, A, 1, 100), (0.0, B, 1, 300), (250.0, B, 1, 0), (500.0, A, 1, 200),
        ]  # fmt: skip


def test_feedback_is_checked_and_names_the_field(settings: AnalyticsSettings) -> None:
    """A score outside [0, 1], a non-number or an unknown request is a BadRequest."""
    recorded(settings, five_requests()[:1]).close()
    with Analytics.open(settings) as analytics:
        for score in (1.5, -0.1, float("nan"), True, "0.5"):
            with pytest.raises(BadRequest, match=r"^score: expected a number in"):
                analytics.feedback("r1", score)  # type: ignore[arg-type]  # wrong on purpose
        with pytest.raises(BadRequest, match=r"^request_id: no request 'nope'"):
            analytics.feedback("nope", 0.5)
        with pytest.raises(BadRequest, match=r"^comment:"):
            analytics.feedback("r1", 0.5, comment=3)  # type: ignore[arg-type]  # on purpose
        analytics.feedback("r1", 1)
        assert analytics.stats()[0].quality_mean == 1.0


class Flaky:
    """A real store whose next ``fail`` writes raise, as a store that went away would."""

    def __init__(self, store: Store, fail: int) -> None:
        self.store = store
        self.name = store.name
        self.fail = fail
        self.tries = 0
        self.wrote = threading.Event()

    def write(self, rows: Sequence[RequestRow]) -> None:
        self.tries += 1
        if self.fail:
            self.fail -= 1
            raise OSError("the store is away")
        self.store.write(rows)
        self.wrote.set()

    def add_feedback(self, row: FeedbackRow) -> bool:
        return self.store.add_feedback(row)

    def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return self.store.fetch(sql, params)

    def close(self) -> None:
        self.store.close()


def test_a_failed_write_keeps_its_rows_and_tries_again(settings: AnalyticsSettings) -> None:
    """Rows of a failed write are written, in order, by the next one; none is lost, and a
    failure is not retried in a busy loop."""
    flaky = Flaky(open_store(settings), fail=1)
    sink = AnalyticsSink(settings, store=flaky)
    events = five_requests()
    for event in events[:3]:
        sink.handle(event)
    assert not sink.flush(timeout=30)  # the write failed; its rows are kept
    assert sink.write_errors == 1 and sink.written == 0
    sink.batch = 2
    for event in events[3:]:
        sink.handle(event)  # a full batch waits flush_s after a failure: no retry yet
    assert flaky.tries == 1
    assert sink.flush(timeout=30) and sink.written == 5 and flaky.tries == 4  # 2 + 2 + 1
    order = flaky.fetch("SELECT request_id FROM analytics_requests ORDER BY at")
    assert [r[0] for r in order] == ["r1", "r2", "r3", "r4", "r5"]
    sink.close()


def test_rows_are_written_within_flush_s_unasked(sqlite_settings: AnalyticsSettings) -> None:
    """With nobody flushing, queued rows reach the store after ``flush_s`` by themselves."""
    settings = AnalyticsSettings(path=sqlite_settings.path, flush_s=0.01)
    store = Flaky(open_store(settings), fail=0)
    sink = AnalyticsSink(settings, store=store)
    try:
        sink.handle(five_requests()[0])
        assert store.wrote.wait(timeout=30)
        assert store.fetch("SELECT request_id FROM analytics_requests") == [("r1",)]
    finally:
        sink.close()


def test_a_dropped_postgres_connection_is_opened_again(
    postgres_settings: AnalyticsSettings,
) -> None:
    """When the server ends the connection, the write fails, is kept, and the next one
    reconnects and writes everything."""
    import psycopg

    sink = AnalyticsSink(postgres_settings)
    try:
        store = sink.store
        (pid,) = store.fetch("SELECT pg_backend_pid()")[0]
        with psycopg.connect(str(postgres_settings.database_url), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        sink.handle(five_requests()[0])
        assert not sink.flush(timeout=30)
        assert sink.flush(timeout=30)
        assert store.fetch("SELECT request_id FROM analytics_requests") == [("r1",)]
    finally:
        sink.close()


def test_an_unreachable_postgres_is_a_config_error() -> None:
    """The message names the setting and the server, never its password."""
    settings = AnalyticsSettings(store="postgres",
                                 database_url="postgresql://me:secret@127.0.0.1:1/none")  # fmt: skip
    with pytest.raises(ConfigError, match=r"database_url: cannot open .*me:\*\*\*@") as caught:
        open_store(settings)
    assert "secret" not in str(caught.value)


def test_a_missing_sqlite_file_is_not_created_when_only_reading(
    sqlite_settings: AnalyticsSettings,
) -> None:
    with pytest.raises(ConfigError, match="no analytics store at"):
        Analytics.open(sqlite_settings, create=False)


def evaluator_of_many_moods(request: ChatRequest, response: ChatResponse) -> float | None:
    """Scores r1 0.75; raises on r2; gives nonsense for r5."""
    if response.request_id == "r2":
        raise RuntimeError("the judge is away")
    return {"r1": 0.75, "r5": 7.0}.get(response.request_id)


def test_the_evaluator_scores_answers_and_cannot_break_the_sink(
    sqlite_settings: AnalyticsSettings,
) -> None:
    """A failing or nonsensical evaluator leaves the answer unscored, counted; the row is
    still written."""
    settings = msgspec.structs.replace(
        sqlite_settings, evaluator=f"{__name__}:evaluator_of_many_moods"
    )
    sink = AnalyticsSink(settings)
    for event in five_requests():
        sink.handle(event)
    sink.close()
    assert sink.evaluator_errors == 2 and sink.written == 5
    with Analytics.open(settings) as analytics:
        scored = analytics.store.fetch("SELECT request_id, quality FROM analytics_requests "
                                       "WHERE quality IS NOT NULL")  # fmt: skip
    assert scored == [("r1", 0.75)]


def test_an_evaluator_that_cannot_be_found_is_named() -> None:
    for path, message in (
        ("no_colon", "expected 'package.module:function'"),
        ("no_such_module_here:f", "cannot import 'no_such_module_here'"),
        (f"{__name__}:missing", f"'{__name__}' has no function 'missing'"),
    ):
        with pytest.raises(ValueError, match=f"^evaluator: {message}"):
            AnalyticsSink(AnalyticsSettings(evaluator=path))
