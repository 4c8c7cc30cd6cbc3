"""The simulator enforces limits as providers do: per minute, per short window, per day.

Every test drives the Simulator ASGI app in-process with fake clocks: ``clock`` (monotonic
seconds) for the minute buckets and short windows, ``wall`` (epoch seconds) for the day.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from llmrelay.simulator import Simulator
from llmrelay.simulator.config import SimulatorConfig
from llmrelay.simulator.state import Limiter, Quota, Refusal, ShortWindow
from llmrelay.testing import TEST_MODELS, make_config

KEY = "sk-limits"


class FakeClock:
    """A clock that moves only when a test moves it."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def at(zone: str, year: int, month: int, day: int, hour: int, minute: int, second: int) -> float:
    """Epoch seconds of a local time in ``zone``."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone)).timestamp()


def config_with(model: str, **fields: Any) -> SimulatorConfig:
    models = [{**m, **fields} if m["name"] == model else m for m in TEST_MODELS]
    return make_config(models=models)


class Sim:
    """One simulator app and the clocks it runs on."""

    def __init__(self, config: SimulatorConfig, wall: float = 1_750_000_000.0) -> None:
        self.clock = FakeClock()
        self.wall = FakeClock(wall)
        self.app = Simulator(config, clock=self.clock, wall=self.wall)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://sim"
        )

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        self.wall.now += seconds

    async def openai(self, content: str = "hi", **body: Any) -> httpx.Response:
        payload = {"model": "sim-openai", "messages": [{"role": "user", "content": content}]}
        return await self.http.post(
            "/v1/chat/completions",
            json={**payload, **body},
            headers={"authorization": f"Bearer {KEY}"},
        )

    async def anthropic(self, content: str = "hi", max_tokens: int = 100) -> httpx.Response:
        body = {
            "model": "sim-anthropic",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": content}],
        }
        return await self.http.post("/v1/messages", json=body, headers={"x-api-key": KEY})

    async def gemini(self) -> httpx.Response:
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        return await self.http.post(
            "/v1beta/models/sim-gemini:generateContent", json=body, headers={"x-goog-api-key": KEY}
        )

    def usage(self, model: str = "sim-openai") -> dict[str, Any]:
        return dict(self.app.ledger.report()["keys"][KEY][model])


@pytest.fixture
async def sim_factory() -> AsyncIterator[list[Sim]]:
    made: list[Sim] = []
    yield made
    for sim in made:
        await sim.http.aclose()


@pytest.fixture
def make_sim(sim_factory: list[Sim]) -> Any:
    def make(config: SimulatorConfig, **kw: Any) -> Sim:
        sim = Sim(config, **kw)
        sim_factory.append(sim)
        return sim

    return make


async def test_rpm_is_enforced_per_second(make_sim: Any) -> None:
    """RPM 600 with a 1-s window: 10 at once, the 11th refused until the first second ends."""
    sim = make_sim(config_with("sim-openai", rpm=600))
    assert [(await sim.openai()).status_code for _ in range(10)] == [200] * 10
    refused = await sim.openai()
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1" and refused.headers["retry-after-ms"] == "1000"
    assert refused.headers["x-ratelimit-limit-requests"] == "600"
    assert "requests per min (RPM): Limit 600, Used 10, Requested 1" in refused.text
    sim.advance(0.75)
    assert (await sim.openai()).headers["retry-after-ms"] == "250"
    sim.advance(0.25)
    assert (await sim.openai()).status_code == 200
    assert sim.usage()["refused_by_limit"] == {"429:requests": 2}


async def test_tpm_bound_window_counts_tokens(make_sim: Any) -> None:
    """TPM 60,000 is 1,000 tokens a second: two ~400-token requests fit, a third waits."""
    sim = make_sim(config_with("sim-openai", tpm=60_000))
    long = "word " * 300  # the echo is longer than max_tokens: every reserved token is used
    first = await sim.openai(long, max_tokens=100)
    assert first.json()["usage"]["total_tokens"] > 400
    assert (await sim.openai(long, max_tokens=100)).status_code == 200
    refused = await sim.openai(long, max_tokens=100)
    assert refused.status_code == 429 and "tokens per min (TPM)" in refused.text
    assert refused.json()["error"]["type"] == "tokens"
    assert refused.headers["retry-after-ms"] == "1000"
    assert sim.usage()["refused_by_limit"] == {"429:tokens": 1}
    sim.advance(1.0)
    assert (await sim.openai(long, max_tokens=100)).status_code == 200


async def test_large_request_occupies_the_window_proportionally_longer(make_sim: Any) -> None:
    """TPM 60,000: a 4,000-token request is admitted alone and holds the window for 4 s."""
    sim = make_sim(config_with("sim-openai", tpm=60_000))
    long = "word " * 2500
    prompt = (await sim.openai(long, max_tokens=1)).json()["usage"]["prompt_tokens"]
    sim.advance(10.0)  # that request has left the window; the minute bucket has room
    big = await sim.openai(long, max_tokens=4_000 - prompt)
    assert big.status_code == 200 and big.json()["usage"]["total_tokens"] == 4_000
    sim.advance(3.75)
    refused = await sim.openai()
    assert refused.status_code == 429 and refused.headers["retry-after-ms"] == "250"
    sim.advance(0.25)
    assert (await sim.openai()).status_code == 200


async def test_unused_tokens_shorten_the_occupancy(make_sim: Any) -> None:
    """Unused max_tokens come back: the entry shrinks and leaves after 1 s, not 10."""
    sim = make_sim(config_with("sim-openai", tpm=6_000))  # 100 tokens a second
    first = (await sim.openai(max_tokens=1_000)).json()["usage"]
    held = first["total_tokens"]  # about 11 of the ~1,008 reserved
    assert held < 20
    sim.advance(0.5)
    refused = await sim.openai(max_tokens=100 - held + 1)  # one token more than the room left
    assert refused.status_code == 429 and refused.headers["retry-after-ms"] == "500"
    sim.advance(0.5)
    assert (await sim.openai(max_tokens=50)).status_code == 200


async def test_rpm_50_admits_one_request_every_1_2_seconds(make_sim: Any) -> None:
    """RPM 50 is 0.83 requests a second: each request holds the window for 1.2 s."""
    sim = make_sim(config_with("sim-openai", rpm=50))
    for _ in range(3):
        admitted_at = sim.clock.now
        assert (await sim.openai()).status_code == 200
        sim.clock.now = admitted_at + 1.19
        refused = await sim.openai()
        assert refused.status_code == 429
        assert int(refused.headers["retry-after-ms"]) == pytest.approx(10, abs=1)  # float ms
        sim.clock.now = admitted_at + 1.2
    assert (await sim.openai()).status_code == 200


async def test_minute_only_lets_a_whole_minute_burst_through(make_sim: Any) -> None:
    """short_window_s 0 is the old behaviour: RPM 120 admits 120 at once, then 2 a second."""
    sim = make_sim(config_with("sim-openai", rpm=120, short_window_s=0))
    statuses = [(await sim.openai()).status_code for _ in range(121)]
    assert statuses == [200] * 120 + [429]
    sim.advance(0.5)
    assert (await sim.openai()).status_code == 200


async def test_model_window_overrides_the_config_window(make_sim: Any) -> None:
    """The model's short_window_s wins over the config's; null on the model takes the config's."""
    config = config_with("sim-openai", rpm=120, short_window_s=2.0)
    config = config.patched({"short_window_s": 0})
    sim = make_sim(config)
    assert [(await sim.openai()).status_code for _ in range(5)] == [200] * 4 + [429]  # 4 in 2 s
    assert config.window_s(config.models[0]) == 2.0
    assert config.window_s(config.models[1]) == 0.0
    inherited = config.patched(
        {"short_window_s": 0.5, "models": [{"name": "sim-openai", "short_window_s": None}]}
    )
    assert inherited.window_s(inherited.models[0]) == 0.5


async def test_config_endpoint_changes_the_window(make_sim: Any) -> None:
    """POST /_sim/config sets the short window at run time, for the config or one model."""
    sim = make_sim(config_with("sim-openai", rpm=120))
    response = await sim.http.post("/_sim/config", json={"short_window_s": 0})
    assert response.status_code == 200 and response.json()["short_window_s"] == 0
    assert [(await sim.openai()).status_code for _ in range(10)] == [200] * 10
    await sim.http.post(
        "/_sim/config", json={"models": [{"name": "sim-openai", "short_window_s": 1.0}]}
    )
    assert [(await sim.openai()).status_code for _ in range(3)] == [200, 200, 429]


async def test_anthropic_reports_input_and_output_limits(make_sim: Any) -> None:
    """Anthropic's headers: input and output buckets, and their sum as the token limit."""
    sim = make_sim(
        config_with("sim-anthropic", rpm=50, itpm=30_000, otpm=8_000), wall=1_750_000_000.0
    )
    response = await sim.anthropic("Hello", max_tokens=100)
    usage = response.json()["usage"]
    prompt, output = usage["input_tokens"], usage["output_tokens"]
    headers = response.headers
    assert headers["anthropic-ratelimit-requests-limit"] == "50"
    assert headers["anthropic-ratelimit-requests-remaining"] == "49"
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "30000"
    assert headers["anthropic-ratelimit-input-tokens-remaining"] == str(30_000 - prompt)
    assert headers["anthropic-ratelimit-output-tokens-limit"] == "8000"
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == str(8_000 - output)
    assert headers["anthropic-ratelimit-tokens-limit"] == "38000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == str(38_000 - prompt - output)
    refill_at = math.ceil(1_750_000_000.0 + prompt / (30_000 / 60))  # full again
    expected = dt.datetime.fromtimestamp(refill_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert headers["anthropic-ratelimit-input-tokens-reset"] == expected


async def test_anthropic_output_limit_reserves_max_tokens(make_sim: Any) -> None:
    """OTPM takes max_tokens at admission and gives back what the answer did not use."""
    sim = make_sim(config_with("sim-anthropic", otpm=4_000, short_window_s=0))
    assert (await sim.anthropic(max_tokens=2_000)).status_code == 200
    assert (await sim.anthropic(max_tokens=2_000)).status_code == 200  # only ~3 were kept
    refused = await sim.anthropic(max_tokens=4_000)
    assert refused.status_code == 429
    error = refused.json()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    assert "of 4,000 output tokens per minute" in error["error"]["message"]
    assert refused.headers["retry-after"] == "1"
    assert sim.usage("sim-anthropic")["refused_by_limit"] == {"429:output_tokens": 1}


async def test_anthropic_input_limit_counts_the_prompt(make_sim: Any) -> None:
    """ITPM counts input tokens only; a prompt over one second's share waits for the window."""
    sim = make_sim(config_with("sim-anthropic", itpm=6_000))  # 100 input tokens a second
    long = "word " * 150
    first = await sim.anthropic(long, max_tokens=1_000)
    assert first.status_code == 200
    prompt = first.json()["usage"]["input_tokens"]
    refused = await sim.anthropic(max_tokens=1_000)
    assert refused.status_code == 429 and "input tokens per minute" in refused.text
    assert int(refused.headers["retry-after"]) == math.ceil(prompt / 100)
    sim.advance(prompt / 100)
    assert (await sim.anthropic(max_tokens=1_000)).status_code == 200


async def test_requests_per_day_reset_at_midnight_pacific_for_gemini(make_sim: Any) -> None:
    """Gemini's RPD resets at midnight in Los Angeles, not at midnight UTC."""
    zone = "America/Los_Angeles"
    sim = make_sim(config_with("sim-gemini", rpd=2), wall=at(zone, 2025, 3, 14, 16, 59, 30))
    assert [(await sim.gemini()).status_code for _ in range(2)] == [200, 200]
    sim.advance(60)  # 00:00:30 UTC: a new day in UTC, not in Los Angeles
    refused = await sim.gemini()
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    failure, retry = error["details"]
    assert failure["violations"][0]["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel"
    assert retry["@type"].endswith("RetryInfo") and retry["retryDelay"] == f"{7 * 3600 - 30}.000s"
    assert sim.usage("sim-gemini")["refused_by_limit"] == {"429:requests_per_day": 1}
    sim.wall.now = at(zone, 2025, 3, 15, 0, 0, 0)
    assert (await sim.gemini()).status_code == 200


async def test_requests_per_day_reset_at_midnight_utc_elsewhere(make_sim: Any) -> None:
    """OpenAI's RPD resets at midnight UTC; the 429 says requests per day."""
    sim = make_sim(config_with("sim-openai", rpd=1), wall=at("UTC", 2025, 6, 1, 23, 59, 0))
    assert (await sim.openai()).status_code == 200
    refused = await sim.openai()
    assert refused.status_code == 429 and "requests per day (RPD)" in refused.text
    assert refused.headers["retry-after"] == "60"
    sim.advance(60)
    assert (await sim.openai()).status_code == 200


def test_limiter_keeps_only_what_occupies() -> None:
    """A 300-request burst paced at RPM 600 leaves at most one second's share in the window."""
    clock = FakeClock(0.0)
    limiter = Limiter(clock)
    quota = Quota(rpm=600, window_s=1.0)
    admitted = 0
    for _ in range(300):
        while isinstance(outcome := limiter.admit("k", "m", quota, 1, 0), Refusal):
            clock.now += outcome.retry_after_s
        admitted += 1
    window = limiter._accounts[("k", "m")].meters["requests"].window
    assert isinstance(window, ShortWindow)
    assert admitted == 300 and len(window) <= 10
    assert clock.now == pytest.approx(29.0)


def test_retry_after_is_when_the_request_would_be_admitted() -> None:
    """The wait is the latest of every limit's: retrying then is admitted."""
    clock = FakeClock(0.0)
    limiter = Limiter(clock)
    quota = Quota(rpm=60, tpm=600, window_s=1.0)  # 1 request and 10 tokens a second
    assert not isinstance(limiter.admit("k", "m", quota, 30, 0), Refusal)  # holds tokens 3 s
    refusal = limiter.admit("k", "m", quota, 5, 0)
    assert isinstance(refusal, Refusal)
    assert refusal.kind == "tokens" and refusal.retry_after_s == pytest.approx(3.0)
    clock.now = 3.0
    assert not isinstance(limiter.admit("k", "m", quota, 5, 0), Refusal)
