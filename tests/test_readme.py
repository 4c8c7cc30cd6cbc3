"""Every code block in the README runs as pasted.

Python blocks run in a fresh interpreter against a simulator on 127.0.0.1:8900 (where
`make run` serves it); a block whose first line is ``# test_*.py`` is a pytest file and runs
under pytest; YAML blocks load as configuration; shell blocks name make targets that exist.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmrelay.config import parse_settings
from llmrelay.simulator.config import load_config
from llmrelay.simulator.server import SimulatorServer

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
PORT = 8900


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


@pytest.fixture(scope="module")
def readme_simulator() -> Iterator[str]:
    """The default simulator where the README says it is (`make run`)."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            pytest.fail(f"port {PORT} is taken: stop `make run` (or whatever uses it) first")
    with SimulatorServer(load_config(), port=PORT) as server:
        yield server.url


@pytest.mark.parametrize("code", blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_block_runs(code: str, readme_simulator: str, tmp_path: Path) -> None:
    """The block exits 0 with nothing on stderr (no warnings at exit either)."""
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    first = code.splitlines()[0]
    if first.startswith("# test_") and first.endswith(".py"):
        (tmp_path / first[2:]).write_text(code)
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                   "-p", "llmrelay.testing", first[2:]]  # fmt: skip
    else:
        command = [sys.executable, "-W", "error", "-c", code]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    if "pytest" not in command:
        assert done.stderr == ""


@pytest.mark.parametrize("text", blocks("yaml"), ids=lambda t: t.splitlines()[0][:40])
def test_yaml_block_is_a_valid_configuration(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The configuration examples load as they are (with the keys they name set)."""
    import yaml

    for name in set(re.findall(r"\$\{(\w+)\}", text)):
        monkeypatch.setenv(name, "sk-test")
    parse_settings(yaml.safe_load(text), "README.md")


def test_shell_blocks_name_existing_make_targets() -> None:
    """`make X` in the README is a target of the Makefile."""
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for block in blocks("sh"):
        for target in re.findall(r"^make ([\w-]+)", block, re.M):
            assert target in targets
