"""``llmrelay report``: the table, the JSON document and the charts of a seeded week."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from analytics.history import DAY, WEEK, WEEK_START, history, seed_store
from llmrelay.analytics import Analytics, AnalyticsSettings, SqliteStore
from llmrelay.analytics.cli import moment
from llmrelay.cli import main

WINDOW = ["--since", "2025-06-09T00:00:00+00:00", "--until", "2025-06-16T00:00:00+00:00"]
DEPLOYMENT_KEYS = {
    "group", "deployment", "task", "requests", "answered", "failed", "calls", "errors",
    "error_rate", "latency_p50_s", "latency_p95_s", "latency_p99_s", "ttft_p50_s",
    "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens", "cost_micros",
    "cost_usd", "mean_cost_micros", "mean_cost_usd", "fallbacks", "cache_hits", "saved_micros",
    "saved_usd", "quality_mean", "quality_n",
}  # fmt: skip


def seeded(settings: AnalyticsSettings, *, start: float = WEEK_START) -> None:
    with Analytics.open(settings) as analytics:
        seed_store(analytics.store, history(WEEK, requests=600, start=start,
                                            tasks=("summarize", "chat")),
                   feedback_every=5)  # fmt: skip


def location(settings: AnalyticsSettings) -> str:
    return str(settings.database_url if settings.store == "postgres" else settings.path)


def test_json_has_the_documented_keys_and_the_stats(
    settings: AnalyticsSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """One object per (group, deployment) with the same figures ``Analytics.stats`` gives,
    from either store."""
    seeded(settings)
    assert main(["report", "--analytics", location(settings), *WINDOW, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"store", "since", "until", "since_unix", "until_unix", "task",
                             "group", "deployments", "totals"}  # fmt: skip
    assert (document["since"], document["until"]) == ("2025-06-09T00:00:00Z",
                                                      "2025-06-16T00:00:00Z")  # fmt: skip
    assert document["store"].startswith(settings.store)
    with Analytics.open(settings) as analytics:
        stats = analytics.stats(WEEK_START, WEEK_START + 7 * DAY, by=("group", "deployment"))
    assert [(d["group"], d["deployment"]) for d in document["deployments"]] == [
        ("default", "anthropic/claude-sonnet-4-5"), ("default", "gemini/gemini-2.5-flash"),
        ("default", "openai/gpt-4o"), ("default", "openai/gpt-4o-mini"),
        ("local", "ollama/llama3.1-8b"),
    ]  # fmt: skip
    for item, figures in zip(document["deployments"], stats, strict=True):
        assert set(item) == DEPLOYMENT_KEYS
        assert item["calls"] == figures.calls and item["cost_micros"] == figures.cost_micros
        assert item["latency_p95_s"] == figures.latency_p95_s
        assert item["quality_mean"] == figures.quality_mean
        assert item["cost_usd"] == figures.cost_micros / 1e6
    totals = document["totals"]
    assert totals["requests"] + sum(d["cache_hits"] for d in document["deployments"]) == 600
    assert totals["cost_usd"] == sum(d["cost_micros"] for d in document["deployments"]) / 1e6
    assert main(["report", "--analytics", location(settings), *WINDOW, "--json",
                 "--group", "local", "--task", "chat"]) == 0  # fmt: skip
    local = json.loads(capsys.readouterr().out)
    assert (local["group"], local["task"]) == ("local", "chat")
    assert [d["deployment"] for d in local["deployments"]] == ["ollama/llama3.1-8b"]


def test_the_table_shows_each_group_and_deployment(
    sqlite_settings: AnalyticsSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded(sqlite_settings)
    assert main(["report", "--analytics", str(sqlite_settings.path), *WINDOW]) == 0
    out = capsys.readouterr().out
    assert "llmrelay report: 2025-06-09T00:00:00Z to 2025-06-16T00:00:00Z" in out
    header = next(line for line in out.splitlines() if "deployment" in line)
    for column in ("group", "requests", "calls", "errors", "p50", "p95", "ttft p50", "cost",
                   "fallbacks", "cache hits (saved)", "quality"):  # fmt: skip
        assert column in header
    lines = {line.split("│")[2].strip(): line for line in out.splitlines() if "│" in line
             and line.count("│") > 3}  # fmt: skip
    assert {"anthropic/claude-sonnet-4-5", "ollama/llama3.1-8b", "openai/gpt-4o-mini"} <= set(lines)
    assert lines["ollama/llama3.1-8b"].split("│")[1].strip() == "local"
    assert " ms " in lines["gemini/gemini-2.5-flash"] and "(n=" in lines["openai/gpt-4o"]
    assert any(line.split("│")[1].strip() == "total" for line in out.splitlines() if "│" in line)


def test_png_charts_are_written(
    sqlite_settings: AnalyticsSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real PNG file, of a size only a drawn chart has."""
    seeded(sqlite_settings)
    target = tmp_path / "report.png"
    assert main(["report", "--analytics", str(sqlite_settings.path), *WINDOW, "--json",
                 "--png", str(target)]) == 0  # fmt: skip
    captured = capsys.readouterr()
    assert json.loads(captured.out)["deployments"]
    assert f"charts written to {target}" in captured.err
    data = target.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 50_000


def test_a_configuration_names_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``observe.analytics`` of the config is read (./llmrelay.yaml by default); the default
    window is the last 7 days."""
    database = tmp_path / "recorded.sqlite"
    seeded(AnalyticsSettings(path=str(database)), start=time.time() - 3 * DAY)
    config = tmp_path / "llmrelay.yaml"
    config.write_text(
        "models:\n  default:\n    primary: [{provider: openai, model: gpt-4o-mini}]\n"
        f"observe:\n  analytics: {{path: {database}}}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["store"] == f"sqlite:{database}"
    config.write_text("models:\n  default:\n    primary: [{provider: openai, model: x}]\n")
    assert main(["report", "--config", str(config)]) == 2
    assert "no observe.analytics section" in capsys.readouterr().err


def test_a_missing_or_empty_store_is_a_clear_error(
    sqlite_settings: AnalyticsSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each error names the store and what is (not) in it; nothing is created."""
    path = str(sqlite_settings.path)
    assert main(["report", "--analytics", path]) == 2
    assert f"llmrelay report: error: no analytics store at {path}" in capsys.readouterr().err
    assert not Path(path).exists()
    SqliteStore(path).close()
    assert main(["report", "--analytics", path]) == 2
    assert "has no requests recorded yet" in capsys.readouterr().err
    seeded(sqlite_settings)
    assert main(["report", "--analytics", path, "--since", "2w", "--task", "chat"]) == 2
    error = capsys.readouterr().err
    assert "no requests between" in error and "for task 'chat'" in error
    assert "(it holds 600 from 2025-06-09" in error
    assert main(["report", "--analytics", path, "--since", "yesterday"]) == 2
    assert "expected a duration such as 30m" in capsys.readouterr().err


def test_windows_are_durations_or_dates() -> None:
    now = 1_750_000_000.0
    assert moment("7d", now) == now - 7 * DAY
    assert moment("90m", now) == now - 5400
    assert moment("2w", now) == now - 14 * DAY
    assert moment("1.5h", now) == now - 5400
    assert moment("now", now) == now
    assert moment("2025-06-09T00:00:00+00:00", now) == WEEK_START


def test_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["report", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for option in ("--config", "--analytics", "--since", "--until", "--task", "--group",
                   "--json", "--png", "--bucket"):  # fmt: skip
        assert option in out
