"""Token estimators against cl100k on the shipped English, code, JSON and CJK samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrelay.tokens import (
    TOKENS_PER_IMAGE,
    Calibration,
    EstimatorRegistry,
    HeuristicEstimator,
    TiktokenEstimator,
)
from llmrelay.types import ChatRequest, ImagePart, Message, TextPart, ToolSpec

DATA = Path(__file__).parent / "data" / "tokens"
SAMPLES = {
    "english": DATA / "english.txt",
    "code": Path(__file__).parents[1] / "src" / "llmrelay" / "providers" / "base.py",
    "json": DATA / "data.json",
    "cjk": DATA / "cjk.txt",
}
# The largest error each estimator may show per sample (the report prints the actual one).
BOUNDS = {"tiktoken": 0.0, "heuristic": 0.08, "chars/4": 1.0}


@pytest.fixture(scope="module")
def reference() -> TiktokenEstimator:
    return TiktokenEstimator()


def test_error_report(reference: TiktokenEstimator, capsys: pytest.CaptureFixture[str]) -> None:
    """Each estimator stays within its bound of cl100k on every sample; the table is printed."""
    heuristic = HeuristicEstimator()
    rows = []
    for name, path in SAMPLES.items():
        text = path.read_text(encoding="utf-8")
        exact = reference.count_text(text)
        guess = heuristic.count_text(text)
        naive = round(len(text) / 4)
        for estimator, value in (("tiktoken", exact), ("heuristic", guess), ("chars/4", naive)):
            error = (value - exact) / exact
            rows.append((name, estimator, exact, value, error))
            assert abs(error) <= BOUNDS[estimator], (name, estimator, value, exact)
    with capsys.disabled():
        print("\nsample    estimator  cl100k  estimate   error")
        for name, estimator, exact, value, error in rows:
            print(f"{name:<9} {estimator:<10} {exact:>6} {value:>9} {error:>+7.1%}")


def test_chars_per_token_differ_by_kind(reference: TiktokenEstimator) -> None:
    """CJK packs about one character per token, JSON about three, prose above four."""
    ratio = {
        name: len(text) / reference.count_text(text)
        for name, text in ((n, p.read_text(encoding="utf-8")) for n, p in SAMPLES.items())
    }
    assert ratio["cjk"] < 1.3 < ratio["json"] < 3.6 < ratio["english"]


def test_request_counts_messages_tools_and_images(reference: TiktokenEstimator) -> None:
    """A request costs its texts plus per-message, per-tool and per-image overheads."""
    text_only = ChatRequest(messages=[Message(role="user", content="hello there")])
    base = reference.count_request(text_only)
    assert base == reference.count_text("hello there") + 4 + 3
    with_system = ChatRequest(messages=text_only.messages, system="be brief")
    assert reference.count_request(with_system) == base + 4 + reference.count_text("be brief")
    tool = ToolSpec(name="get_weather", parameters={"type": "object", "properties": {}})
    with_tool = ChatRequest(messages=text_only.messages, tools=[tool])
    assert reference.count_request(with_tool) > base + 8
    image = Message(
        role="user",
        content=[TextPart("hello there"), ImagePart(url="data:image/png;base64,AAAA")],
    )
    assert reference.count_request(ChatRequest(messages=[image])) == base + TOKENS_PER_IMAGE


def test_heuristic_handles_edge_text() -> None:
    """Empty text is zero tokens; any other text at least one."""
    heuristic = HeuristicEstimator()
    assert heuristic.count_text("") == 0
    assert heuristic.count_text(" ") == 1
    assert heuristic.count_text("🙂") == 1


def test_registry_per_provider() -> None:
    """A provider gets its registered estimator; others share the default."""
    heuristic = HeuristicEstimator()
    registry = EstimatorRegistry({"anthropic": heuristic})
    assert registry.for_provider("anthropic") is heuristic
    assert isinstance(registry.for_provider("openai"), TiktokenEstimator)
    assert registry.for_provider("gemini") is registry.for_provider("openai")


def test_calibration_waits_for_enough_samples() -> None:
    """One answer never sets the ratio: a one-word call must not shrink every reservation."""
    calibration = Calibration(min_samples=3)
    calibration.observe("d", 100, 88)
    calibration.observe("d", 100, 88)
    assert calibration.adjust("d", 1_000) == 1_000
    calibration.observe("d", 100, 124)
    assert calibration.adjust("d", 1_000) == 1_000  # (88 + 88 + 124) / 300
    assert calibration.ratio("other") == 1.0


def test_calibration_is_a_token_weighted_average_and_bounded() -> None:
    """Long prompts weigh more than short ones; outliers are clipped to 0.5 to 3 times."""
    calibration = Calibration(min_samples=2)
    calibration.observe("d", 10, 5)
    calibration.observe("d", 1_000, 1_300)
    assert calibration.ratio("d") == pytest.approx(1_305 / 1_010)
    calibration.observe("d", 10, 100_000)
    assert calibration.ratio("d") == 3.0
    calibration.observe("d", 0, 50)  # nothing to learn from an empty estimate
    assert calibration.ratio("d") == 3.0


def test_calibration_forgets_beyond_its_window() -> None:
    """Only the last ``window`` answers count."""
    calibration = Calibration(min_samples=2, window=2)
    for _ in range(2):
        calibration.observe("d", 100, 200)
    for _ in range(2):
        calibration.observe("d", 100, 100)
    assert calibration.ratio("d") == 1.0
