"""Every Python block of docs/media.md runs as pasted, in a fresh interpreter."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmrelay.config import parse_settings
from llmrelay.media.config import MediaSettings

DOC = Path(__file__).parents[2] / "docs" / "media.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
SECTIONS = {"media": MediaSettings}
FOUND = FENCE.findall(DOC.read_text("utf-8"))
BLOCKS = [body for lang, body in FOUND if lang == "python"]
YAML = [body for lang, body in FOUND if lang == "yaml"]


def test_the_guide_has_python_examples() -> None:
    """The guide shows the API in code, so this file checks something."""
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_python_block_runs(code: str, tmp_path: Path) -> None:
    """The block exits 0 (its own asserts hold) without network beyond loopback."""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("text", YAML, ids=[f"yaml{i}" for i in range(len(YAML))])
def test_yaml_block_is_a_valid_configuration(text: str) -> None:
    """The configuration example loads, its media: section validated."""
    settings = parse_settings(yaml.safe_load(text), "docs/media.md", sections=SECTIONS).media
    assert isinstance(settings, MediaSettings) and settings.chain
