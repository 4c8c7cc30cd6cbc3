"""``llmrelay report``: what each deployment did over a window, from the analytics store.

``configure`` and ``run`` are what :mod:`llmrelay.cli` registers; the configuration and
matplotlib are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

from llmrelay.analytics.settings import AnalyticsSettings
from llmrelay.errors import ConfigError

DEFAULT_CONFIG = "llmrelay.yaml"
_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")

DESCRIPTION = (
    "Show, per model group and deployment, what the router recorded in its analytics store "
    "(observe.analytics): requests, calls and errors, answer-time percentiles, time to "
    "first token, tokens, cost, fallbacks, cache savings and quality. The store is read from "
    "--config's observe.analytics section (default: ./llmrelay.yaml when it exists), or "
    "given directly with --analytics; without either, the default SQLite file "
    "~/.llmrelay/analytics.sqlite. --json prints one JSON document for scripts (its keys "
    "are listed in llmrelay.analytics.report); --png draws cost and answer time over time "
    "and cost against quality (needs the report extra)."
)


def moment(text: str, now: float | None = None) -> float:
    """``7d`` (that long ago; units m, h, d, w), ``now``, or an ISO 8601 date or time
    (local time unless it gives an offset), as Unix time."""
    now = time.time() if now is None else now
    if text.strip().lower() == "now":
        return now
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected a duration such as 30m, 12h, 7d, 2w, or an ISO date or time "
            "such as 2025-06-01 or 2025-06-01T12:00"
        ) from None


def duration(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a duration such as 15m, 1h, 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``report`` command's options."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--config",
        metavar="FILE",
        help=f"configuration whose observe.analytics names the store (default: ./{DEFAULT_CONFIG}"
        " when it exists)",
    )
    source.add_argument(
        "--analytics",
        metavar="PATH_OR_URL",
        help="the store itself: a SQLite file, or a postgresql:// URL",
    )
    parser.add_argument(
        "--since",
        default="7d",
        metavar="WHEN",
        help="start of the window: a duration ago (30m, 12h, 7d, 2w) or an ISO date or time "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--until",
        default="now",
        metavar="WHEN",
        help="end of the window, same forms as --since (default: %(default)s)",
    )
    parser.add_argument("--task", help="only requests of this task (metadata task key)")
    parser.add_argument("--group", help="only requests to this model group")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document instead of the table"
    )
    parser.add_argument(
        "--png",
        metavar="FILE",
        help="also draw the charts into this PNG file (needs the report extra: matplotlib)",
    )
    parser.add_argument(
        "--bucket",
        type=duration,
        metavar="DURATION",
        help="time step of the --png charts (default: the smallest of 5m, 15m, 1h, 3h, 6h, "
        "12h, 1d, 1w giving at most 60 points)",
    )


def analytics_settings(args: argparse.Namespace) -> AnalyticsSettings:
    """The store to read: ``--analytics``, else ``--config``'s ``observe.analytics``, else
    the default."""
    from llmrelay.analytics.store import settings_for

    if args.analytics:
        return settings_for(args.analytics)
    path = args.config or (DEFAULT_CONFIG if Path(DEFAULT_CONFIG).exists() else None)
    if path is None:
        return AnalyticsSettings()
    from llmrelay.config import load_settings

    section = load_settings(path).observe.analytics
    if section is None:
        raise ConfigError(
            f"{path}: no observe.analytics section, so nothing is recorded for a report "
            "(add one, or name a store with --analytics)"
        )
    settings = section.runtime()
    if not isinstance(settings, AnalyticsSettings):  # pragma: no cover - the section's struct
        raise TypeError(f"observe.analytics gave {settings!r}")
    return settings


def run(args: argparse.Namespace) -> int:
    from llmrelay.analytics.queries import Analytics
    from llmrelay.analytics.report import build_report, print_table, to_json

    now = time.time()
    try:
        since, until = moment(args.since, now), moment(args.until, now)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"--since/--until: {exc}") from None
    if since >= until:
        raise ConfigError(f"--since ({args.since}) is not before --until ({args.until})")
    with Analytics.open(analytics_settings(args), create=False) as analytics:
        report = build_report(analytics, since, until, task=args.task, group=args.group)
        if args.json:
            json.dump(to_json(report), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print_table(report)
        if args.png:
            from llmrelay.analytics.charts import write_png

            written = write_png(analytics, args.png, since, until, task=args.task,
                                group=args.group, bucket_s=args.bucket)  # fmt: skip
            print(f"charts written to {written}", file=sys.stderr if args.json else sys.stdout)
    return 0


__all__ = ["DEFAULT_CONFIG", "DESCRIPTION", "analytics_settings", "configure", "moment", "run"]
