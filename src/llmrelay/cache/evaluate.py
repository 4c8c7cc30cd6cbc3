"""How well the semantic cache tells a question asked again from a different question.

``data/semantic_pairs.jsonl`` holds labelled prompt pairs: paraphrases (same answer), hard
negatives (look alike, need another answer: numbers, names, negation, units, languages,
years, before/after...) and unrelated pairs. Each pair is in the ``dev`` or the ``test``
split by a fixed hash of its texts (:func:`split_of`).

As a cache sees it, ``a`` is stored and ``b`` is asked: a pair is a *hit* when the cosine of
their embeddings reaches the threshold (and, with the guard, when
:func:`~llmrelay.cache.semantic.same_specifics` holds). A hit on a pair that is not the
same is a *false hit*, the costly error; so the threshold is chosen on the dev split as the
lowest value of a 0.005 grid whose precision is at least 0.98 (scanned upwards, the first
that qualifies wins; a similarity equal to the threshold is a hit; a threshold with no hit
does not qualify; if none qualifies, 1.0). It is then measured on the held-out test split.

    python -m llmrelay.cache.evaluate [--json PATH] [--write-threshold]

``--write-threshold`` stores the threshold chosen with the guard in
``data/semantic_threshold.json``, the one the cache ships with.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from llmrelay.cache.semantic import THRESHOLD_FILE, same_specifics

if TYPE_CHECKING:
    import numpy.typing as npt

    from llmrelay.cache.embed import Embedder

Kind = Literal["paraphrase", "hard_negative", "unrelated"]
Split = Literal["dev", "test"]
KINDS: tuple[Kind, ...] = ("paraphrase", "hard_negative", "unrelated")

TARGET_PRECISION = 0.98
GRID_STEP = 0.005
PAIRS_FILE = "semantic_pairs.jsonl"


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    same: bool
    kind: Kind
    split: Split


def split_of(a: str, b: str) -> Split:
    """The split of a pair, fixed by its texts: the parity of the first byte of a SHA-256."""
    return "dev" if hashlib.sha256(f"{a}\n{b}".encode()).digest()[0] % 2 == 0 else "test"


def load_pairs(path: Path | None = None) -> list[Pair]:
    text = (
        path.read_text(encoding="utf-8")
        if path is not None
        else resources.files("llmrelay.cache").joinpath("data", PAIRS_FILE).read_text("utf-8")
    )
    return [
        Pair(row["a"], row["b"], row["same"], row["kind"], row["split"])
        for row in map(json.loads, text.splitlines())
    ]


@dataclass(frozen=True, slots=True)
class Scored:
    """The pairs of one split with what the cache would see of each."""

    pairs: list[Pair]
    similarity: npt.NDArray[np.float32]
    guard: npt.NDArray[np.bool_]
    same: npt.NDArray[np.bool_]

    def hits(self, threshold: float, *, guarded: bool) -> npt.NDArray[np.bool_]:
        hit = self.similarity >= threshold
        return hit & self.guard if guarded else hit

    def precision(self, threshold: float, *, guarded: bool) -> float | None:
        hit = self.hits(threshold, guarded=guarded)
        return float(self.same[hit].mean()) if hit.any() else None


def score(embedder: Embedder, pairs: list[Pair]) -> Scored:
    """Embed both sides of every pair (a batch each) and apply the guard."""
    a = embedder.embed([p.a for p in pairs])
    b = embedder.embed([p.b for p in pairs])
    return Scored(
        pairs=pairs,
        similarity=np.einsum("ij,ij->i", a, b).astype(np.float32),
        guard=np.array([same_specifics(p.a, p.b) for p in pairs], dtype=bool),
        same=np.array([p.same for p in pairs], dtype=bool),
    )


def choose_threshold(dev: Scored, *, guarded: bool) -> float:
    """The lowest grid threshold whose dev precision is at least :data:`TARGET_PRECISION`."""
    steps = round(1 / GRID_STEP)
    for step in range(steps + 1):
        threshold = round(step * GRID_STEP, 3)
        precision = dev.precision(threshold, guarded=guarded)
        if precision is not None and precision >= TARGET_PRECISION:
            return threshold
    return 1.0


def measure(scored: Scored, threshold: float, *, guarded: bool) -> dict[str, Any]:
    """Precision, hit rate, false hits and per-kind figures at ``threshold``."""
    hit = scored.hits(threshold, guarded=guarded)
    same = scored.same
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        mine = np.array([p.kind == kind for p in scored.pairs], dtype=bool)
        per_kind[kind] = {"pairs": int(mine.sum()), "hits": int((hit & mine).sum())}
    return {
        "threshold": threshold,
        "guard": guarded,
        "pairs": len(scored.pairs),
        "hits": int(hit.sum()),
        "precision": float(same[hit].mean()) if hit.any() else None,
        "hit_rate": float(hit[same].mean()) if same.any() else None,
        "false_hits": [
            {"a": p.a, "b": p.b, "kind": p.kind, "similarity": round(float(s), 4)}
            for p, s, h in zip(scored.pairs, scored.similarity, hit, strict=True)
            if h and not p.same
        ],
        "per_kind": per_kind,
    }


def evaluate(embedder: Embedder, pairs: list[Pair] | None = None) -> dict[str, Any]:
    """Thresholds chosen on dev, figures on test, without and with the guard."""
    pairs = load_pairs() if pairs is None else pairs
    scored = score(embedder, pairs)
    dev = _subset(scored, "dev")
    test = _subset(scored, "test")
    results: dict[str, Any] = {
        "pairs": {"dev": len(dev.pairs), "test": len(test.pairs)},
        "target_precision": TARGET_PRECISION,
    }
    for name, guarded in (("embedding", False), ("embedding+guard", True)):
        threshold = choose_threshold(dev, guarded=guarded)
        results[name] = {
            "dev": measure(dev, threshold, guarded=guarded),
            "test": measure(test, threshold, guarded=guarded),
        }
    # The guard's worth: the embedding alone at the threshold chosen with the guard.
    shipped = results["embedding+guard"]["dev"]["threshold"]
    results["embedding, same threshold"] = {
        "dev": measure(dev, shipped, guarded=False),
        "test": measure(test, shipped, guarded=False),
    }
    return results


def _subset(scored: Scored, split: Split) -> Scored:
    keep = np.array([p.split == split for p in scored.pairs], dtype=bool)
    return Scored(
        pairs=[p for p, k in zip(scored.pairs, keep, strict=True) if k],
        similarity=scored.similarity[keep],
        guard=scored.guard[keep],
        same=scored.same[keep],
    )


def render(results: dict[str, Any]) -> str:
    """The results as a plain-text table, then the held-out false hits."""

    def pct(value: float | None) -> str:
        return "  n/a" if value is None else f"{value:6.1%}"

    modes = ("embedding", "embedding+guard", "embedding, same threshold")
    lines = [
        f"pairs: {results['pairs']['dev']} dev, {results['pairs']['test']} test; threshold: "
        f"lowest with dev precision >= {results['target_precision']:.0%}",
        "",
        f"{'mode':<26} {'thresh':>6} {'split':<5} {'prec':>7} {'hit rate':>8} "
        f"{'para hits':>10} {'hard-neg hits':>13} {'unrel hits':>10}",
    ]
    for mode in modes:
        for split in ("dev", "test"):
            m = results[mode][split]
            k = m["per_kind"]
            lines.append(
                f"{mode:<26} {m['threshold']:>6.3f} {split:<5} {pct(m['precision']):>7} "
                f"{pct(m['hit_rate']):>8} "
                f"{k['paraphrase']['hits']:>4}/{k['paraphrase']['pairs']:<5}"
                f"{k['hard_negative']['hits']:>7}/{k['hard_negative']['pairs']:<5} "
                f"{k['unrelated']['hits']:>4}/{k['unrelated']['pairs']:<5}"
            )
    for mode in modes[:2]:
        false_hits = results[mode]["test"]["false_hits"]
        lines += ["", f"false hits on test, {mode} ({len(false_hits)}):"]
        lines += [f"  {f['similarity']:.3f}  {f['a']!r} -> {f['b']!r}" for f in false_hits]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmrelay.cache.evaluate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--write-threshold",
        action="store_true",
        help=f"store the guarded dev threshold in data/{THRESHOLD_FILE}",
    )
    args = parser.parse_args(argv)
    from llmrelay.cache.embed import MiniLM

    results = evaluate(MiniLM())
    print(render(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.write_threshold:
        path = Path(str(resources.files("llmrelay.cache").joinpath("data", THRESHOLD_FILE)))
        guarded = results["embedding+guard"]
        shipped = {
            "threshold": guarded["dev"]["threshold"],
            "model": "all-MiniLM-L6-v2",
            "guard": True,
            "rule": f"lowest {GRID_STEP} grid step with dev precision >= {TARGET_PRECISION}",
            "produced_by": "python -m llmrelay.cache.evaluate --write-threshold",
        }
        path.write_text(json.dumps(shipped, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
