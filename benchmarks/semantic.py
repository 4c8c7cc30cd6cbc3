"""The semantic cache's lookup cost: embedding the question, then searching one context.

Per index size (entries in one context key): the time to embed one question with the
bundled model (median, p99), and the time to search for it (median, p99) with the shipped
index (numpy brute force, exact) next to the approximate indexes it was measured against
(hnswlib, usearch) when they are installed, with their build time, their recall@1 against
the exact answer, and the median of the per-query ratios ANN / brute force (each query
searched by both, back to back).

The fill is random unit vectors from a fixed seed (embedding 100k real texts would take
minutes) plus the stored side of every labelled pair; the queries are the other sides,
really embedded. ``python -m benchmarks.semantic [sizes...]`` prints the table the decision
record (docs/decisions/0005-semantic-index.md) quotes.
"""

from __future__ import annotations

import asyncio
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from llmrelay.cache.evaluate import load_pairs
from llmrelay.cache.index import BruteForceIndex

SEED = 20_241_123
QUERIES = 200
EF_SEARCH = 64

Vectors = npt.NDArray[np.float32]
Search = Callable[[Vectors], str]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values) * 1000, 4),
        "p99_ms": round(_percentile(values, 99) * 1000, 4),
    }


def _embed_queries(texts: list[str]) -> tuple[Vectors, list[float]]:
    """Each query embedded alone, as the cache does, timed one by one."""
    from llmrelay.cache.embed import MiniLM

    model = MiniLM()
    model.embed(["warm up the model"])
    rows: list[Vectors] = []
    times: list[float] = []
    for text in texts:
        started = time.perf_counter()
        rows.append(model.embed([text])[0])
        times.append(time.perf_counter() - started)
    return np.stack(rows), times


def _fill(size: int, stored: Vectors, dim: int) -> Vectors:
    rng = np.random.default_rng(SEED)
    noise = rng.standard_normal((max(0, size - len(stored)), dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return np.concatenate([stored[:size], noise])


def _hnswlib(fill: Vectors) -> Search | None:
    try:
        hnswlib = importlib.import_module("hnswlib")
    except ImportError:
        return None
    index = hnswlib.Index(space="ip", dim=fill.shape[1])
    index.init_index(max_elements=len(fill), M=16, ef_construction=200, random_seed=SEED)
    index.add_items(fill, np.arange(len(fill)))
    index.set_ef(EF_SEARCH)

    def search(query: Vectors) -> str:
        labels, _ = index.knn_query(query, k=1)
        return str(int(labels[0][0]))

    return search


def _usearch(fill: Vectors) -> Search | None:
    try:
        usearch = importlib.import_module("usearch.index")
    except ImportError:
        return None
    index = usearch.Index(ndim=fill.shape[1], metric="ip", dtype="f32")
    index.add(np.arange(len(fill)), fill)

    def search(query: Vectors) -> str:
        return str(int(index.search(query, 1).keys[0]))

    return search


def _brute(fill: Vectors) -> Search:
    index = BruteForceIndex(fill.shape[1], capacity=len(fill))
    for row, vector in enumerate(fill):
        index.add(str(row), vector)

    def search(query: Vectors) -> str:
        found = index.search(query)
        assert found is not None
        return found[0]

    return search


def _size(size: int, stored: Vectors, queries: Vectors) -> dict[str, Any]:
    fill = _fill(size, stored, queries.shape[1])
    brute = _brute(fill)
    figures: dict[str, Any] = {}
    for name, build in (("hnswlib", _hnswlib), ("usearch", _usearch)):
        started = time.perf_counter()
        ann = build(fill)
        if ann is None:
            figures[name] = {"note": "not installed"}
            continue
        built_s = time.perf_counter() - started
        exact_times: list[float] = []
        ann_times: list[float] = []
        agree = 0
        for n, query in enumerate(queries):
            # Alternate which one runs first, so neither always finds the caches warm.
            first, second = (brute, ann) if n % 2 == 0 else (ann, brute)
            t0 = time.perf_counter()
            one = first(query)
            t1 = time.perf_counter()
            two = second(query)
            t2 = time.perf_counter()
            exact_s, ann_s = (t1 - t0, t2 - t1) if n % 2 == 0 else (t2 - t1, t1 - t0)
            exact_times.append(exact_s)
            ann_times.append(ann_s)
            agree += one == two
        figures[name] = {
            "build_s": round(built_s, 2),
            "search": _ms(ann_times),
            "recall_at_1": round(agree / len(queries), 3),
            "ratio_to_brute_force": round(
                statistics.median(a / b for a, b in zip(ann_times, exact_times, strict=True)), 3
            ),
        }
        figures.setdefault("brute_force", {"search": _ms(exact_times)})
    if "brute_force" not in figures:
        times = []
        for query in queries:
            started = time.perf_counter()
            brute(query)
            times.append(time.perf_counter() - started)
        figures["brute_force"] = {"search": _ms(times)}
    figures["brute_force"]["memory_mb"] = round(fill.nbytes / 1e6, 1)
    return figures


async def run(sizes: tuple[int, ...] = (1_000, 10_000, 100_000)) -> dict[str, Any]:
    """Embedding and search figures per index size (see the module's docstring)."""
    pairs = load_pairs()[:QUERIES]
    stored_texts = [p.a for p in pairs]
    query_texts = [p.b for p in pairs]
    stored, _ = await asyncio.to_thread(_embed_queries, stored_texts)
    queries, embed_times = await asyncio.to_thread(_embed_queries, query_texts)
    results: dict[str, Any] = {"queries": len(queries), "embed": _ms(embed_times)}
    for size in sizes:
        results[str(size)] = await asyncio.to_thread(_size, size, stored, queries)
    return results


def report(results: dict[str, Any]) -> None:
    embed = results["embed"]
    print(
        f"embedding one question (all-MiniLM-L6-v2, CPU): median {embed['median_ms']:.2f} ms,"
        f" p99 {embed['p99_ms']:.2f} ms ({results['queries']} queries)"
    )
    print(
        f"{'entries':>8} {'index':<12} {'build s':>8} {'search p50':>11} {'p99':>9} "
        f"{'recall@1':>9} {'ANN/brute':>10}"
    )
    for size, figures in results.items():
        if not size.isdigit():
            continue
        for name in ("brute_force", "hnswlib", "usearch"):
            f = figures.get(name, {})
            if "search" not in f:
                print(f"{size:>8} {name:<12} {f.get('note', '')}")
                continue
            print(
                f"{size:>8} {name:<12} {f.get('build_s', 0.0):>8.2f} "
                f"{f['search']['median_ms']:>9.3f}ms {f['search']['p99_ms']:>7.3f}ms "
                f"{f.get('recall_at_1', 1.0):>9.3f} {f.get('ratio_to_brute_force', 1.0):>10.3f}"
            )


if __name__ == "__main__":
    chosen = tuple(int(arg) for arg in sys.argv[1:]) or (1_000, 10_000, 100_000)
    report(asyncio.run(run(chosen)))
