"""``llmrelay media parse | plan-rename | apply``: the command line of the parser.

``configure`` and ``run`` are what :mod:`llmrelay.cli` registers; everything heavy
(guessit, the facade) is imported inside ``run`` so ``llmrelay --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from llmrelay.media.result import MediaResult
    from llmrelay.media.service import MediaParser

_PROGRESS_AFTER = 200
"""Runs of more names than this show a progress line (on a terminal)."""


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``media`` command's sub-commands and options."""
    sub = parser.add_subparsers(dest="media_command", metavar="SUBCOMMAND", required=True)
    parse = sub.add_parser(
        "parse",
        help="parse file names, files or folders (names on stdin when no PATH is given)",
        description="Parse video file names: each PATH is a folder (searched recursively), a "
        "file, or a name; with no PATH, one name a line is read from stdin.",
    )
    parse.add_argument("paths", nargs="*", metavar="PATH")
    output = parse.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON document")
    output.add_argument("--jsonl", action="store_true", help="one JSON object a line")
    plan = sub.add_parser(
        "plan-rename",
        help="write a rename plan for a folder (nothing is renamed)",
        description="Parse the video files under DIR and write a plan of renames into "
        "the templates of media: (review it, then run 'llmrelay media apply PLAN').",
    )
    plan.add_argument("folder", metavar="DIR")
    plan.add_argument(
        "-o",
        "--output",
        metavar="PLAN",
        default="rename-plan.json",
        help="where to write the plan (default: %(default)s)",
    )
    plan.add_argument(
        "--min-confidence",
        type=float,
        default=None,
        metavar="P",
        help="skip names less sure than this (default: media.threshold)",
    )
    apply = sub.add_parser(
        "apply",
        help="apply a rename plan (never overwrites; writes an undo file)",
        description="Apply a plan written by plan-rename. Every move is checked first; if "
        "one cannot be made, nothing is renamed. The undo file is a plan too.",
    )
    apply.add_argument("plan", metavar="PLAN")
    apply.add_argument(
        "--undo",
        metavar="FILE",
        default=None,
        help="where to write the undo plan (default: PLAN.undo.json)",
    )
    serve = sub.add_parser(
        "serve",
        help="serve POST /api/v1/media/parse and GET /api/v1/media/health over HTTP",
        description="Serve the parser's HTTP API: POST /api/v1/media/parse takes "
        '{"names": [...], "refine": true} and answers one item per name, in order.',
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8910, help="port (default: %(default)s)")
    for sub_parser in (parse, plan, serve):
        sub_parser.add_argument(
            "--config",
            metavar="FILE",
            default=os.environ.get("LLMRELAY_CONFIG"),
            help="llmrelay.yaml with a media: section (default: $LLMRELAY_CONFIG)",
        )
        sub_parser.add_argument(
            "--no-llm", action="store_true", help="the deterministic parse only"
        )
        sub_parser.add_argument(
            "--no-cache", action="store_true", help="neither read nor write the cache"
        )


def run(args: argparse.Namespace) -> int:
    """Dispatch to the sub-command (a registry, like the top-level commands)."""
    return _SUBCOMMANDS[args.media_command](args)


def _parser(args: argparse.Namespace) -> MediaParser:
    from llmrelay.media.cache import NoCache
    from llmrelay.media.service import MediaParser

    cache = NoCache() if args.no_cache else None
    if args.config:
        return MediaParser.from_config(args.config, cache=cache, llm=not args.no_llm)
    return MediaParser(cache=cache)


def _warn(message: str) -> None:
    print(f"llmrelay media: {message}", file=sys.stderr)


async def _parse_all(
    parser: MediaParser, names: Sequence[str], refine: bool, progress: Callable[[int], None]
) -> list[MediaResult | Exception]:
    chunk = parser.settings.batch_size * parser.settings.concurrency
    outcomes: list[MediaResult | Exception] = []
    try:
        for start in range(0, len(names), chunk):
            outcomes.extend(await parser.parse_many(names[start : start + chunk], refine=refine))
            progress(len(outcomes))
    finally:
        await parser.aclose()
    return outcomes


def _progress(total: int, stream: TextIO) -> Callable[[int], None]:
    if total <= _PROGRESS_AFTER or not stream.isatty():
        return lambda done: None

    def show(done: int) -> None:
        width = 30
        filled = width * done // total
        end = "\n" if done >= total else ""
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
        stream.flush()

    return show


def _names(paths: Sequence[str]) -> tuple[list[str], int]:
    """The names to parse from PATH arguments (or stdin), and how many folders failed."""
    from llmrelay.media.rename import name_for, walk_videos

    if not paths:
        return [line.rstrip("\r\n") for line in sys.stdin if line.strip()], 0
    names: list[str] = []
    errors: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in walk_videos(path, errors.append):
                names.append(name_for(file, path.parent))
        else:
            names.append(raw)
    for message in errors:
        _warn(message)
    return names, len(errors)


def _parse(args: argparse.Namespace) -> int:
    import msgspec

    from llmrelay.media.result import RESULT_ENCODER

    names, unreadable = _names(args.paths)
    if not names:
        _warn("no names to parse")
        return 1
    parser = _parser(args)
    outcomes = asyncio.run(
        _parse_all(parser, names, not args.no_llm, _progress(len(names), sys.stderr))
    )
    failed = 0
    if args.json or args.jsonl:
        rows = [
            {"name": name, "error": str(o)} if isinstance(o, Exception) else o
            for name, o in zip(names, outcomes, strict=True)
        ]
        if args.json:
            sys.stdout.write(msgspec.json.format(RESULT_ENCODER.encode(rows)).decode() + "\n")
        else:
            sys.stdout.writelines(RESULT_ENCODER.encode(row).decode() + "\n" for row in rows)
        failed = sum(isinstance(o, Exception) for o in outcomes)
    else:
        failed = _table(names, outcomes, sys.stdout)
    return 1 if failed or unreadable else 0


def _table(names: Sequence[str], outcomes: Sequence[MediaResult | Exception], out: TextIO) -> int:
    failed = 0
    out.write(f"{'conf':>5}  {'type':<7}  {'title':<32}  {'S/E':<9}  {'year':<4}  name\n")
    for name, o in zip(names, outcomes, strict=True):
        if isinstance(o, Exception):
            failed += 1
            out.write(f"{'-':>5}  {'error':<7}  {o!s:<32}  {'':<9}  {'':<4}  {name!r}\n")
            continue
        episodes = o.episode or o.absolute_episode
        numbers = "-".join(f"{e:02}" for e in episodes[:1] + episodes[1:][-1:])
        se = f"S{o.season[0]:02}E{numbers}" if o.season else (f"E{numbers}" if episodes else "")
        llm = "*" if any(i.source.startswith("llm:") for i in o.fields.values()) else " "
        title = (o.title or "")[:32]
        year = str(o.year or "")
        out.write(
            f"{o.confidence:5.2f}{llm} {o.type:<7}  {title:<32}  {se:<9}  {year:<4}  {name}\n"
        )
    return failed


def _plan_rename(args: argparse.Namespace) -> int:
    from llmrelay.media.parse import PARSER_VERSION
    from llmrelay.media.rename import make_plan, name_for, walk_videos, write_plan

    root = Path(args.folder)
    if not root.is_dir():
        _warn(f"{root}: not a folder")
        return 2
    errors: list[str] = []
    files = list(walk_videos(root, errors.append))
    for message in errors:
        _warn(message)
    parser = _parser(args)
    names = [name_for(f, root) for f in files]
    min_confidence = (
        parser.settings.threshold if args.min_confidence is None else args.min_confidence
    )
    outcomes = asyncio.run(
        _parse_all(parser, names, not args.no_llm, _progress(len(names), sys.stderr))
    )
    plan = make_plan(root, files, outcomes, parser.settings, min_confidence=min_confidence)
    plan.parser_version = PARSER_VERSION
    output = Path(args.output)
    if output.exists():
        _warn(f"{output} exists; choose another --output (a plan is never overwritten)")
        return 2
    write_plan(plan, output)
    print(f"{len(plan.moves)} moves, {len(plan.skipped)} skipped -> {output}")
    for skip in plan.skipped:
        print(f"  skipped {skip.source}: {skip.reason}")
    print(f"review it, then: llmrelay media apply {output}")
    return 1 if errors else 0


def _apply(args: argparse.Namespace) -> int:
    from llmrelay.media.rename import PlanError, apply_plan, read_plan

    plan_path = Path(args.plan)
    undo = Path(args.undo) if args.undo else plan_path.with_name(plan_path.stem + ".undo.json")
    if undo.exists():
        raise PlanError(f"{undo} exists; pass --undo FILE (an undo file is never overwritten)")
    plan = read_plan(plan_path)
    done = apply_plan(plan, undo)
    print(f"{done} files renamed; to undo: llmrelay media apply {undo}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from llmrelay.media.api import MediaApp

    parser = _parser(args)
    config = uvicorn.Config(
        MediaApp(parser), host=args.host, port=args.port, lifespan="off", access_log=False,
        timeout_graceful_shutdown=10,
    )  # fmt: skip

    async def serve() -> None:
        try:
            await uvicorn.Server(config).serve()
        finally:
            await parser.aclose()  # the parser is this command's: closed once, here

    asyncio.run(serve())
    return 0


_SUBCOMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "parse": _parse,
    "plan-rename": _plan_rename,
    "apply": _apply,
    "serve": _serve,
}

__all__ = ["configure", "run"]
