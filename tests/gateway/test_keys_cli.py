"""``llmrelay keys``: make, list, show, update and revoke keys from the command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from llmrelay.gateway import keys_cli
from llmrelay.gateway.keys import KeyBudget, KeySpec, SqliteKeyStore, hash_secret

CONFIG = """\
models: {default: {primary: [{provider: openai, model: gpt-4o-mini}]}}
server:
  keys: %s
"""

RUN_KEYS = (
    "import argparse, sys\n"
    "from llmrelay.gateway import keys_cli\n"
    "parser = argparse.ArgumentParser(prog='llmrelay keys')\n"
    "keys_cli.configure(parser)\n"
    "sys.exit(keys_cli.run(parser.parse_args(sys.argv[1:])))\n"
)
"""``llmrelay keys`` in a process of its own."""


def parser() -> argparse.ArgumentParser:
    made = argparse.ArgumentParser(prog="llmrelay keys")
    keys_cli.configure(made)
    return made


class Keys:
    """Runs ``llmrelay keys …`` against one SQLite store, in this process."""

    def __init__(self, path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.path = path
        self.capsys = capsys

    def __call__(self, *argv: str, code: int = 0) -> str:
        """The command's output; it must exit with ``code``."""
        self.capsys.readouterr()
        args = parser().parse_args(["--store-path", str(self.path), *argv])
        assert keys_cli.run(args) == code, self.capsys.readouterr()
        captured = self.capsys.readouterr()
        if code == 0:
            assert captured.err == ""
            return captured.out
        assert captured.out == "" and "Traceback" not in captured.err
        return captured.err

    def json(self, *argv: str) -> Any:
        return json.loads(self(*argv, "--json"))

    def refused(self, *argv: str) -> str:
        """The argument error of a command line argparse refuses (exit status 2)."""
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as caught:
            parser().parse_args(["--store-path", str(self.path), *argv])
        assert caught.value.code == 2
        return self.capsys.readouterr().err


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Keys:
    return Keys(tmp_path / "keys.sqlite", capsys)


def find(path: Path, secret: str) -> Any:
    async def look() -> Any:
        store = SqliteKeyStore(path)
        try:
            return await store.find(secret)
        finally:
            await store.aclose()

    return asyncio.run(look())


def test_create_prints_the_secret_once_with_the_id(keys: Keys) -> None:
    """create prints the id, the secret and a note that it is not shown again; the secret
    opens that key, and no other command prints it."""
    out = keys("create", "--name", "alice")
    secret = next(w for w in out.split() if w.startswith("sk-relay-"))
    key_id = next(w.strip(".,") for w in out.split() if w.startswith("key_"))
    assert "not shown again" in out
    assert find(keys.path, secret).id == key_id
    for argv in (("list", "--all"), ("show", key_id), ("list", "--json"), ("show", "alice")):
        assert secret not in keys(*argv) and secret[12:] not in keys(*argv)
    assert hash_secret(secret) not in keys("show", key_id, "--json")


def test_create_sets_every_option(keys: Keys) -> None:
    """Each option of create lands in the stored key."""
    before = time.time()
    made = keys.json(
        "create", "--name", "ci", "--group", "gpt-4o", "--group", "cheap", "--rpm", "60",
        "--tpm", "10000", "--budget", "5/day", "--budget", "$100/month", "--expires", "30d",
        "--meta", "team=search", "--meta", "env=prod", "--admin",
    )  # fmt: skip
    key = made["key"]
    assert find(keys.path, made["secret"]).id == key["id"]
    assert key["name"] == "ci" and key["groups"] == ["gpt-4o", "cheap"]
    assert (key["rpm"], key["tpm"], key["admin"]) == (60, 10000, True)
    assert key["budgets"] == [{"usd": 5.0, "period": "day"}, {"usd": 100.0, "period": "month"}]
    assert key["metadata"] == {"team": "search", "env": "prod"}
    assert before + 30 * 86400 <= key["expires_at"] <= time.time() + 30 * 86400
    assert key["status"] == "active"


def test_create_defaults_to_an_unlimited_key_of_every_group(keys: Keys) -> None:
    """Without options a key has no name, limits, budgets or expiry, and is not admin."""
    key = keys.json("create")["key"]
    assert (key["name"], key["groups"], key["rpm"], key["tpm"]) == ("", None, None, None)
    assert (key["budgets"], key["expires_at"], key["metadata"], key["admin"]) == (
        [], None, {}, False,
    )  # fmt: skip


def test_an_iso_expiry_is_local_time_unless_it_has_an_offset(keys: Keys) -> None:
    """--expires takes an ISO date (local midnight) or a time with an offset."""
    assert keys.json("create", "--expires", "2999-01-01")["key"]["expires_at"] == (
        time.mktime((2999, 1, 1, 0, 0, 0, 0, 0, -1))
    )
    offset = keys.json("create", "--expires", "2999-01-01T12:00+02:00")["key"]["expires_at"]
    assert offset == datetime(2999, 1, 1, 10, tzinfo=UTC).timestamp()


def test_list_shows_a_table_of_keys(keys: Keys) -> None:
    """list prints one row a key with its id, name, prefix, limits and status; --all adds
    revoked keys."""
    alice = keys.json("create", "--name", "alice", "--rpm", "7", "--budget", "5")["key"]
    bob = keys.json("create", "--name", "bob", "--group", "cheap")["key"]
    keys("revoke", "bob")
    out = keys("list")
    assert out.splitlines()[0].split() == [
        "id", "name", "prefix", "groups", "rpm", "tpm", "budgets", "expires", "status",
    ]  # fmt: skip
    row = out.splitlines()[1].split()
    assert row == [alice["id"], "alice", alice["prefix"] + "…", "all", "7", "-", "$5/day",
                   "never", "active"]  # fmt: skip
    assert bob["id"] not in out
    every = keys("list", "--all")
    assert bob["id"] in every and "revoked" in every
    assert [k["id"] for k in keys.json("list", "--all")] == [alice["id"], bob["id"]]


def test_list_of_an_empty_store_says_so(keys: Keys) -> None:
    """An empty store lists as 'no keys' (and [] in JSON)."""
    assert keys("list").startswith("no keys")
    assert keys.json("list") == []


def test_show_prints_one_key(keys: Keys) -> None:
    """show (by id or name) prints the key's fields; --json the same as data."""
    made = keys.json("create", "--name", "s", "--meta", "a=b", "--budget", "3/month")["key"]
    out = keys("show", made["id"])
    assert keys("show", "s") == out
    lines = dict(line.split(None, 1) for line in out.splitlines())
    assert lines["id"] == made["id"] and lines["status"] == "active"
    assert lines["budgets"] == "$3/month" and lines["metadata"] == "a=b"
    assert keys.json("show", "s") == made


def test_update_changes_only_what_the_options_name(keys: Keys) -> None:
    """update replaces groups and budgets, adds labels, clears what --no-… and --all-groups
    name, and keeps everything else."""
    made = keys.json(
        "create", "--name", "u", "--group", "a", "--rpm", "5", "--budget", "1/day",
        "--expires", "1d", "--meta", "team=x", "--admin",
    )["key"]  # fmt: skip
    changed = keys.json("update", "u", "--group", "b", "--budget", "2/month", "--meta", "env=y")
    assert changed["groups"] == ["b"] and changed["budgets"] == [{"usd": 2.0, "period": "month"}]
    assert changed["metadata"] == {"team": "x", "env": "y"}
    assert (changed["rpm"], changed["expires_at"], changed["admin"]) == (
        5, made["expires_at"], True,
    )  # fmt: skip
    cleared = keys.json(
        "update", made["id"], "--all-groups", "--no-budget", "--no-expiry", "--no-admin",
        "--clear-meta", "--name", "v",
    )  # fmt: skip
    assert (cleared["groups"], cleared["budgets"], cleared["expires_at"]) == (None, [], None)
    assert (cleared["admin"], cleared["metadata"], cleared["name"]) == (False, {}, "v")
    assert cleared["rpm"] == 5 and cleared["id"] == made["id"]


def test_revoke_stops_the_key_and_is_idempotent(keys: Keys) -> None:
    """revoke marks the key revoked (its secret still finds it, as revoked); revoking it
    again says so and changes nothing."""
    made = keys.json("create", "--name", "r")
    key_id = made["key"]["id"]
    assert f"revoked {key_id} (r)" in keys("revoke", "r")
    first = find(keys.path, made["secret"])
    assert first.status(time.time()) == "revoked"
    assert "already revoked" in keys("revoke", key_id)
    assert find(keys.path, made["secret"]).revoked_at == first.revoked_at


@pytest.mark.parametrize("command", ["show", "update", "revoke"])
def test_an_unknown_key_exits_1_naming_it(keys: Keys, command: str) -> None:
    """show, update and revoke of an unknown key print an error naming it and exit 1."""
    extra = ["--rpm", "3"] if command == "update" else []
    err = keys(command, "key_0000000000000000", *extra, code=1)
    assert err.startswith("llmrelay keys: error:") and "'key_0000000000000000'" in err


@pytest.mark.parametrize(
    ("argv", "option", "problem"),
    [
        (["create", "--budget", "5/week"], "--budget", "5/day"),
        (["create", "--budget", "-5"], "--budget", "5/day"),
        (["create", "--expires", "soon"], "--expires", "30d"),
        (["create", "--expires", "2001-01-01"], "--expires", "already past"),
        (["create", "--rpm", "0"], "--rpm", "at least 1"),
        (["create", "--tpm", "many"], "--tpm", "at least 1"),
        (["create", "--meta", "novalue"], "--meta", "KEY=VALUE"),
        (["update", "k", "--expires", "1d", "--no-expiry"], "--no-expiry", "not allowed"),
        (["update", "k", "--group", "a", "--all-groups"], "--all-groups", "not allowed"),
    ],
)
def test_bad_options_exit_2_naming_the_option(
    keys: Keys, argv: list[str], option: str, problem: str
) -> None:
    """A value an option cannot take is refused by name, with exit status 2."""
    err = keys.refused(*argv)
    assert option in err and problem in err and "Traceback" not in err


def test_values_the_store_refuses_are_reported_as_options(keys: Keys) -> None:
    """A name too long or an empty group is an error naming --name or --group, exit 2."""
    assert "--name: at most 200 characters" in keys("create", "--name", "n" * 201, code=2)
    assert "--group: a group name is empty" in keys("create", "--group", " ", code=2)
    keys("create", "--name", "k")
    assert "--group: a group name is empty" in keys("update", "k", "--group", "", code=2)


def test_update_without_changes_is_an_error(keys: Keys) -> None:
    """update with no option changes nothing and says so, exit 2."""
    keys("create", "--name", "k")
    assert "nothing to change" in keys("update", "k", code=2)


def test_every_option_has_help() -> None:
    """Each option and argument of every sub-command has a --help text."""
    top = parser()
    subs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"create", "list", "show", "update", "revoke"}
    for name, sub in [("keys", top), *subs.choices.items()]:
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction):
                assert action.help, f"{name} {action.option_strings or action.dest}"


def test_the_store_comes_from_the_config_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--config (before or after the sub-command, or LLMRELAY_CONFIG) names the store by
    its server.keys section."""
    store = tmp_path / "from-config.sqlite"
    config = tmp_path / "llmrelay.yaml"
    config.write_text(CONFIG % json.dumps({"path": str(store)}))
    assert (
        keys_cli.run(parser().parse_args(["--config", str(config), "create", "--name", "a"])) == 0
    )
    assert (
        keys_cli.run(parser().parse_args(["create", "--config", str(config), "--name", "b"])) == 0
    )
    monkeypatch.setenv("LLMRELAY_CONFIG", str(config))
    capsys.readouterr()
    assert keys_cli.run(parser().parse_args(["list", "--json"])) == 0
    assert [k["name"] for k in json.loads(capsys.readouterr().out)] == ["a", "b"]
    assert store.exists()


def test_a_bad_config_file_exits_2_with_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config whose server.keys is invalid is reported by key, without a traceback."""
    config = tmp_path / "llmrelay.yaml"
    config.write_text(CONFIG % "{stor: postgres}")
    assert keys_cli.run(parser().parse_args(["--config", str(config), "list"])) == 2
    err = capsys.readouterr().err
    assert "server.keys.stor" in err and "Traceback" not in err


def test_keys_live_in_postgres_when_the_config_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], postgres_url: str
) -> None:
    """With server.keys.store postgres, keys made by the command are in PostgreSQL."""
    config = tmp_path / "llmrelay.yaml"
    config.write_text(CONFIG % json.dumps({"store": "postgres", "database_url": postgres_url}))
    args = ["--config", str(config)]
    assert keys_cli.run(parser().parse_args([*args, "create", "--name", "pg", "--json"])) == 0
    made = json.loads(capsys.readouterr().out)["key"]
    assert keys_cli.run(parser().parse_args([*args, "revoke", "pg"])) == 0
    assert f"revoked {made['id']} (pg)" in capsys.readouterr().out
    assert keys_cli.run(parser().parse_args([*args, "list", "--all", "--json"])) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(k["id"], k["status"]) for k in listed] == [(made["id"], "revoked")]


async def test_a_revocation_from_another_process_reaches_an_open_store(tmp_path: Path) -> None:
    """A key revoked by the command in another process moves an open store's revision,
    and the open store then finds the key revoked."""
    path = tmp_path / "keys.sqlite"
    store = SqliteKeyStore(path)
    try:
        made, secret = await store.create(KeySpec(name="live", budgets=[KeyBudget(1.0)]))
        before = await store.revision()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", RUN_KEYS, "--store-path", str(path), "revoke", made.id],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert await store.revision() != before
        found = await store.find(secret)
        assert found is not None and found.status(time.time()) == "revoked"
    finally:
        await store.aclose()
