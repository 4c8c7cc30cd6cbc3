"""``llmrelay report --png``: cost and answer time over time per deployment, and cost
against quality per deployment, drawn with matplotlib (extra ``report``).

matplotlib is imported here, inside :func:`write_png`, with its non-interactive Agg
backend: the report needs no display, and the rest of the package does not need it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmrelay.analytics.queries import Analytics, DeploymentStats, SeriesPoint
from llmrelay.errors import ConfigError

BUCKETS = (300.0, 900.0, 3600.0, 3 * 3600.0, 6 * 3600.0, 12 * 3600.0, 86400.0, 7 * 86400.0)
"""Bucket sizes a chart may use; the smallest giving at most :data:`MAX_BUCKETS` is chosen."""
MAX_BUCKETS = 60


def bucket_for(since: float, until: float) -> float:
    """The bucket size (seconds) for a window: the smallest with at most 60 buckets."""
    span = max(until - since, 1.0)
    return next((b for b in BUCKETS if span / b <= MAX_BUCKETS), BUCKETS[-1])


def _label(seconds: float) -> str:
    for size, unit in ((86400.0, "d"), (3600.0, "h"), (60.0, "min")):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} s"


def write_png(
    analytics: Analytics,
    path: Path | str,
    since: float,
    until: float,
    *,
    task: str | None = None,
    group: str | None = None,
    bucket_s: float | None = None,
) -> Path:
    """Draw the charts of [``since``, ``until``) into the PNG file ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError as exc:
        raise ConfigError(
            f"--png needs matplotlib (pip install 'llmrelay[report]'): {exc}"
        ) from None
    bucket = bucket_s or bucket_for(since, until)
    points = analytics.series(since, until, bucket_s=bucket, task=task, group=group)
    stats = analytics.stats(since, until, task=task, group=group, by=("deployment",))
    lines: dict[str, list[SeriesPoint]] = defaultdict(list)
    for point in points:
        lines[point.deployment].append(point)
    names = sorted({*lines, *(s.deployment for s in stats)})
    palette = plt.get_cmap("tab10")
    colors = {name: palette(i % 10) for i, name in enumerate(names)}

    figure, (cost, latency, scatter) = plt.subplots(
        3, 1, figsize=(12, 13.5), gridspec_kw={"height_ratios": [1, 1, 1.1]}
    )
    filters = "".join(f", {k} {v}" for k, v in (("task", task), ("group", group)) if v)
    figure.suptitle(f"llmrelay report: {_day(since)} to {_day(until)}{filters}", fontsize=14)
    for name, series in lines.items():
        when = [datetime.fromtimestamp(p.start, UTC) for p in series]
        cost.plot(when, [p.cost_micros / 1e6 for p in series], color=colors[name], linewidth=1.6)
        answered = [(w, p) for w, p in zip(when, series, strict=True) if p.latency_p50_s]
        latency.plot([w for w, _ in answered], [p.latency_p50_s for _, p in answered],
                     color=colors[name], linewidth=1.6)  # fmt: skip
        latency.plot([w for w, _ in answered], [p.latency_p95_s for _, p in answered],
                     color=colors[name], linewidth=1.0, linestyle="--", alpha=0.7)  # fmt: skip
    cost.set_title(f"Cost per {_label(bucket)}")
    cost.set_ylabel("US$")
    latency.set_title(f"Answer time per {_label(bucket)}: p50 (solid) and p95 (dashed)")
    latency.set_ylabel("seconds")
    for axes in (cost, latency):
        axes.xaxis.set_major_formatter(mdates.DateFormatter("%b %d\n%H:%M"))  # type: ignore[no-untyped-call]  # matplotlib leaves it unannotated
        axes.grid(alpha=0.3)
        axes.set_ylim(bottom=0)
    _scatter(scatter, stats, colors)
    handles = [Line2D([], [], color=colors[name], linewidth=3) for name in names]
    figure.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.962),
                  ncol=min(len(names), 4), frameon=False, fontsize=10)  # fmt: skip
    rows = math.ceil(len(names) / 4) if names else 0
    figure.tight_layout(rect=(0, 0, 1, 0.97 - 0.02 * rows))
    target = Path(path)
    figure.savefig(target, dpi=100)
    plt.close(figure)
    return target


def _scatter(axes: Any, stats: list[DeploymentStats], colors: dict[str, Any]) -> None:
    """Mean cost per request against mean quality, a point per deployment sized by its
    answered requests."""
    scored = [s for s in stats if s.quality_mean is not None and s.mean_cost_micros is not None]
    axes.set_title("Cost against quality, per deployment (size: requests answered)")
    axes.set_xlabel("mean cost per request (US$)")
    axes.set_ylabel("mean quality (feedback, else evaluator)")
    axes.grid(alpha=0.3)
    if not scored:
        axes.text(0.5, 0.5, "no quality scores recorded in this window", ha="center",
                  va="center", transform=axes.transAxes, fontsize=12, color="gray")  # fmt: skip
        return
    most = max(s.answered for s in scored)
    for s in scored:
        x, y = (s.mean_cost_micros or 0) / 1e6, s.quality_mean or 0.0
        axes.scatter([x], [y], s=80 + 600 * s.answered / most, color=colors[s.deployment],
                     alpha=0.75, edgecolors="black", linewidths=0.5)  # fmt: skip
        axes.annotate(f"{s.deployment}\n{s.quality_mean:.2f} (n={s.quality_n})", (x, y),
                      xytext=(10, 6), textcoords="offset points", fontsize=9)  # fmt: skip
    axes.set_xscale("log")
    low, high = axes.get_xlim()
    axes.set_xlim(low / 1.5, high * 2.5)  # room for the labels right of the points
    axes.set_ylim(max(0.0, min(s.quality_mean or 0 for s in scored) - 0.1), 1.02)


def _day(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


__all__ = ["BUCKETS", "bucket_for", "write_png"]
