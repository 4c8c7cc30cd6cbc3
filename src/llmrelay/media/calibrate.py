"""Fit the confidence model on labelled names; report accuracy and calibration.

``python -m llmrelay.media.calibrate`` parses every labelled name (:mod:`.dataset`),
records its features and which fields guessit got right (``data/parsed.jsonl``), fits one
L2-regularised logistic model per field on the calibration split by Newton's method
(deterministic: no random start, no sampling) and writes ``data/calibration.json``; then it
prints the figures on the held-out split. ``--report`` prints them from the shipped files
without parsing or fitting.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from llmrelay.media.confidence import (
    CALIBRATED_FIELDS,
    CALIBRATION_FILE,
    OVERALL,
    Calibration,
    ConfidenceModel,
    auroc,
    reliability,
)
from llmrelay.media.dataset import Sample, Split, all_samples, split_of
from llmrelay.media.features import FEATURES, features
from llmrelay.media.parse import PARSER_VERSION, GuessitEngine, check_name, to_result
from llmrelay.media.result import MediaResult

PARSED_FILE = CALIBRATION_FILE.with_name("parsed.jsonl")
_WORDS = re.compile(r"[^\W_]+")


class Row(msgspec.Struct, kw_only=True):
    """One labelled name after parsing: its features and which fields were right."""

    name: str
    origin: str
    split: Split
    x: list[float]
    right: dict[str, bool]


def same_title(found: str | None, truth: str | None) -> bool:
    """Titles match when their words match, case and punctuation aside."""

    def words(text: str | None) -> list[str]:
        return _WORDS.findall((text or "").casefold())

    return words(found) == words(truth)


def judge(result: MediaResult, sample: Sample) -> dict[str, bool]:
    """Per checked field whether ``result`` has it right, and ``overall``."""
    episodes = result.episode or result.absolute_episode
    right: dict[str, bool] = {}
    for field in sample.checked:
        if field == "title":
            right[field] = same_title(result.title, sample.title)
        elif field == "season":
            right[field] = sorted(result.season) == sorted(sample.season)
        elif field == "episode":
            right[field] = sorted(episodes) == sorted(sample.episode)
        elif field == "year":
            right[field] = result.year == sample.year
        elif field == "type":
            right[field] = result.type == sample.type
    right[OVERALL] = all(right[f] for f in ("title", "season", "episode", "year") if f in right)
    return right


def parse_rows(samples: Sequence[Sample], engine: GuessitEngine | None = None) -> list[Row]:
    """Parse and judge every sample (about 12 ms a name: guessit's own time)."""
    engine = engine or GuessitEngine()
    rows = []
    for sample in samples:
        guess = engine.guess(check_name(sample.name))
        right = judge(to_result(guess), sample)
        split = split_of(sample.name)
        rows.append(
            Row(name=sample.name, origin=sample.origin, split=split, x=features(guess), right=right)
        )
    return rows


def write_rows(rows: Sequence[Row], path: Path = PARSED_FILE) -> None:
    encoder = msgspec.json.Encoder()
    path.write_text("".join(encoder.encode(r).decode() + "\n" for r in rows), "utf-8")


def read_rows(path: Path = PARSED_FILE) -> list[Row]:
    decoder = msgspec.json.Decoder(Row)
    return [decoder.decode(line) for line in path.read_text("utf-8").splitlines() if line]


# -- fitting -------------------------------------------------------------------------------


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """``a⁻¹ b`` by Gaussian elimination with partial pivoting (``a`` is small)."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= f * m[col][c]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][c] * out[c] for c in range(r + 1, n))) / m[r][r]
    return out


def fit_logistic(
    xs: Sequence[Sequence[float]], ys: Sequence[bool], *, l2: float = 1.0, steps: int = 25
) -> list[float]:
    """Weights (bias first) maximising the L2-penalised log-likelihood (the bias unpenalised)."""
    n = len(xs[0]) + 1
    w = [0.0] * n
    rows = [[1.0, *x] for x in xs]
    for _ in range(steps):
        grad = [0.0] * n
        hess = [[0.0] * n for _ in range(n)]
        for row, y in zip(rows, ys, strict=True):
            z = sum(wi * xi for wi, xi in zip(w, row, strict=True))
            p = 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
            d, v = p - float(y), max(p * (1 - p), 1e-9)
            for i, xi in enumerate(row):
                if xi:
                    grad[i] += d * xi
                    for j in range(i, n):
                        hess[i][j] += v * xi * row[j]
        for i in range(n):
            for j in range(i):
                hess[i][j] = hess[j][i]
            if i:
                grad[i] += l2 * w[i]
                hess[i][i] += l2
        step = _solve(hess, grad)
        w = [wi - si for wi, si in zip(w, step, strict=True)]
        if max(abs(s) for s in step) < 1e-8:
            break
    return [round(v, 6) for v in w]


def fit(rows: Sequence[Row], *, l2: float = 1.0) -> Calibration:
    """One model per core field and one overall, on the calibration split."""
    train = [r for r in rows if r.split == "train"]
    models = {}
    for field in (*CALIBRATED_FIELDS, OVERALL):
        labelled = [r for r in train if field in r.right]
        models[field] = fit_logistic([r.x for r in labelled], [r.right[field] for r in labelled],
                                     l2=l2)  # fmt: skip
    return Calibration(parser_version=PARSER_VERSION, features=list(FEATURES), models=models,
                       l2=l2)  # fmt: skip


# -- reporting -----------------------------------------------------------------------------


def report(rows: Sequence[Row], model: ConfidenceModel, *, split: Split = "test") -> str:
    """Accuracy per set, AUROC, the reliability table and the threshold's effect."""
    held = [r for r in rows if r.split == split]
    scores = [model.score(r.x, OVERALL) for r in held]
    labels = [r.right[OVERALL] for r in held]
    side = "held-out" if split == "test" else "calibration"
    lines = [
        f"{len(held)} {side} names ({len(rows)} in all), parser {PARSER_VERSION}",
        "",
        "accuracy of title + season + episode (+ year where stated), parser alone:",
    ]
    for origin in sorted({r.origin for r in rows}):
        mine = [r for r in rows if r.origin == origin]
        ok = sum(r.right[OVERALL] for r in mine)
        lines.append(f"  {origin:<24} {ok:>4}/{len(mine):<4} {ok / len(mine):6.1%}")
    lines += ["", f"AUROC of overall confidence vs correctness: {auroc(scores, labels):.3f}"]
    for field in CALIBRATED_FIELDS:
        labelled = [r for r in held if field in r.right]
        field_labels = [r.right[field] for r in labelled]
        if any(field_labels) and not all(field_labels):
            value = auroc([model.score(r.x, field) for r in labelled], field_labels)
            lines.append(f"  {field:<8} {value:.3f} ({len(labelled)} names)")
    lines += ["", "reliability (held-out): confidence bucket -> names, mean confidence, accuracy"]
    for b in reliability(scores, labels):
        lines.append(f"  [{b.low:.2f}, {b.high:.2f})  {b.count:>4}  {b.mean_confidence:.3f}  "
                     f"{b.accuracy:.3f}")  # fmt: skip
    lines += ["", "threshold -> share of names sent to the LLM, accuracy of those kept"]
    for threshold in (0.5, 0.7, 0.8, 0.9, 0.95):
        kept = [y for s, y in zip(scores, labels, strict=True) if s >= threshold]
        sent = len(scores) - len(kept)
        accuracy = f"{sum(kept) / len(kept):.3f}" if kept else "-"
        lines.append(f"  {threshold:.2f}  {sent / len(scores):6.1%} sent  kept accuracy {accuracy}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m llmrelay.media.calibrate",
        description="Fit and report the confidence model.",
    )
    parser.add_argument("--report", action="store_true", help="print from the shipped files")
    parser.add_argument("--l2", type=float, default=1.0, help="penalty (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.report:
        rows, model = read_rows(), ConfidenceModel.load()
    else:
        rows = parse_rows(all_samples())
        calibration = fit(rows, l2=args.l2)
        write_rows(rows)
        CALIBRATION_FILE.write_bytes(msgspec.json.format(msgspec.json.encode(calibration)) + b"\n")
        model = ConfidenceModel(calibration)
    print(report(rows, model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
