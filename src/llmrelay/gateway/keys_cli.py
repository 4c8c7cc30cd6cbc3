"""``llmrelay keys create | list | show | update | revoke``: the gateway's virtual keys.

``configure`` and ``run`` are what :mod:`llmrelay.cli` registers; the store, the
configuration and rich are imported inside ``run``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from llmrelay.gateway.keys import KeyChanges, KeySpec, KeyStore, VirtualKey
    from llmrelay.gateway.settings import KeyStoreSettings

CONFIG_VARIABLE = "LLMRELAY_CONFIG"
_Built = TypeVar("_Built")

DESCRIPTION = (
    "Make, list, show, change and revoke the gateway's virtual keys. A key's secret "
    "(sk-relay-…) is printed once, when the key is made: the store keeps only its hash, and "
    "every other command names the key by its id (key_…) or its name. The store is the "
    f"server.keys section of --config (default: the {CONFIG_VARIABLE} variable); "
    "--store-path names a SQLite file instead; without either, the default SQLite file "
    "~/.llmrelay/keys.sqlite."
)

_UNITS = {"m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_BUDGET = re.compile(r"^\s*\$?\s*(\d+(?:\.\d+)?)\s*(?:/\s*(day|month)\s*)?$")


# -- option values ----------------------------------------------------------------------------


def budget(text: str) -> tuple[float, Literal["day", "month"]]:
    """``5/day``, ``$100/month`` or ``5`` (a day) as ``(usd, period)``."""
    match = _BUDGET.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected dollars per period, such as 5/day, 100/month or 5 (a day)"
        )
    return float(match.group(1)), "month" if match.group(2) == "month" else "day"


def expiry(text: str, now: float | None = None) -> float:
    """``30d`` from now (units m, h, d, w), or an ISO date or time (local time unless it
    gives an offset), as Unix time; a moment already past is refused."""
    now = time.time() if now is None else now
    match = _DURATION.match(text)
    if match:
        when = now + float(match.group(1)) * _UNITS[match.group(2)]
    else:
        try:
            when = datetime.fromisoformat(text.strip()).timestamp()
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected a duration from now such as 12h, 30d or 2w, or an ISO "
                "date or time such as 2027-01-01 or 2027-01-01T12:00"
            ) from None
    if when <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is already past")
    return when


def meta(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as a pair."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, such as team=search")
    return name.strip(), value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return value


# -- the parser -------------------------------------------------------------------------------


def _store_options(parser: argparse.ArgumentParser, default: Any) -> None:
    """``--config`` and ``--store-path``, accepted before and after the sub-command."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default,
        help=f"configuration whose server.keys section names the store (default: the "
        f"{CONFIG_VARIABLE} variable, else the default SQLite file)",
    )
    parser.add_argument(
        "--store-path",
        metavar="PATH",
        default=default,
        help="the keys' SQLite file itself (overrides --config)",
    )


def _key_options(parser: argparse.ArgumentParser, *, update: bool) -> None:
    """What ``create`` sets and ``update`` changes."""
    parser.add_argument("--name", help="a name to tell the key by (and to name it in commands)")
    groups = parser.add_mutually_exclusive_group()
    groups.add_argument(
        "--group",
        dest="groups",
        action="append",
        metavar="GROUP",
        help="a model group the key may use; repeat for more"
        + (" (replaces the key's groups)" if update else " (default: every group)"),
    )
    parser.add_argument(
        "--rpm", type=positive, metavar="N", help="requests per minute the key may make"
    )
    parser.add_argument(
        "--tpm", type=positive, metavar="N", help="tokens per minute the key may use"
    )
    budgets = parser.add_mutually_exclusive_group()
    budgets.add_argument(
        "--budget",
        dest="budgets",
        action="append",
        type=budget,
        metavar="USD[/day|/month]",
        help="spend allowed per calendar day or month, such as 5/day; repeat for both"
        + (" (replaces the key's budgets)" if update else ""),
    )
    expires = parser.add_mutually_exclusive_group()
    expires.add_argument(
        "--expires",
        type=expiry,
        metavar="WHEN",
        help="when the key stops working: a duration from now (12h, 30d, 2w) or an ISO date "
        "or time (2027-01-01)",
    )
    parser.add_argument(
        "--meta",
        dest="metadata",
        action="append",
        type=meta,
        metavar="KEY=VALUE",
        help="a label kept with the key; repeat for more"
        + (" (added to the key's labels)" if update else ""),
    )
    if update:
        groups.add_argument(
            "--all-groups", action="store_true", help="let the key use every model group"
        )
        budgets.add_argument("--no-budget", action="store_true", help="drop the key's budgets")
        expires.add_argument("--no-expiry", action="store_true", help="the key never expires")
        parser.add_argument(
            "--clear-meta",
            action="store_true",
            help="drop the key's labels (before adding those of --meta)",
        )
        parser.add_argument(
            "--admin",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="whether the key may use the admin API and the dashboard",
        )
    else:
        parser.add_argument(
            "--admin",
            action="store_true",
            help="let the key use the admin API (/admin/keys) and the dashboard",
        )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def configure(parser: argparse.ArgumentParser) -> None:
    """The ``keys`` command's sub-commands and options."""
    _store_options(parser, None)
    sub = parser.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        made = sub.add_parser(name, help=help, description=description)
        _store_options(made, argparse.SUPPRESS)
        return made

    create = command(
        "create",
        "make a key and print its secret (shown this once only)",
        "Make a virtual key and print its secret, once: only its hash is stored.",
    )
    _key_options(create, update=False)
    _json_option(create)

    listing = command("list", "list the keys", "List the keys, oldest first.")
    listing.add_argument("--all", action="store_true", help="revoked keys too")
    _json_option(listing)

    show = command("show", "show one key", "Show one key (never its secret).")
    show.add_argument("key", metavar="ID", help="the key's id, or its name")
    _json_option(show)

    update = command(
        "update",
        "change a key's name, groups, limits, budgets, expiry or labels",
        "Change what the options name; everything else stays as it is.",
    )
    update.add_argument("key", metavar="ID", help="the key's id, or its name")
    _key_options(update, update=True)
    _json_option(update)

    revoke = command(
        "revoke",
        "revoke a key: it stops working at once, everywhere",
        "Revoke a key: every gateway sharing the store refuses it from its next request. "
        "Revoking a revoked key changes nothing.",
    )
    revoke.add_argument("key", metavar="ID", help="the key's id, or its name")
    _json_option(revoke)


# -- running ----------------------------------------------------------------------------------


def store_settings(args: argparse.Namespace) -> KeyStoreSettings:
    """``--store-path``, else ``--config``'s (or ``$LLMRELAY_CONFIG``'s) ``server.keys``,
    else the default SQLite store."""
    from llmrelay.gateway.settings import KeyStoreSettings, ServerSettings

    if getattr(args, "store_path", None):
        return KeyStoreSettings(store="sqlite", path=args.store_path)
    path = getattr(args, "config", None) or os.environ.get(CONFIG_VARIABLE)
    if not path:
        return KeyStoreSettings()
    from llmrelay.config import load_settings

    server = load_settings(path, sections={"server": ServerSettings}).server
    return (server or ServerSettings()).keys


def run(args: argparse.Namespace) -> int:
    """Run one sub-command: 0 when done, 1 for an unknown key, 2 for other errors."""
    from llmrelay.errors import LLMRelayError
    from llmrelay.gateway.keys import KeyNotFound

    try:
        return asyncio.run(_run(args))
    except KeyNotFound as exc:
        print(f"llmrelay keys: error: {exc}", file=sys.stderr)
        return 1
    except LLMRelayError as exc:
        print(f"llmrelay keys: error: {exc}", file=sys.stderr)
        return 2


async def _run(args: argparse.Namespace) -> int:
    from llmrelay.gateway.keys import open_key_store

    store = open_key_store(store_settings(args))
    try:
        await _COMMANDS[args.keys_command](store, args)
    finally:
        await store.aclose()
    return 0


async def _create(store: KeyStore, args: argparse.Namespace) -> None:
    key, secret = await store.create(_spec(args))
    if args.json:
        _print_json({"secret": secret, "key": key.public()})
        return
    label = f" ({key.name})" if key.name else ""
    print(f"created key {key.id}{label}")
    print(f"secret: {secret}")
    print(
        "The secret is not shown again (only its hash is stored): keep it now. Other "
        f"commands name the key by its id, {key.id}."
    )


async def _list(store: KeyStore, args: argparse.Namespace) -> None:
    keys = await store.list(include_revoked=args.all)
    if args.json:
        _print_json([k.public() for k in keys])
    elif not keys:
        print("no keys" + ("" if args.all else " (--all shows revoked ones too)"))
    else:
        _print_table(keys)


async def _show(store: KeyStore, args: argparse.Namespace) -> None:
    _print_key(await store.get(args.key), args.json)


async def _update(store: KeyStore, args: argparse.Namespace) -> None:
    current = await store.get(args.key)
    changes = _changes(args, current)
    if changes is None:
        from llmrelay.errors import ConfigError

        raise ConfigError("update: nothing to change (give at least one option; see --help)")
    _print_key(await store.update(current.id, changes), args.json)


async def _revoke(store: KeyStore, args: argparse.Namespace) -> None:
    before = await store.get(args.key)
    key = await store.revoke(before.id)
    if args.json:
        _print_json(key.public())
    elif before.revoked_at is not None:
        print(f"{_label(key)} was already revoked on {_moment(before.revoked_at)}")
    else:
        print(f"revoked {_label(key)}: gateways refuse it from their next request")


_COMMANDS: dict[str, Callable[[KeyStore, argparse.Namespace], Any]] = {
    "create": _create,
    "list": _list,
    "show": _show,
    "update": _update,
    "revoke": _revoke,
}


_OPTIONS = {"name": "--name", "groups": "--group", "expires_at": "--expires"}
"""The option of each field whose value the store may still refuse."""


def _checked(build: Callable[[], _Built]) -> _Built:
    """What ``build`` makes, a refused field reported as the option that gave it."""
    from llmrelay.errors import BadRequest, ConfigError

    try:
        return build()
    except BadRequest as exc:
        field, _, problem = exc.message.partition(": ")
        raise ConfigError(f"{_OPTIONS.get(field, field)}: {problem}") from None


def _spec(args: argparse.Namespace) -> KeySpec:
    from llmrelay.gateway.keys import KeyBudget, KeySpec

    return _checked(
        lambda: KeySpec(
            name=args.name or "",
            groups=args.groups,
            rpm=args.rpm,
            tpm=args.tpm,
            budgets=[KeyBudget(usd, period) for usd, period in args.budgets or ()],
            expires_at=args.expires,
            metadata=dict(args.metadata or ()),
            admin=args.admin,
        )
    )


def _changes(args: argparse.Namespace, current: VirtualKey) -> KeyChanges | None:
    """The changes the options ask for (labels of ``--meta`` added to ``current``'s unless
    ``--clear-meta``); ``None`` when they ask for none."""
    from llmrelay.gateway.keys import KeyBudget, KeyChanges

    given: dict[str, Any] = {}
    if args.name is not None:
        given["name"] = args.name
    if args.groups is not None or args.all_groups:
        given["groups"] = args.groups
    for field in ("rpm", "tpm", "admin"):
        if getattr(args, field) is not None:
            given[field] = getattr(args, field)
    if args.budgets is not None or args.no_budget:
        given["budgets"] = [KeyBudget(usd, period) for usd, period in args.budgets or ()]
    if args.expires is not None or args.no_expiry:
        given["expires_at"] = args.expires
    if args.metadata is not None or args.clear_meta:
        kept = {} if args.clear_meta else current.metadata
        given["metadata"] = kept | dict(args.metadata or ())
    return _checked(lambda: KeyChanges(**given)) if given else None


# -- output -----------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _label(key: VirtualKey) -> str:
    return f"{key.id} ({key.name})" if key.name else key.id


def _moment(when: float, form: str = "%Y-%m-%d %H:%M %Z") -> str:
    return datetime.fromtimestamp(when).astimezone().strftime(form)


def _groups(key: VirtualKey) -> str:
    return "all" if key.groups is None else ", ".join(key.groups) or "none"


def _budgets(key: VirtualKey) -> str:
    return ", ".join(f"${b.usd:g}/{b.period}" for b in key.budgets) or "-"


def _optional(value: object) -> str:
    return "-" if value is None else str(value)


def _print_table(keys: list[VirtualKey]) -> None:
    from rich.console import Console
    from rich.table import Table

    now = time.time()
    table = Table(box=None, pad_edge=False)
    for column in ("id", "name", "prefix", "groups", "rpm", "tpm", "budgets", "expires"):
        table.add_column(column, no_wrap=column == "id", overflow="fold")
    table.add_column("status", no_wrap=True)
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.prefix + "…",
            _groups(key),
            _optional(key.rpm),
            _optional(key.tpm),
            _budgets(key),
            "never" if key.expires_at is None else _moment(key.expires_at, "%Y-%m-%d %H:%M"),
            key.status(now),
        )
    console = Console()
    if not console.is_terminal:  # a file or a pipe has no width: cut nothing
        console = Console(width=200)
    console.print(table)


def _print_key(key: VirtualKey, as_json: bool) -> None:
    if as_json:
        _print_json(key.public())
        return
    rows = [
        ("id", key.id),
        ("name", key.name or "-"),
        ("prefix", key.prefix + "…"),
        ("status", key.status(time.time())),
        ("created", _moment(key.created_at)),
        ("groups", _groups(key)),
        ("rpm", _optional(key.rpm)),
        ("tpm", _optional(key.tpm)),
        ("budgets", _budgets(key)),
        ("expires", "never" if key.expires_at is None else _moment(key.expires_at)),
        ("admin", "yes" if key.admin else "no"),
        ("metadata", ", ".join(f"{k}={v}" for k, v in key.metadata.items()) or "-"),
    ]
    if key.revoked_at is not None:
        rows.append(("revoked", _moment(key.revoked_at)))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


__all__ = ["CONFIG_VARIABLE", "DESCRIPTION", "configure", "run", "store_settings"]
