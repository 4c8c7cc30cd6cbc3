"""The simulator caches prompts and bills them as the providers do, to the micro-dollar.

Every test drives the Simulator ASGI app in-process through the official SDKs, on a fake
clock that only the test moves. Prompts are built from ``words(n)``: exactly n tokens.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import types as genai_types

from llmrelay.errors import ConfigError
from llmrelay.providers import Deployment, HttpClient, default_registry
from llmrelay.simulator import Simulator
from llmrelay.simulator.caching import PromptCache
from llmrelay.simulator.config import ModelSpec, validate_config
from llmrelay.simulator.engine import Engine, SimMessage, SimRequest
from llmrelay.testing import SimulatorHandle
from llmrelay.types import (
    CacheControl,
    ChatRequest,
    Message,
    StreamAccumulator,
    TextPart,
    Usage,
)

KEY = "sk-cache"
MODELS: list[dict[str, Any]] = [
    {
        "name": "sim-openai",
        "api": "openai",
        "context_window": 200_000,
        "max_output_tokens": 4096,
        "input_price_per_mtok": 0.15,
        "output_price_per_mtok": 0.60,
        "cached_input_price_per_mtok": 0.075,
    },
    {
        "name": "sim-anthropic",
        "api": "anthropic",
        "context_window": 200_000,
        "max_output_tokens": 4096,
        "min_cacheable_tokens": 1024,
        "input_price_per_mtok": 3.00,
        "output_price_per_mtok": 15.00,
        "cached_input_price_per_mtok": 0.30,
        "cache_write_price_per_mtok": 3.75,
    },
    {
        "name": "gemini-2.5-flash",
        "api": "gemini",
        "context_window": 1_000_000,
        "max_output_tokens": 4096,
        "input_price_per_mtok": 0.30,
        "output_price_per_mtok": 2.50,
        "cached_input_price_per_mtok": 0.075,
        "long_context": {
            "above": 2500,
            "input_price_per_mtok": 0.60,
            "output_price_per_mtok": 5.00,
            "cached_input_price_per_mtok": 0.15,
        },
    },
    {"name": "sim-ollama", "api": "ollama", "context_window": 16000, "max_output_tokens": 4096},
]


def words(n: int) -> str:
    """Text of exactly ``n`` cl100k tokens."""
    return "word" + " word" * (n - 1)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Sim:
    """A simulator app on a fake clock, and the three SDKs pointed at it."""

    def __init__(self, **model_fields: dict[str, Any]) -> None:
        models = [{**m, **model_fields.get(m["name"], {})} for m in MODELS]
        self.clock = FakeClock()
        self.app = Simulator(validate_config({"models": models}, source="test"), clock=self.clock)
        self.http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app))
        self.openai = openai.AsyncOpenAI(
            base_url="http://sim/v1", api_key=KEY, http_client=self.http, max_retries=0
        )
        self.anthropic = anthropic.AsyncAnthropic(
            base_url="http://sim", api_key=KEY, http_client=self.http, max_retries=0
        )
        self.genai = genai.Client(
            api_key=KEY,
            http_options=genai_types.HttpOptions(
                base_url="http://sim", httpx_async_client=self.http
            ),
        )

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    def ledger(self, model: str) -> dict[str, Any]:
        return dict(self.app.ledger.report()["keys"][KEY][model])

    async def chat(self, system: str, user: str) -> openai.types.CompletionUsage:
        response = await self.openai.chat.completions.create(
            model="sim-openai",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        )
        assert response.usage is not None
        return response.usage

    async def claude(
        self, system: list[dict[str, Any]], user: str | list[dict[str, Any]] = "q1"
    ) -> anthropic.types.Usage:
        messages: Any = [{"role": "user", "content": user}]  # plain dicts, as callers write
        blocks: Any = system
        message = await self.anthropic.messages.create(
            model="sim-anthropic", max_tokens=100, system=blocks, messages=messages
        )
        return message.usage


def cached_system(n: int, **control: str) -> list[dict[str, Any]]:
    """An Anthropic system prompt of one ``n``-token block marked as a cache breakpoint."""
    return [{"type": "text", "text": words(n), "cache_control": {"type": "ephemeral", **control}}]


SYSTEM_2000: Any = cached_system(2000)  # plain dicts, as callers write them


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    made = Sim()
    yield made
    await made.http.aclose()


# --- OpenAI: automatic prefix caching ----------------------------------------------------


async def test_openai_second_call_reads_the_shared_prefix_in_128_token_steps(sim: Sim) -> None:
    """The shared 2006-token prefix (framing + system + the user's role) reads 1920 tokens:
    1024 and the whole 128-token steps after it."""
    first = await sim.chat(words(2000), "first question")
    second = await sim.chat(words(2000), "second question")
    assert first.prompt_tokens == second.prompt_tokens == 2011
    assert first.prompt_tokens_details is not None and second.prompt_tokens_details is not None
    assert first.prompt_tokens_details.cached_tokens == 0
    assert second.prompt_tokens_details.cached_tokens == 1024 + 7 * 128


async def test_openai_never_caches_below_1024_tokens(sim: Sim) -> None:
    """A repeated prompt of fewer than 1024 tokens is never read from the cache."""
    for _ in range(3):
        usage = await sim.chat(words(1000), "same question")
        assert usage.prompt_tokens == 1011
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 0


async def test_openai_different_prefix_does_not_hit(sim: Sim) -> None:
    """Caching is by exact prefix: a prompt differing in its first tokens reads nothing."""
    await sim.chat(words(2000), "q")
    usage = await sim.chat("Preamble. " + words(2000), "q")
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0


async def test_openai_prefix_expires_ttl_after_its_last_use(sim: Sim) -> None:
    """An entry lives 300 s after its last use: each hit renews it; 300 s idle drops it."""
    await sim.chat(words(2000), "q")
    sim.advance(299)
    hit = await sim.chat(words(2000), "q")
    sim.advance(299)
    renewed = await sim.chat(words(2000), "q")
    sim.advance(300)
    expired = await sim.chat(words(2000), "q")
    cached = [u.prompt_tokens_details.cached_tokens for u in (hit, renewed, expired)]  # type: ignore[union-attr]  # checked non-None by the values
    assert cached == [1920, 1920, 0]


async def test_openai_cache_is_per_api_key(sim: Sim) -> None:
    """Another key does not read what one key cached."""
    await sim.chat(words(2000), "q")
    other = openai.AsyncOpenAI(base_url="http://sim/v1", api_key="sk-other", http_client=sim.http)
    response = await other.chat.completions.create(
        model="sim-openai",
        messages=[{"role": "system", "content": words(2000)}, {"role": "user", "content": "q"}],
    )
    assert response.usage is not None and response.usage.prompt_tokens_details is not None
    assert response.usage.prompt_tokens_details.cached_tokens == 0


async def test_openai_stream_reports_usage_only_with_include_usage(sim: Sim) -> None:
    """Without stream_options.include_usage no chunk carries usage; with it, the last
    chunk does, cached tokens included."""
    messages: Any = [{"role": "system", "content": words(2000)}, {"role": "user", "content": "q"}]
    plain = await sim.openai.chat.completions.create(
        model="sim-openai", messages=messages, stream=True
    )
    assert all(chunk.usage is None for chunk in [c async for c in plain])
    counted = await sim.openai.chat.completions.create(
        model="sim-openai", messages=messages, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in counted]
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1].usage
    assert last is not None and last.prompt_tokens_details is not None
    assert last.prompt_tokens_details.cached_tokens == 1920


def test_prefix_is_usable_once_the_first_answer_began() -> None:
    """A prompt is cached when its answer starts (time to first token later), not before:
    a request arriving in between misses."""
    clock = FakeClock()
    cache = PromptCache(clock)
    request = SimRequest(
        model="m", messages=[SimMessage("system", words(2000)), SimMessage("user", "q")]
    )
    prompt = Engine().prompt(request)
    options: dict[str, Any] = {"minimum": 1024, "ttl": 300.0, "delay": 0.5}
    assert cache.prefixes(KEY, "m", prompt, **options).read == 0
    clock.now += 0.4
    assert cache.prefixes(KEY, "m", prompt, **options).read == 0
    clock.now += 0.1
    assert cache.prefixes(KEY, "m", prompt, **options).read == 1920


# --- Anthropic: explicit breakpoints -----------------------------------------------------


async def test_anthropic_first_call_writes_second_reads(sim: Sim) -> None:
    """The first call writes the 2000-token system block, the second reads it; input_tokens
    counts only what follows the breakpoint."""
    first = await sim.claude(cached_system(2000))
    second = await sim.claude(cached_system(2000))
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (2000, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, 2000)
    assert first.input_tokens == second.input_tokens == 3 + 2 + 3  # framing, "q1", reply
    assert first.cache_creation is not None
    assert first.cache_creation.ephemeral_5m_input_tokens == 2000
    assert first.cache_creation.ephemeral_1h_input_tokens == 0


async def test_anthropic_growing_conversation_reads_then_writes_the_rest(sim: Sim) -> None:
    """A later breakpoint reads the cached system block and writes only what follows it."""
    await sim.claude(cached_system(2000))
    turn = [{"type": "text", "text": words(500), "cache_control": {"type": "ephemeral"}}]
    usage = await sim.claude(cached_system(2000), turn)
    assert usage.cache_read_input_tokens == 2000
    assert usage.cache_creation_input_tokens == 3 + 500  # the message's framing and text
    assert usage.input_tokens == 3  # the reply's priming only


async def test_anthropic_five_breakpoints_are_refused(sim: Sim) -> None:
    """More than 4 blocks with cache_control: Anthropic's 400 invalid_request_error."""
    system = [
        {"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}}
        for i in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError) as caught:
        await sim.claude(system)
    assert caught.value.status_code == 400
    assert "A maximum of 4 blocks with cache_control may be provided. Found 5." in str(caught.value)
    assert sim.app.ledger.report()["totals"]["requests"] == 0


async def test_anthropic_one_hour_ttl_is_refused_clearly(sim: Sim) -> None:
    """ttl "1h" is a 400 that says why: one count of written tokens cannot bill two prices."""
    with pytest.raises(anthropic.BadRequestError, match="5-minute TTL"):
        await sim.claude(cached_system(2000, ttl="1h"))


async def test_anthropic_prefix_below_the_minimum_is_never_cached(sim: Sim) -> None:
    """A breakpoint whose prefix is under the model's minimum neither writes nor reads."""
    for _ in range(2):
        usage = await sim.claude(cached_system(1000))
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
        assert usage.input_tokens == 1000 + 8


async def test_anthropic_entry_expires_five_minutes_after_its_last_read(sim: Sim) -> None:
    """Each read renews the 5-minute TTL; after 300 idle seconds the prefix is written again."""
    await sim.claude(cached_system(2000))
    sim.advance(299)
    assert (await sim.claude(cached_system(2000))).cache_read_input_tokens == 2000
    sim.advance(299)
    assert (await sim.claude(cached_system(2000))).cache_read_input_tokens == 2000
    sim.advance(300)
    expired = await sim.claude(cached_system(2000))
    assert (expired.cache_creation_input_tokens, expired.cache_read_input_tokens) == (2000, 0)


async def test_anthropic_stream_reports_cache_usage(sim: Sim) -> None:
    """message_start and message_delta carry the cache figures; the SDK's final message
    has them."""
    await sim.claude(cached_system(2000))
    async with sim.anthropic.messages.stream(
        model="sim-anthropic",
        max_tokens=100,
        system=SYSTEM_2000,
        messages=[{"role": "user", "content": "q1"}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 2000
    assert final.usage.input_tokens == 8


async def test_anthropic_top_level_cache_control_marks_the_last_block(sim: Sim) -> None:
    """Automatic caching: a top-level cache_control is a breakpoint on the last block, so
    a conversation that grows reads what the previous turn wrote."""
    turn = {"role": "user", "content": words(2000)}
    body: dict[str, Any] = {
        "model": "sim-anthropic",
        "max_tokens": 10,
        "cache_control": {"type": "ephemeral"},
        "messages": [turn],
    }
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    first = (await sim.http.post("http://sim/v1/messages", json=body, headers=headers)).json()
    assert first["usage"]["cache_creation_input_tokens"] == 3 + 2000
    grown = [turn, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "q2"}]
    body["messages"] = grown
    second = (await sim.http.post("http://sim/v1/messages", json=body, headers=headers)).json()
    usage = second["usage"]
    assert usage["cache_read_input_tokens"] == 3 + 2000
    assert usage["cache_creation_input_tokens"] == (3 + 1) + (3 + 2)  # "ok", "q2" and framing
    assert usage["input_tokens"] == 3


async def test_anthropic_caching_can_be_turned_off() -> None:
    """prompt_caching: false ignores the breakpoints: everything is plain input."""
    sim = Sim(**{"sim-anthropic": {"prompt_caching": False}})
    for _ in range(2):
        usage = await sim.claude(cached_system(2000))
        assert (usage.cache_creation_input_tokens, usage.cache_read_input_tokens) == (0, 0)
        assert usage.input_tokens == 2008
    await sim.http.aclose()


# --- Gemini: implicit caching ------------------------------------------------------------


async def test_gemini_repeated_prefix_is_an_implicit_hit(sim: Sim) -> None:
    """Gemini 2.5 Flash (minimum 2048) reports the shared prefix as cachedContentTokenCount."""
    config = genai_types.GenerateContentConfig(system_instruction=words(2000))
    first = await sim.genai.aio.models.generate_content(
        model="gemini-2.5-flash", contents="first question", config=config
    )
    assert first.usage_metadata is not None
    assert first.usage_metadata.cached_content_token_count is None  # absent, as Gemini does
    long = genai_types.GenerateContentConfig(system_instruction=words(2200))
    for contents in ("first question", "second question"):
        response = await sim.genai.aio.models.generate_content(
            model="gemini-2.5-flash", contents=contents, config=long
        )
    assert response.usage_metadata is not None
    assert response.usage_metadata.prompt_token_count == 2200 + 3 + 2 + 3
    assert response.usage_metadata.cached_content_token_count == 2048 + 128


# --- billing -----------------------------------------------------------------------------


async def test_ledger_bills_a_mixed_sequence_to_the_micro_dollar(sim: Sim) -> None:
    """Each call is billed at its own rates per kind of token and rounded up to a whole
    micro-dollar; the ledger adds the calls up. USD per million tokens x tokens is
    micro-dollars, so each figure below is the call's arithmetic, then its ceiling."""
    p = Fraction  # exact decimal prices
    await sim.chat(words(2000), "first question")  # 2011 in, 4 out ("Echo: first question")
    await sim.chat(words(2000), "second question")  # 1920 of them cached
    await sim.claude(cached_system(2000))  # 2000 written, 8 plain, 4 out ("Echo: q1")
    await sim.claude(cached_system(2000))  # 2000 read
    config = genai_types.GenerateContentConfig(system_instruction=words(3000))
    for _ in range(2):  # 3008 tokens > 2500: every token at the long-context rates; 4 out
        await sim.genai.aio.models.generate_content(
            model="gemini-2.5-flash", contents="q1", config=config
        )

    openai_calls = [
        math.ceil(2011 * p("0.15") + 4 * p("0.60")),
        math.ceil((2011 - 1920) * p("0.15") + 1920 * p("0.075") + 4 * p("0.60")),
    ]
    anthropic_calls = [
        math.ceil(8 * p("3.00") + 2000 * p("3.75") + 4 * p("15.00")),
        math.ceil(8 * p("3.00") + 2000 * p("0.30") + 4 * p("15.00")),
    ]
    gemini_calls = [
        math.ceil(3008 * p("0.60") + 4 * p("5.00")),
        math.ceil((3008 - 2944) * p("0.60") + 2944 * p("0.15") + 4 * p("5.00")),
    ]
    assert openai_calls == [305, 161]
    assert anthropic_calls == [7584, 684]
    assert gemini_calls == [1825, 500]

    assert sim.ledger("sim-openai") == {
        "requests": 2,
        "input_tokens": 2 * 2011,
        "cached_input_tokens": 1920,
        "cache_write_input_tokens": 0,
        "output_tokens": 8,
        "cost_micros": sum(openai_calls),
        "cost_usd": sum(openai_calls) / 1_000_000,
        "refused": {},
        "refused_by_limit": {},
    }
    claude = sim.ledger("sim-anthropic")
    assert (claude["input_tokens"], claude["cached_input_tokens"]) == (2 * 2008, 2000)
    assert (claude["cache_write_input_tokens"], claude["cost_micros"]) == (2000, 7584 + 684)
    assert sim.ledger("gemini-2.5-flash")["cost_micros"] == sum(gemini_calls)
    totals = sim.app.ledger.report()["totals"]
    assert totals["cost_micros"] == sum(openai_calls + anthropic_calls + gemini_calls)


async def test_stream_cut_by_a_fault_is_billed_once_with_its_cache_write() -> None:
    """A stream cut short was processed: billed once, its whole prompt (the cache write
    included) and only the output tokens delivered before the cut."""
    sim = Sim(**{"sim-anthropic": {"faults": {"stream_cut": 1.0}}})
    stream = await sim.anthropic.messages.create(
        model="sim-anthropic",
        max_tokens=100,
        system=SYSTEM_2000,
        messages=[{"role": "user", "content": "q1"}],
        stream=True,
    )
    events = [event.type async for event in stream]
    assert events[0] == "message_start" and "message_stop" not in events
    entry = sim.ledger("sim-anthropic")
    assert entry["requests"] == 1 and entry["refused"] == {"fault:stream_cut": 1}
    assert (entry["input_tokens"], entry["cache_write_input_tokens"]) == (2008, 2000)
    delivered = entry["output_tokens"]
    assert delivered == 2  # half of the 4 tokens of "Echo: q1"
    p = Fraction
    assert entry["cost_micros"] == math.ceil(8 * p("3.00") + 2000 * p("3.75") + 2 * p("15.00"))
    await sim.http.aclose()


async def test_local_models_neither_cache_nor_cost(sim: Sim) -> None:
    """An Ollama model reports no cached tokens and bills nothing."""
    for _ in range(2):
        response = await sim.openai.chat.completions.create(
            model="sim-ollama",
            messages=[{"role": "system", "content": words(2000)}, {"role": "user", "content": "q"}],
        )
        assert response.usage is not None and response.usage.prompt_tokens_details is not None
        assert response.usage.prompt_tokens_details.cached_tokens == 0
    assert sim.ledger("sim-ollama")["cost_micros"] == 0


# --- configuration -----------------------------------------------------------------------


def test_documented_minimums_are_the_defaults() -> None:
    """Each API's and model family's minimum cacheable prompt, from the providers' docs."""

    def spec(name: str, api: str) -> ModelSpec:
        return ModelSpec.model_validate(
            {"name": name, "api": api, "context_window": 1000, "max_output_tokens": 100}
        )

    assert spec("gpt-4o-mini", "openai").min_cacheable == 1024
    assert spec("claude-sonnet-4-5", "anthropic").min_cacheable == 1024
    assert spec("claude-opus-4-20250514", "anthropic").min_cacheable == 1024
    assert spec("claude-3-5-haiku-20241022", "anthropic").min_cacheable == 2048
    assert spec("claude-haiku-4-5", "anthropic").min_cacheable == 4096
    assert spec("claude-opus-4-5", "anthropic").min_cacheable == 4096
    assert spec("gemini-2.5-flash", "gemini").min_cacheable == 2048
    assert spec("gemini-2.5-pro", "gemini").min_cacheable == 4096
    assert not spec("gemini-2.0-flash", "gemini").caches_prompts
    assert not spec("llama3.2", "ollama").caches_prompts
    assert spec("gpt-4o", "openai").cache_ttl == 300.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"api": "openai", "cache_write_price_per_mtok": 1.0}, "writes its prompt cache for free"),
        ({"api": "ollama", "input_price_per_mtok": 1.0}, "has no price"),
        ({"api": "vllm", "prompt_caching": True}, "has no prompt caching"),
        ({"api": "openai", "min_cacheable_tokens": 0}, "min_cacheable_tokens"),
        ({"api": "openai", "cache_ttl_s": -1}, "cache_ttl_s"),
        ({"api": "gemini", "long_context": {"input_price_per_mtok": 1}}, "long_context.above"),
    ],
)
def test_caching_and_price_fields_are_validated(fields: dict[str, Any], message: str) -> None:
    """A wrong price or caching field is a ConfigError naming it."""
    model = {"name": "m", "context_window": 1000, "max_output_tokens": 100, **fields}
    with pytest.raises(ConfigError, match=message):
        validate_config({"models": [model]}, source="test.yaml")


# --- the router's adapters against the ledger --------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
@pytest.mark.parametrize(
    ("provider", "model", "path"),
    [
        ("openai", "sim-openai", "/v1"),
        ("anthropic", "sim-anthropic", ""),
        ("gemini", "gemini-2.5-flash", ""),
    ],
)
async def test_adapters_usage_priced_by_the_catalog_rule_equals_the_ledger(
    simulator: SimulatorHandle, provider: str, model: str, path: str, stream: bool
) -> None:
    """llmrelay's own adapters read the cached usage the simulator served, and pricing it
    with catalog.Price gives the ledger's cost to the micro-dollar, call by call."""
    simulator.configure({"models": MODELS})
    spec = ModelSpec.model_validate(next(m for m in MODELS if m["name"] == model))
    long = TextPart(text=words(3000), cache_control=CacheControl())
    request = ChatRequest(
        messages=[Message(role="system", content=[long]), Message(role="user", content="q1")]
    )
    deployment = Deployment(
        provider=provider, model=model, api_key="sk-adapter", base_url=simulator.url + path
    )
    async with HttpClient() as http:
        adapter = default_registry().create(deployment, http)
        usages: list[Usage] = []
        for _ in range(2):
            if stream:
                acc = StreamAccumulator()
                async for event in adapter.stream(request):
                    acc.add(event)
                usages.append(acc.response().usage)
            else:
                usages.append((await adapter.send(request)).usage)
    assert usages[1].cached_input_tokens > 0
    entry = simulator.usage("sk-adapter", model)
    assert entry["input_tokens"] == sum(u.input_tokens for u in usages)
    assert entry["cached_input_tokens"] == sum(u.cached_input_tokens for u in usages)
    assert entry["cache_write_input_tokens"] == sum(u.cache_write_input_tokens for u in usages)
    assert entry["output_tokens"] == sum(u.output_tokens for u in usages)
    assert entry["cost_micros"] == sum(spec.price().micros(u) for u in usages)
