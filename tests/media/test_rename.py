"""plan-rename and apply through the command line: review, apply, undo, never overwrite."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from llmrelay.cli import main
from llmrelay.media.rename import Move, Plan, PlanError, apply_plan, walk_videos, write_plan

FILES = {
    "Breaking.Bad.S05E14.720p.HDTV.x264-EVOLVE.mkv": "Breaking Bad/Season 05/Breaking Bad - S05E14.mkv",
    "Better Call Saul/Season 2/03.mkv": "Better Call Saul/Season 02/Better Call Saul - S02E03.mkv",
    "Heat.1995.1080p.BluRay.x264-GRP.mkv": "Heat (1995)/Heat (1995).mkv",
}  # fmt: skip
UNSURE = "One Piece 1071.mkv"


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    for name in (*FILES, UNSURE, "notes.txt"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
    return root


def files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*") if p.is_file()}


def plan_rename(root: Path, plan: Path) -> int:
    return main(["media", "plan-rename", str(root), "-o", str(plan), "--no-cache", "--no-llm"])


def test_plan_then_apply_then_undo(library: Path, tmp_path: Path) -> None:
    """The plan names every confident file; apply moves them; the undo file moves them back."""
    before = files(library)
    plan_path = tmp_path / "plan.json"
    assert plan_rename(library, plan_path) == 0
    assert files(library) == before  # planning renames nothing
    plan = json.loads(plan_path.read_text())
    assert {m["source"]: m["target"] for m in plan["moves"]} == FILES
    assert [s["source"] for s in plan["skipped"]] == [UNSURE]
    assert "confidence" in plan["skipped"][0]["reason"]

    assert main(["media", "apply", str(plan_path)]) == 0
    after = files(library)
    assert {after[target] for target in FILES.values()} == set(FILES)
    assert after[UNSURE] == UNSURE and after["notes.txt"] == "notes.txt"

    undo = tmp_path / "plan.undo.json"
    assert json.loads(undo.read_text())["kind"] == "undo"
    assert main(["media", "apply", str(undo), "--undo", str(tmp_path / "redo.json")]) == 0
    assert {k: v for k, v in files(library).items()} == before


def test_a_plan_that_would_overwrite_renames_nothing(
    library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One target appeared since planning: the whole plan is refused, every file stays."""
    plan_path = tmp_path / "plan.json"
    assert plan_rename(library, plan_path) == 0
    taken = library / "Heat (1995)" / "Heat (1995).mkv"
    taken.parent.mkdir()
    taken.write_text("someone else's file")
    before = files(library)
    assert main(["media", "apply", str(plan_path)]) == 2
    assert files(library) == before
    err = capsys.readouterr().err
    assert "nothing was renamed" in err and "Heat (1995)/Heat (1995).mkv exists" in err


def test_two_moves_to_one_target_are_refused(tmp_path: Path) -> None:
    """A hand-edited plan sending two files to one name is refused before any move."""
    (tmp_path / "a.mkv").write_text("a")
    (tmp_path / "b.mkv").write_text("b")
    plan = Plan(root=str(tmp_path), moves=[Move(source="a.mkv", target="c.mkv"),
                                           Move(source="b.mkv", target="c.mkv")])  # fmt: skip
    with pytest.raises(PlanError, match=r"moves\[1\]\.target: c\.mkv is also the target"):
        apply_plan(plan, tmp_path / "undo.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mkv", "b.mkv"]


def test_moves_may_not_leave_the_root(tmp_path: Path) -> None:
    """``..`` or an absolute path in a plan is refused."""
    (tmp_path / "a.mkv").write_text("a")
    plan = Plan(root=str(tmp_path), moves=[Move(source="a.mkv", target="../escaped.mkv")])
    with pytest.raises(PlanError, match=r"moves\[0\]\.target: '\.\./escaped\.mkv' is not a path"):
        apply_plan(plan, tmp_path / "undo.json")


def test_a_plan_file_that_is_not_a_plan_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage or a missing file: a message naming the file, exit status 2."""
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    assert main(["media", "apply", str(bad)]) == 2
    assert f"{bad}: not a rename plan" in capsys.readouterr().err
    assert main(["media", "apply", str(tmp_path / "missing.json")]) == 2
    assert "cannot read the plan" in capsys.readouterr().err


def test_existing_plan_and_undo_files_are_never_overwritten(library: Path, tmp_path: Path) -> None:
    """plan-rename will not replace a plan, nor apply an undo file."""
    plan_path = tmp_path / "plan.json"
    write_plan(Plan(root=str(library), moves=[]), plan_path)
    assert plan_rename(library, plan_path) == 2
    (tmp_path / "plan.undo.json").write_text("{}")
    assert main(["media", "apply", str(plan_path)]) == 2


def test_unreadable_folders_are_reported_not_fatal(tmp_path: Path) -> None:
    """A folder that cannot be listed is named with the reason; the rest is walked."""
    errors: list[str] = []
    assert list(walk_videos(tmp_path / "missing", errors.append)) == []
    assert errors == [f"cannot read {tmp_path / 'missing'}: No such file or directory"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads folders whatever their mode")
def test_a_folder_without_read_permission_is_reported(
    library: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``parse DIR`` names the folder it could not read and exits 1, parsing the rest."""
    locked = library / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO(""))
        assert main(["media", "parse", str(library), "--no-cache", "--no-llm", "--jsonl"]) == 1
        assert f"cannot read {locked}: Permission denied" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)
