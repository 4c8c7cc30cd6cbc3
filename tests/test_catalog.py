"""The shipped model catalog and user overrides."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from llmrelay.catalog import Catalog
from llmrelay.errors import ConfigError
from llmrelay.types import Usage


def test_shipped_catalog_is_complete() -> None:
    """Hosted models have a window, an output limit, prices and a tier; local ones no price."""
    catalog = Catalog.default()
    assert catalog.read == "2026-11-22"
    assert {"openai", "anthropic", "gemini", "ollama"} <= set(catalog.sources)
    assert len(catalog) >= 12
    for info in catalog:
        assert 0 < info.max_output_tokens <= info.context_window
        if info.provider == "ollama":
            assert info.price is None and not info.limits, info.model
            assert info.cost_micros(Usage(input_tokens=10**6, output_tokens=10**6)) == 0
        else:
            assert info.price is not None and info.price.input > 0 and info.price.output > 0
            assert info.limits, info.model


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("llama3.1", 131_072),
        ("llama3.1:70b", 131_072),
        ("llama3.2:1b", 131_072),
        ("llama3.3:70b", 131_072),
        ("qwen2.5:72b", 32_768),
        ("qwen3:8b", 40_960),
        ("mistral:7b", 32_768),
        ("mistral-nemo", 131_072),
        ("gemma2:27b", 8_192),
        ("gemma3:12b", 131_072),
        ("gemma3:1b", 32_768),
    ],
)
def test_local_models_have_ollamas_windows(model: str, window: int) -> None:
    """Ollama's tags are in the catalog with the window each model ships with."""
    info = Catalog.default().require("ollama", model)
    assert (info.provider, info.model, info.context_window) == ("ollama", model, window)


def test_latest_tag_is_the_bare_name() -> None:
    """name:latest finds the entry name; other lookups stay exact."""
    catalog = Catalog.default()
    assert catalog.get("ollama", "llama3.2:latest") == catalog.get("ollama", "llama3.2")
    assert catalog.get("ollama", "gemma3:latest") is catalog.get("ollama", "gemma3")
    assert "ollama/qwen3:latest" in catalog and "ollama/qwen3" in catalog
    assert catalog.get("ollama", "llama3.2:8b") is None  # no such tag: not guessed
    assert catalog.get("openai", "llama3.2") is None  # the provider is part of the key
    assert catalog.get("ollama", "llama3.2-latest") is None
    assert 42 not in catalog


def test_latest_tag_works_for_extended_entries(tmp_path: Path) -> None:
    """An entry added from config or a loaded file answers to its :latest tag too."""
    extended = Catalog.default().extend(
        {"ollama/my-model": {"context_window": 4096, "max_output_tokens": 1024}}
    )
    assert extended.require("ollama", "my-model:latest").context_window == 4096
    path = tmp_path / "models.yaml"
    path.write_text(
        'read: "2026-01-01"\nmodels:\n  "ollama/phi4": {context_window: 16384, '
        "max_output_tokens: 16384}\n"
    )
    loaded = Catalog.load(path)
    assert len(loaded) == 1
    assert loaded.require("ollama", "phi4:latest").context_window == 16384


def test_tier_limits_become_scheduler_limits() -> None:
    """A tier's figures, the margin policy and the provider's day-reset zone make Limits."""
    catalog = Catalog.default()
    limits = catalog.limits("gemini", "gemini-2.5-flash", "free", safety_margin=1)
    assert (limits.rpm, limits.tpm, limits.rpd) == (10, 250_000, 250)
    assert limits.safety_margin == 1 and limits.day_reset_tz == "America/Los_Angeles"
    anthropic = catalog.limits("anthropic", "claude-sonnet-4-5", "tier1")
    assert (anthropic.rpm, anthropic.itpm, anthropic.otpm, anthropic.tpm) == (
        50,
        30_000,
        8_000,
        None,
    )


def test_cost_prices_each_kind_of_token_at_its_own_rate() -> None:
    """Fresh input, cache reads, cache writes and output each at their own price."""
    mini = Catalog.default().require("openai", "gpt-4o-mini")  # 0.15 / 0.60, cached 0.075
    assert mini.cost_micros(Usage(input_tokens=1_000_000)) == 150_000
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000, cached_input_tokens=500_000)
    assert mini.cost_micros(usage) == 75_000 + 37_500 + 600_000
    sonnet = Catalog.default().require("anthropic", "claude-sonnet-4-5")  # 3 / 15 / 0.30 / 3.75
    usage = Usage(input_tokens=3_000, output_tokens=100, cached_input_tokens=1_000,
                  cache_write_input_tokens=1_500)  # fmt: skip
    assert sonnet.cost_micros(usage) == 500 * 3 + 1_000 * 0.3 + 1_500 * 3.75 + 100 * 15


def test_a_long_prompt_bills_every_token_at_the_long_context_rates() -> None:
    pro = Catalog.default().require("gemini", "gemini-2.5-pro")
    at_threshold = Usage(input_tokens=200_000, output_tokens=1_000)
    assert pro.cost_micros(at_threshold) == 200_000 * 1.25 + 1_000 * 10
    above = Usage(input_tokens=200_001, output_tokens=1_000, cached_input_tokens=100_000)
    assert pro.cost_micros(above) == math.ceil(100_001 * 2.5 + 100_000 * 0.625 + 1_000 * 15)


def test_costs_are_whole_micro_dollars_rounded_up_without_float_drift() -> None:
    mini = Catalog.default().require("openai", "gpt-4o-mini")
    one = Usage(input_tokens=1)  # 0.15 micro-dollars
    assert mini.cost_micros(one) == 1
    assert mini.cost_micros(Usage(input_tokens=7, output_tokens=3)) == 3  # 1.05 + 1.8 = 2.85
    assert sum(mini.cost_micros(Usage(input_tokens=1_000)) for _ in range(10_000)) == 1_500_000


def test_a_negative_price_names_the_field() -> None:
    with pytest.raises(ConfigError, match="cache_write"):
        Catalog.default().extend({"openai/gpt-4o": {"price": {"cache_write": -1}}})


def test_extend_overrides_fields_and_adds_models() -> None:
    """Overrides replace single fields of known models and add new ones; the original is kept."""
    base = Catalog.default()
    extended = base.extend(
        {
            "openai/gpt-4o-mini": {"limits": {"tier1": {"rpm": 7}}},
            "vllm/llama-3.1-8b": {"context_window": 8192, "max_output_tokens": 2048},
        }
    )
    assert extended.limits("openai", "gpt-4o-mini", "tier1").rpm == 7
    assert extended.limits("openai", "gpt-4o-mini", "tier1").tpm == 200_000
    assert extended.limits("openai", "gpt-4.1-mini", "tier1").rpm == 500  # shared figures intact
    assert base.limits("openai", "gpt-4o-mini", "tier1").rpm == 500
    assert extended.require("vllm", "llama-3.1-8b").context_window == 8192


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            {"openai/x": {"context_window": "big"}},
            "llmrelay.yaml: Expected `int`, got `str` - at `catalog.openai/x.context_window`",
        ),
        ({"openai/gpt-4o": {"limits": {"tier1": {"rpmm": 3}}}}, "unknown field `rpmm`"),
        ({"gpt-4o": {"context_window": 1, "max_output_tokens": 1}}, "expected 'provider/model'"),
        ({"openai/gpt-4o": 5}, "catalog.openai/gpt-4o: expected a mapping"),
    ],
)
def test_bad_overrides_name_the_file_and_key(entries: dict[str, object], message: str) -> None:
    """A typo in a catalog override is a ConfigError naming the file and the key."""
    with pytest.raises(ConfigError, match=r"llmrelay\.yaml") as caught:
        Catalog.default().extend(entries, source="llmrelay.yaml")
    assert message in str(caught.value)


def test_unknown_model_and_tier_say_what_is_known(tmp_path: Path) -> None:
    """Asking for what is not there names the alternatives; a broken file names the file."""
    catalog = Catalog.default()
    with pytest.raises(ConfigError, match="not in the catalog"):
        catalog.require("openai", "gpt-9")
    with pytest.raises(ConfigError, match=r"known: tier1, tier2, tier3, tier4, tier5"):
        catalog.limits("openai", "gpt-4o", "free")
    broken = tmp_path / "models.yaml"
    broken.write_text("read: x\nmodels: {a/b: {context_window: 1}}\n")
    with pytest.raises(ConfigError, match=str(broken)):
        Catalog.load(broken)
