"""``llmrelay demo``: its own world in this process, an existing gateway, its options."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.gateway_support import running_gateway
from llmrelay.errors import LLMRelayError
from llmrelay.gateway import demo
from llmrelay.gateway.demo import Summary, run_demo
from llmrelay.testing import SimulatorHandle


@pytest.fixture(scope="module")
def summary() -> Summary:
    """One in-process demo with a one-second burst, shared by the tests that read it."""
    return run_demo(seconds=1)


def test_every_phase_ran(summary: Summary) -> None:
    """Each of the five phases ran to its end and sent requests."""
    assert list(summary.phases) == ["burst", "outage", "oversized", "budget", "cache"]
    for phase in summary.phases.values():
        assert phase.state == "done", (phase.name, phase.note)
        assert phase.sent > 0


def test_burst_gets_no_429(summary: Summary) -> None:
    """The burst exceeds the primary's limit, yet every request is answered, none with 429."""
    burst = summary.phases["burst"]
    assert burst.sent == 6
    assert burst.statuses == {200: 6}
    assert summary.caller_429s == 0


def test_outage_is_answered_by_fallbacks(summary: Summary) -> None:
    """While the primary fails, the fallbacks answer every request."""
    outage = summary.phases["outage"]
    assert outage.answered == outage.sent
    assert "openai/gpt-4o-mini" not in outage.deployments


def test_oversized_prompt_goes_to_a_larger_window(summary: Summary) -> None:
    """A prompt larger than the primary's window is answered by another deployment."""
    oversized = summary.phases["oversized"]
    assert oversized.answered == 1
    assert "openai/gpt-4o-mini" not in oversized.deployments


def test_budget_runs_out(summary: Summary) -> None:
    """The tiny budget's key is refused, in an error that names the budget."""
    budget = summary.phases["budget"]
    assert budget.statuses[429] == 1
    assert "cannot afford this request" in budget.refusal
    assert "(key 'llmrelay-demo')" in budget.refusal


def test_cache_answers_repeats(summary: Summary) -> None:
    """The repeated temperature-0 request is answered from the cache after the first time."""
    assert summary.phases["cache"].cache_hits == 4


def test_figures_come_from_metrics(summary: Summary) -> None:
    """The final figures show fallbacks, cache hits, the budget refusal and spend."""
    figures = summary.figures
    assert figures is not None, summary.metrics_note
    assert sum(figures.fallbacks.values()) > 0
    assert figures.fallbacks.get("ContextWindowExceeded", 0) >= 1
    assert figures.cache_hits == 4
    assert figures.outcomes.get("BudgetExceeded") == 1
    assert figures.spend_usd > 0


def test_existing_gateway_skips_what_it_cannot_set_up(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """Against an open gateway with no simulator named, the outage and the budget are
    skipped with the reason, and the other phases run."""
    with running_gateway(simulator, tmp_path, master_key=None) as gateway:
        result = run_demo(url=gateway.url, seconds=0.5, rate=4)
    phases = result.phases
    assert phases["outage"].state == "skipped"
    assert "--simulator" in phases["outage"].note
    assert phases["budget"].state == "skipped"
    assert "no master key" in phases["budget"].note
    assert phases["burst"].state == "done"
    assert phases["burst"].statuses == {200: 2}
    assert phases["cache"].note.startswith("no hits: the gateway's cache is off")
    assert result.figures is not None


def test_existing_gateway_refuses_a_wrong_key(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """A gateway that refuses the key is an error naming --master-key, not a traceback."""
    with running_gateway(simulator, tmp_path) as gateway, \
            pytest.raises(LLMRelayError, match="--master-key"):  # fmt: skip
        run_demo(url=gateway.url, master_key="sk-wrong", seconds=0.5)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llmrelay demo", description=demo.DESCRIPTION)
    demo.configure(parser)
    return parser.parse_args(argv)


def test_options_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-positive --seconds is refused by name; --simulator needs --url."""
    with pytest.raises(SystemExit):
        _parse("--seconds", "0")
    assert "--seconds: must be a positive number, got 0" in capsys.readouterr().err
    with pytest.raises(LLMRelayError, match="--simulator: only with --url"):
        demo.run(_parse("--simulator", "http://127.0.0.1:1"))


def test_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--help describes the demo and each of its options."""
    with pytest.raises(SystemExit):
        _parse("--help")
    text = capsys.readouterr().out
    for option in ("--url", "--master-key", "--simulator", "--model", "--seconds", "--rate"):
        assert option in text
    assert "burst" in text
