"""Token estimators: time per sample and error against cl100k, side by side."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

from llmrelay.tokens import HeuristicEstimator, TiktokenEstimator

ROOT = Path(__file__).parents[1]
SAMPLES = {
    "English": ROOT / "tests" / "data" / "tokens" / "english.txt",
    "code": ROOT / "src" / "llmrelay" / "providers" / "base.py",
    "JSON": ROOT / "tests" / "data" / "tokens" / "data.json",
    "CJK": ROOT / "tests" / "data" / "tokens" / "cjk.txt",
}


def _median_us(count: Callable[[str], int], text: str, rounds: int = 200) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        count(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def run() -> None:
    exact, heuristic = TiktokenEstimator(), HeuristicEstimator()
    print(
        "| sample | chars | cl100k tokens | tiktoken µs | heuristic µs | speed-up "
        "| heuristic error |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, path in SAMPLES.items():
        text = path.read_text(encoding="utf-8")
        tokens = exact.count_text(text)
        t_exact = _median_us(exact.count_text, text)
        t_heur = _median_us(heuristic.count_text, text)
        error = (heuristic.count_text(text) - tokens) / tokens
        print(
            f"| {name} | {len(text):,} | {tokens:,} | {t_exact:,.0f} | {t_heur:,.0f} | "
            f"{t_exact / t_heur:.1f}x | {error:+.1%} |",
            flush=True,
        )
