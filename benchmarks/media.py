"""The media parser: deterministic throughput, cache hits, LLM batching, refined accuracy.

``python -m benchmarks.media`` (``BENCH_MEDIA_NAMES`` sets the throughput run, 10,000 by
default). Every figure is measured here, in this run:

- names/s of the deterministic path (guessit + features + calibrated scores) against
  guessit alone, in alternating slices over the same names; the overhead of confidence
  also timed on its own (features and scores of guesses already made);
- a cache hit (SQLite, one name through ``MediaParser.parse_many``) against a miss;
- LLM calls and tokens for 1,000 low-confidence names, batched against one name a call,
  against the simulator with scripted answers, plus the same with a tenth of the batch
  items malformed (they are asked again alone; no name is lost);
- accuracy of title + season + episode on the labelled names, the parser alone and with
  refinement of the names below the threshold, the simulator scripted with the labelled
  truth: this measures the plumbing (batching, index matching, the checks against the
  name), not a model — real models' accuracy needs real keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guessit.api import GuessItApi

from llmrelay import LLMBuilder
from llmrelay.media.analyze import Analyzer
from llmrelay.media.cache import NoCache
from llmrelay.media.calibrate import judge
from llmrelay.media.config import ChainStep, MediaCacheSettings, MediaSettings
from llmrelay.media.dataset import Sample, all_samples, split_of
from llmrelay.media.features import features
from llmrelay.media.parse import check_name
from llmrelay.media.result import MediaResult
from llmrelay.media.service import MediaParser
from llmrelay.simulator.server import SimulatorServer
from llmrelay.testing import SimulatorHandle, make_config

NAMES = int(os.environ.get("BENCH_MEDIA_NAMES", "10000"))
SLICE = 250
ANIME = ["One Piece", "Bleach", "Gintama", "Detective Conan", "Naruto Shippuden", "Dandadan",
         "Boku no Hero Academia", "Shingeki no Kyojin", "Chainsaw Man", "Oshi no Ko"]  # fmt: skip


def _names(count: int) -> list[str]:
    base = [s.name for s in all_samples()]
    return [base[i % len(base)] for i in range(count)]


def throughput(analyzer: Analyzer, names: Sequence[str]) -> None:
    """Deterministic path vs guessit alone, alternating slices of the same names."""
    bare = GuessItApi()
    bare.configure({}, sanitize_options=True)
    checked = [check_name(n) for n in names]
    ratios, ours_total, bare_total = [], 0.0, 0.0
    for start in range(0, len(checked), SLICE):
        chunk = checked[start : start + SLICE]
        t0 = time.perf_counter()
        for name in chunk:
            bare.guessit(name)
        t1 = time.perf_counter()
        for name in chunk:
            analyzer.analyze(name)
        t2 = time.perf_counter()
        bare_total += t1 - t0
        ours_total += t2 - t1
        ratios.append((t2 - t1) / (t1 - t0))
    guesses = [analyzer.engine.guess(n) for n in checked[:2000]]
    t0 = time.perf_counter()
    for guess in guesses:
        analyzer.model.scores(features(guess))
    scoring_us = (time.perf_counter() - t0) / len(guesses) * 1e6
    print(f"## deterministic path, {len(names):,} names")
    print("| path | names/s | ms a name |")
    print("|---|---:|---:|")
    print(
        f"| guessit alone | {len(names) / bare_total:,.0f} | {bare_total / len(names) * 1e3:.2f} |"
    )
    print(f"| llmrelay.media (guessit + confidence) | {len(names) / ours_total:,.0f} | "
          f"{ours_total / len(names) * 1e3:.2f} |")  # fmt: skip
    print(f"\nmedian of paired slice ratios (ours / guessit): {statistics.median(ratios):.3f}; "
          f"features + scores alone: {scoring_us:.0f} µs a name\n")  # fmt: skip


async def cache_latency(analyzer: Analyzer, names: Sequence[str]) -> None:
    """One name through parse_many: served by SQLite vs parsed."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = MediaSettings(cache=MediaCacheSettings(path=Path(tmp) / "m.sqlite3"))
        unique = list(dict.fromkeys(names))[:1000]
        async with MediaParser(settings, analyzer=analyzer) as parser:
            await parser.parse_many(unique)  # fills the cache
            hit, miss = [], []
            async with MediaParser(settings, analyzer=analyzer, cache=NoCache()) as uncached:
                for name in unique[:500]:
                    t0 = time.perf_counter()
                    await parser.parse_many([name])
                    t1 = time.perf_counter()
                    await uncached.parse_many([name])
                    t2 = time.perf_counter()
                    hit.append(t1 - t0)
                    miss.append(t2 - t1)
    print("## cache (SQLite), one name through MediaParser.parse_many, 500 names")
    print("| path | median µs | p90 µs |")
    print("|---|---:|---:|")
    for label, times in (("cache hit", hit), ("parse (miss)", miss)):
        p90 = statistics.quantiles(times, n=10)[-1]
        print(f"| {label} | {statistics.median(times) * 1e6:,.0f} | {p90 * 1e6:,.0f} |")
    ratio = statistics.median(m / h for m, h in zip(miss, hit, strict=True))
    print(f"\nmedian of paired miss / hit: {ratio:.0f}x\n")


def _reply(items: list[dict[str, Any]]) -> str:
    return json.dumps({"items": items}).replace("{", "{{").replace("}", "}}")


def _truth_item(index: int, sample: Sample) -> dict[str, Any]:
    return {"index": index, "type": sample.type or "episode", "title": sample.title,
            "year": sample.year, "season": sample.season, "episode": sample.episode}  # fmt: skip


def _scripts(samples: Sequence[Sample], size: int, broken_every: int = 0) -> list[dict[str, str]]:
    """One scripted answer per batch (matched by its first name), truthful unless broken."""
    import re

    scripts = []
    if broken_every:  # the items asked again alone: one line of items only, tried first
        scripts += [{"pattern": "Items:\n[^\n]*" + re.escape(json.dumps(s.name)) + r"[^\n]*\Z",
                     "reply": _reply([_truth_item(0, s)])} for s in samples]  # fmt: skip
    for start in range(0, len(samples), size):
        batch = samples[start : start + size]
        items = [_truth_item(i, s) for i, s in enumerate(batch)]
        if broken_every:
            for i in range(0, len(items), broken_every):
                items[i] = {**items[i], "episode": "not a number"}
        pattern = re.escape(json.dumps(batch[0].name)) + (r"[^\n]*\Z" if size == 1 else "")
        scripts.append({"pattern": pattern, "reply": _reply(items)})
    return scripts


async def _refine(
    sim: SimulatorHandle, analyzer: Analyzer, samples: Sequence[Sample], batch_size: int,
    *, broken_every: int = 0, threshold: float = 0.9,
) -> tuple[MediaParser, list[MediaResult]]:  # fmt: skip
    sim.reset()
    unique = {check_name(s.name): s for s in samples}  # the parser asks once per name
    low = [s for name, s in unique.items() if analyzer.analyze(name)[0].confidence < threshold]
    sim.set_model("sim-openai", scripts=_scripts(low, batch_size, broken_every))
    llm = (LLMBuilder().with_retries(0)
           .with_primary("openai", "sim-openai", group="cheap", base_url=sim.url + "/v1",
                         api_key="sk-bench", context_window=16000, max_output_tokens=4096)
           .build())  # fmt: skip
    settings = MediaSettings(threshold=threshold, batch_size=batch_size, concurrency=4,
                             chain=[ChainStep(group="cheap", trust=0.95)])  # fmt: skip
    parser = MediaParser(settings, llm=llm, cache=NoCache(), analyzer=analyzer, owns_llm=True)
    async with parser:
        outcomes = await parser.parse_many([s.name for s in samples])
    return parser, [o for o in outcomes if isinstance(o, MediaResult)]


async def batching(sim: SimulatorHandle, analyzer: Analyzer) -> None:
    """1,000 low-confidence names: calls and tokens batched vs one a call."""
    samples = [Sample(name=f"{title} {n}.mkv", origin="bench", checked=["title", "episode"],
                      title=title, episode=[n], type="episode")
               for n in range(100, 200) for title in ANIME][:1000]  # fmt: skip
    low = sum(analyzer.analyze(s.name)[0].confidence < 0.9 for s in samples)
    print(f"## LLM refinement of 1,000 names ({low} below the 0.9 threshold), simulator")
    print("| mode | LLM calls | input tokens | output tokens | tokens per name | "
          "asked again alone | right after refinement |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, size, broken in (("one name a call", 1, 0), ("batches of 25", 25, 0),
                                ("batches of 25, every 10th item malformed", 25, 10)):  # fmt: skip
        parser, results = await _refine(sim, analyzer, samples, size, broken_every=broken)
        m = parser.metrics
        right = sum(judge(r, s)["overall"] for r, s in zip(results, samples, strict=True))
        per = (m.input_tokens + m.output_tokens) / len(samples)
        print(f"| {label} | {m.llm_calls:,} | {m.input_tokens:,} | {m.output_tokens:,} | "
              f"{per:.0f} | {m.retried_alone} | {right}/{len(samples)} |")  # fmt: skip
    print()


async def accuracy(sim: SimulatorHandle, analyzer: Analyzer) -> None:
    """Title + season + episode on the held-out names: parser alone, then refined."""
    held = [s for s in all_samples() if split_of(s.name) == "test"]
    plain = [analyzer.analyze(s.name)[0] for s in held]
    print("## accuracy of title + season + episode (+ year where stated), held-out names")
    print("| set | names | parser alone | sent to the LLM (< 0.9) | with refinement "
          "(scripted truthful answers) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for origin in ("guessit:episodes.yml", "guessit:movies.yml", "built:episode", "built:movie"):
        mine = [(s, r) for s, r in zip(held, plain, strict=True) if s.origin == origin]
        samples = [s for s, _ in mine]
        alone = sum(judge(r, s)["overall"] for s, r in mine)
        sent = sum(r.confidence < 0.9 for _, r in mine)
        _, refined = await _refine(sim, analyzer, samples, 25)
        after = sum(judge(r, s)["overall"] for r, s in zip(refined, samples, strict=True))
        n = len(mine)
        print(f"| {origin} | {n} | {alone / n:.1%} | {sent} | {after / n:.1%} |")
    print()


async def _llm_sections(analyzer: Analyzer) -> None:
    config = make_config()
    with SimulatorServer(config) as server:
        sim = SimulatorHandle(server.url)
        await batching(sim, analyzer)
        await accuracy(sim, analyzer)


def run() -> None:
    analyzer = Analyzer()
    throughput(analyzer, _names(NAMES))
    asyncio.run(cache_latency(analyzer, _names(2000)))
    asyncio.run(_llm_sections(analyzer))


if __name__ == "__main__":
    run()
