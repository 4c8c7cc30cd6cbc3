"""Rename plans: what ``plan-rename`` proposes, what ``apply`` does, and how to undo it.

A plan is a JSON file of moves relative to a root folder, reviewed before it is applied.
Applying checks every move first (source there, target free, no two moves to one target,
nothing leaving the root) and renames nothing if one fails. A move never overwrites: the
file is linked at its target (which fails if the target exists) and only then unlinked at
its source. The undo file — itself a plan — is rewritten after every move, so it is right
even when applying stops halfway.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal

import msgspec

from llmrelay.errors import LLMRelayError
from llmrelay.media.config import MediaSettings
from llmrelay.media.result import MediaResult
from llmrelay.media.template import MissingField, render

VIDEO_EXTENSIONS = frozenset({
    ".mkv", ".mp4", ".avi", ".m4v", ".mov", ".wmv", ".ts", ".m2ts", ".webm", ".mpg", ".mpeg",
    ".flv", ".ogm", ".divx", ".srt", ".ass", ".sub",
})  # fmt: skip


class PlanError(LLMRelayError):
    """A plan that cannot be applied (nothing was renamed), or a move that failed."""


class Move(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    target: str
    confidence: float = 1.0


class Skip(msgspec.Struct, frozen=True, kw_only=True):
    source: str
    reason: str


class Plan(msgspec.Struct, kw_only=True):
    """Moves relative to ``root``; ``kind: undo`` for the file that reverses an apply."""

    root: str
    moves: list[Move]
    skipped: list[Skip] = msgspec.field(default_factory=list)
    kind: Literal["plan", "undo"] = "plan"
    parser_version: str = ""


_PLAN = msgspec.json.Decoder(Plan)


def walk_videos(root: Path, on_error: Callable[[str], None]) -> Iterator[Path]:
    """Video and subtitle files under ``root``, sorted; an unreadable folder is reported."""

    def report(exc: OSError) -> None:
        on_error(f"cannot read {exc.filename}: {exc.strerror}")

    for folder, dirs, files in os.walk(root, onerror=report):
        dirs.sort()
        for file in sorted(files):
            if Path(file).suffix.lower() in VIDEO_EXTENSIONS:
                yield Path(folder) / file


def name_for(path: Path, root: Path) -> str:
    """What is parsed for a file: its path from ``root``, at most two folders deep."""
    parts = path.relative_to(root).parts
    return "/".join(parts[-3:])


def target_for(result: MediaResult, settings: MediaSettings, ext: str) -> str:
    """The relative target path of a result; :class:`MissingField` when it lacks one."""
    episodes = result.episode or result.absolute_episode
    values: dict[str, object] = {
        "title": result.title, "year": result.year,
        "season": result.season[0] if result.season else None,
        "episode": episodes[0] if episodes else None,
        "episode_title": result.episode_title, "date": result.date,
        "resolution": result.resolution, "source": result.source,
        "video_codec": result.video_codec, "release_group": result.release_group, "ext": ext,
    }  # fmt: skip
    if result.type == "episode":
        return render(settings.episode_template, values)
    if result.type == "movie":
        return render(settings.movie_template, values)
    raise MissingField("neither an episode nor a movie")


def make_plan(
    root: Path,
    files: Sequence[Path],
    results: Sequence[MediaResult | Exception],
    settings: MediaSettings,
    *,
    min_confidence: float,
) -> Plan:
    """Moves for the confident results; every other file skipped with its reason."""
    moves: list[Move] = []
    skipped: list[Skip] = []
    claimed: dict[str, str] = {}
    for path, result in zip(files, results, strict=True):
        source = path.relative_to(root).as_posix()
        if isinstance(result, Exception):
            skipped.append(Skip(source=source, reason=str(result)))
            continue
        if result.confidence < min_confidence:
            reason = f"confidence {result.confidence:.2f} below {min_confidence:.2f}"
            skipped.append(Skip(source=source, reason=reason))
            continue
        try:
            target = target_for(result, settings, path.suffix.lower())
        except MissingField as exc:
            skipped.append(Skip(source=source, reason=f"cannot name it: {exc}"))
            continue
        if target == source:
            continue
        if target in claimed:
            skipped.append(Skip(source=source, reason=f"{target} is planned for {claimed[target]}"))
            continue
        if (root / target).exists():
            skipped.append(Skip(source=source, reason=f"{target} exists"))
            continue
        claimed[target] = source
        moves.append(Move(source=source, target=target, confidence=result.confidence))
    return Plan(root=str(root.resolve()), moves=moves, skipped=skipped)


def read_plan(path: Path) -> Plan:
    """A plan file; :class:`PlanError` saying what is wrong with it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read the plan: {exc.strerror}") from None
    try:
        return _PLAN.decode(data)
    except msgspec.DecodeError as exc:
        raise PlanError(f"{path}: not a rename plan: {exc}") from None


def write_plan(plan: Plan, path: Path) -> None:
    path.write_bytes(msgspec.json.format(msgspec.json.encode(plan)) + b"\n")


def problems(plan: Plan) -> list[str]:
    """Everything that stops the plan from applying cleanly (empty: it can run)."""
    root = Path(plan.root)
    found: list[str] = []
    if not root.is_dir():
        return [f"root {plan.root}: not a folder"]
    targets: dict[str, int] = {}
    sources = {m.source for m in plan.moves}
    for index, move in enumerate(plan.moves):
        where = f"moves[{index}]"
        for key in ("source", "target"):
            value = getattr(move, key)
            if not value or Path(value).is_absolute() or ".." in Path(value).parts:
                found.append(f"{where}.{key}: {value!r} is not a path inside the root")
        if not (root / move.source).is_file():
            found.append(f"{where}.source: {move.source} does not exist")
        if (root / move.target).exists() or os.path.lexists(root / move.target):
            found.append(f"{where}.target: {move.target} exists; a move never overwrites")
        if move.target in sources:
            found.append(f"{where}.target: {move.target} is also moved by this plan")
        if move.target in targets:
            found.append(f"{where}.target: {move.target} is also the target of "
                         f"moves[{targets[move.target]}]")  # fmt: skip
        targets.setdefault(move.target, index)
    return found


def _move(source: Path, target: Path) -> None:
    """Rename without ever replacing ``target`` (``FileExistsError`` if it is there)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)  # fails when target exists: no window to overwrite
    except OSError as exc:
        if isinstance(exc, FileExistsError) or exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(target):
            raise FileExistsError(17, "File exists", str(target)) from None
        os.rename(source, target)  # a file system without hard links
        return
    os.unlink(source)


_NO_LINKS = {1, 18, 38, 95}  # EPERM, EXDEV, ENOSYS, EOPNOTSUPP: no hard link possible here


def apply_plan(plan: Plan, undo_path: Path) -> int:
    """Make every move, recording each in the undo file; how many were made."""
    found = problems(plan)
    if found:
        raise PlanError("nothing was renamed:\n  " + "\n  ".join(found))
    root = Path(plan.root)
    undo = Plan(root=plan.root, moves=[], kind="undo", parser_version=plan.parser_version)
    write_plan(undo, undo_path)
    for move in plan.moves:
        try:
            _move(root / move.source, root / move.target)
        except OSError as exc:
            done = len(undo.moves)
            raise PlanError(f"{move.source} -> {move.target}: {exc.strerror}; {done} of "
                            f"{len(plan.moves)} moves made, undo them with "
                            f"'llmrelay media apply {undo_path}'") from None  # fmt: skip
        undo.moves.insert(0, Move(source=move.target, target=move.source))
        write_plan(undo, undo_path)
    return len(undo.moves)


__all__ = [
    "VIDEO_EXTENSIONS",
    "Move",
    "Plan",
    "PlanError",
    "Skip",
    "apply_plan",
    "make_plan",
    "name_for",
    "problems",
    "read_plan",
    "target_for",
    "walk_videos",
    "write_plan",
]
