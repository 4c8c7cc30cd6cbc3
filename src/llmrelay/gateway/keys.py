"""Virtual keys: the gateway's own API keys, with groups, rate limits, budgets and expiry.

A key is shown to its owner once, when it is made (``sk-relay-…``); the store keeps only
its SHA-256 hash and finds a key by hashing what a caller sends. Callers, budgets and the
spend ledger know a key by its public ``id`` (``key_…``), never by its secret.

Two stores answer the same :class:`KeyStore` protocol with the same SQL: a SQLite file
(the default; processes on one machine share it) and PostgreSQL (replicas share it). Both
tell, cheaply, whether any process changed any key since the last look
(:meth:`KeyStore.revision`), so a gateway can cache keys and still see a revocation at
once.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import hashlib
import math
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec
from msgspec import UNSET, UnsetType

from llmrelay.analytics.store import redacted
from llmrelay.budget.limits import BudgetLimit
from llmrelay.errors import BadRequest, ConfigError, LLMRelayError
from llmrelay.gateway.settings import KeyStoreSettings
from llmrelay.sqlite import open_sqlite

SECRET_PREFIX = "sk-relay-"
PREFIX_CHARS = 12
"""Characters of the secret kept in the clear (``prefix``) so people can tell keys apart."""
NAME_MAX_CHARS = 200

Status = Literal["active", "revoked", "expired"]


class KeyBudget(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``usd`` per calendar ``period`` spent through one key."""

    usd: float
    period: Literal["day", "month"] = "day"

    def __post_init__(self) -> None:
        if not self.usd >= 0:  # ``not >=`` also refuses NaN
            raise ValueError(f"usd must be >= 0, got {self.usd}")
        if math.isinf(self.usd):
            raise ValueError("usd must be finite")


class VirtualKey(msgspec.Struct, frozen=True, kw_only=True):
    """One key as stored (without its hash) and as the gateway checks requests against it."""

    id: str
    """``key_`` and 16 hex digits: public; budgets and the ledger count by it."""
    prefix: str
    """The secret's first characters, for display."""
    created_at: float
    name: str = ""
    groups: tuple[str, ...] | None = None
    """The model groups it may use (any case); ``None``: every group."""
    rpm: int | None = None
    tpm: int | None = None
    budgets: tuple[KeyBudget, ...] = ()
    expires_at: float | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    admin: bool = False
    """May use the admin API (``/admin/keys``) and the dashboard."""
    revoked_at: float | None = None

    def status(self, now: float) -> Status:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def allows(self, group: str) -> bool:
        """Whether the key may call model group ``group`` (names compared case-insensitively)."""
        if self.groups is None:
            return True
        wanted = group.casefold()
        return any(g.casefold() == wanted for g in self.groups)

    def budget_limits(self) -> list[BudgetLimit]:
        """The key's budgets as limits on its own spend (scope ``key``, value its id).

        They are named, and counted, by the key's id: two keys of one name never share a
        budget, and renaming a key does not start its spend afresh."""
        return [
            BudgetLimit(
                usd=b.usd,
                period=b.period,
                scope="key",
                value=self.id,
                name=f"key:{self.id}/{b.period}",
            )
            for b in self.budgets
        ]

    def public(self) -> dict[str, Any]:
        """The key as JSON-able data, with its ``status`` now (no hash: the store has it)."""
        data: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))  # lists, not tuples
        data["status"] = self.status(time.time())
        return data


def _check_fields(given: KeySpec | KeyChanges) -> None:
    """:class:`BadRequest` naming the first field of a new key or of changes that is out
    of range (run when either is built or decoded)."""
    name, groups, expires_at = given.name, given.groups, given.expires_at
    if isinstance(name, str) and len(name) > NAME_MAX_CHARS:
        raise BadRequest(f"name: at most {NAME_MAX_CHARS} characters, got {len(name)}")
    if isinstance(groups, list) and any(not g.strip() for g in groups):
        raise BadRequest("groups: a group name is empty")
    for field, value in (("rpm", given.rpm), ("tpm", given.tpm)):
        if isinstance(value, int) and value < 1:
            raise BadRequest(f"{field}: must be at least 1 when given, got {value}")
    if isinstance(expires_at, int | float) and not (math.isfinite(expires_at) and expires_at > 0):
        raise BadRequest(f"expires_at: must be a positive Unix time, got {expires_at}")


class KeySpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a new key gets; also the body of ``POST /admin/keys``."""

    name: str = ""
    groups: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budgets: list[KeyBudget] = []
    expires_at: float | None = None
    metadata: dict[str, str] = {}
    admin: bool = False

    def __post_init__(self) -> None:
        _check_fields(self)


class KeyChanges(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Body of ``PATCH /admin/keys/{id}``: only the fields given change; ``null`` clears
    ``groups`` (every group), ``rpm``, ``tpm`` and ``expires_at``."""

    name: str | UnsetType = UNSET
    groups: list[str] | UnsetType | None = UNSET
    rpm: int | UnsetType | None = UNSET
    tpm: int | UnsetType | None = UNSET
    budgets: list[KeyBudget] | UnsetType = UNSET
    expires_at: float | UnsetType | None = UNSET
    metadata: dict[str, str] | UnsetType = UNSET
    admin: bool | UnsetType = UNSET

    def __post_init__(self) -> None:
        _check_fields(self)

    def apply(self, key: VirtualKey) -> VirtualKey:
        """``key`` with these changes."""
        given = {
            f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not UNSET
        }
        if given.get("groups") is not None:
            given["groups"] = tuple(given["groups"])
        if "budgets" in given:
            given["budgets"] = tuple(given["budgets"])
        return msgspec.structs.replace(key, **given)


class KeyNotFound(LLMRelayError):
    """No key has this id (or this name, or more than one has it)."""

    def __init__(self, key_id: str, message: str | None = None) -> None:
        super().__init__(message or f"no key {key_id!r}")
        self.key_id = key_id


def new_secret() -> str:
    """A new key's secret: ``sk-relay-`` and 256 random bits, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest the store keeps and looks keys up by.

    A plain hash, not a slow password KDF: secrets are 256 random bits, so there is nothing
    to guess, and the lookup runs on every request.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyStore(Protocol):
    """Virtual keys, hashed; every method is safe with many processes sharing the store."""

    async def create(self, spec: KeySpec) -> tuple[VirtualKey, str]:
        """A new key and its secret (shown to the caller once; only its hash is kept)."""
        ...

    async def find(self, secret: str) -> VirtualKey | None:
        """The key of this secret, revoked or expired too; ``None`` for an unknown one."""
        ...

    async def get(self, key_id: str) -> VirtualKey:
        """The key of this id, or of this name when one key has it; else :class:`KeyNotFound`."""
        ...

    async def list(self, *, include_revoked: bool = False) -> builtins.list[VirtualKey]:
        """Keys, oldest first (expired ones included; revoked ones on request)."""
        ...

    async def update(self, key_id: str, changes: KeyChanges) -> VirtualKey:
        """The key (id or unique name) with ``changes`` saved."""
        ...

    async def revoke(self, key_id: str) -> VirtualKey:
        """The key, revoked (a key revoked before keeps its first ``revoked_at``)."""
        ...

    async def revision(self) -> int:
        """A number that changes whenever a key changes, in any process sharing the store;
        cheap enough to call on every request."""
        ...

    async def aclose(self) -> None: ...


# -- SQL shared by both stores (``?`` placeholders) ------------------------------------------

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS llmrelay_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, "
    "name TEXT NOT NULL, created_at {real} NOT NULL, revoked_at {real}, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS llmrelay_keys_name ON llmrelay_keys (name)",
    "CREATE INDEX IF NOT EXISTS llmrelay_keys_created ON llmrelay_keys (created_at)",
)
_INSERT = (
    "INSERT INTO llmrelay_keys (id, hash, name, created_at, revoked_at, body) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_UPDATE = "UPDATE llmrelay_keys SET name = ?, revoked_at = ?, body = ? WHERE id = ?"
_BY_HASH = "SELECT body FROM llmrelay_keys WHERE hash = ?"
_BY_ID = "SELECT body FROM llmrelay_keys WHERE id = ?"
_BY_NAME = "SELECT body FROM llmrelay_keys WHERE name = ? ORDER BY created_at"
_ALL = "SELECT body FROM llmrelay_keys{where} ORDER BY created_at, id"

_decode = msgspec.json.Decoder(VirtualKey).decode
_encode = msgspec.json.Encoder().encode


class _Session(Protocol):
    """SQL on one connection; inside a write session, all in one transaction."""

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    async def changed(self) -> None:
        """Note that this transaction changed a key (the revision moves when it commits)."""
        ...


def _keys(rows: Sequence[tuple[Any, ...]]) -> list[VirtualKey]:
    return [_decode(row[0]) for row in rows]


class _SqlKeyStore(abc.ABC):
    """What both stores do, written once over a :class:`_Session`."""

    _for_update = ""
    """Appended to a read inside a write transaction (PostgreSQL locks the row)."""

    @abc.abstractmethod
    def _reading(self) -> contextlib.AbstractAsyncContextManager[_Session]:
        """A session for reads."""

    @abc.abstractmethod
    def _writing(self) -> contextlib.AbstractAsyncContextManager[_Session]:
        """A session whose statements commit together."""

    async def create(self, spec: KeySpec) -> tuple[VirtualKey, str]:
        secret = new_secret()
        key = VirtualKey(
            id="key_" + secrets.token_hex(8),
            prefix=secret[:PREFIX_CHARS],
            created_at=time.time(),
            name=spec.name,
            groups=None if spec.groups is None else tuple(spec.groups),
            rpm=spec.rpm,
            tpm=spec.tpm,
            budgets=tuple(spec.budgets),
            expires_at=spec.expires_at,
            metadata=dict(spec.metadata),
            admin=spec.admin,
        )
        row = (key.id, hash_secret(secret), key.name, key.created_at, None, _encode(key).decode())
        async with self._writing() as session:
            await session.run(_INSERT, row)
            await session.changed()
        return key, secret

    async def find(self, secret: str) -> VirtualKey | None:
        async with self._reading() as session:
            found = _keys(await session.rows(_BY_HASH, (hash_secret(secret),)))
        return found[0] if found else None

    async def get(self, key_id: str) -> VirtualKey:
        async with self._reading() as session:
            return await self._resolve(session, key_id)

    async def list(self, *, include_revoked: bool = False) -> builtins.list[VirtualKey]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        async with self._reading() as session:
            return _keys(await session.rows(_ALL.format(where=where)))

    async def update(self, key_id: str, changes: KeyChanges) -> VirtualKey:
        async with self._writing() as session:
            key = changes.apply(await self._resolve(session, key_id, self._for_update))
            await self._save(session, key)
        return key

    async def revoke(self, key_id: str) -> VirtualKey:
        async with self._writing() as session:
            key = await self._resolve(session, key_id, self._for_update)
            if key.revoked_at is None:
                key = msgspec.structs.replace(key, revoked_at=time.time())
                await self._save(session, key)
        return key

    @staticmethod
    async def _save(session: _Session, key: VirtualKey) -> None:
        await session.run(_UPDATE, (key.name, key.revoked_at, _encode(key).decode(), key.id))
        await session.changed()

    @staticmethod
    async def _resolve(session: _Session, key_id: str, suffix: str = "") -> VirtualKey:
        """The key of id ``key_id``, else the one key named so (an active one before
        revoked ones of the same name)."""
        found = _keys(await session.rows(_BY_ID + suffix, (key_id,)))
        if found:
            return found[0]
        named = _keys(await session.rows(_BY_NAME + suffix, (key_id,)))
        if len(named) > 1:
            named = [k for k in named if k.revoked_at is None]
        if len(named) == 1:
            return named[0]
        if not named:
            raise KeyNotFound(key_id, f"no key with id or name {key_id!r}")
        ids = ", ".join(k.id for k in named)
        raise KeyNotFound(key_id, f"{len(named)} keys are named {key_id!r} ({ids}): give the id")


# -- SQLite ---------------------------------------------------------------------------------


class _SqliteSession:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.wrote = False

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, tuple(params)).fetchall()

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.db.execute(sql, tuple(params))

    async def changed(self) -> None:
        self.wrote = True


class SqliteKeyStore(_SqlKeyStore):
    """Keys in one SQLite file (WAL); processes on one machine may share it.

    Statements run on the event loop's thread: each is one indexed lookup or one short
    ``BEGIN IMMEDIATE`` transaction, and nothing awaits while one is open.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        schema = [s.format(real="REAL") for s in _SCHEMA]
        self._db: sqlite3.Connection | None = open_sqlite(
            self.path, key="server.keys.path", busy_timeout_s=10.0, schema=schema
        )
        self._seen = self._data_version(self._db)
        self._revision = 0

    @staticmethod
    def _data_version(db: sqlite3.Connection) -> int:
        version: int = db.execute("PRAGMA data_version").fetchone()[0]
        return version

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise LLMRelayError(f"the key store {self.path} is closed")
        return self._db

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[_Session]:
        yield _SqliteSession(self._connection())

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Session]:
        db = self._connection()
        session = _SqliteSession(db)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield session
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if session.wrote:
            self._revision += 1

    async def revision(self) -> int:
        # ``data_version`` moves only for other connections' commits; this store's own
        # writes are counted as they commit.
        version = self._data_version(self._connection())
        if version != self._seen:
            self._seen = version
            self._revision += 1
        return self._revision

    async def aclose(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# -- PostgreSQL -----------------------------------------------------------------------------


def _pg(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


_PG_SCHEMA = (
    *(s.format(real="DOUBLE PRECISION") for s in _SCHEMA),
    "CREATE TABLE IF NOT EXISTS llmrelay_key_revision (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "revision BIGINT NOT NULL)",
    "INSERT INTO llmrelay_key_revision (id, revision) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
)
_PG_BUMP = "UPDATE llmrelay_key_revision SET revision = revision + 1 WHERE id = 1"
_PG_REVISION = "SELECT revision FROM llmrelay_key_revision WHERE id = 1"


class _PostgresSession:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cursor = await self.conn.execute(_pg(sql), tuple(params))
        found: list[tuple[Any, ...]] = await cursor.fetchall()
        return found

    async def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        await self.conn.execute(_pg(sql), tuple(params))

    async def changed(self) -> None:
        await self.conn.execute(_PG_BUMP)


class PostgresKeyStore(_SqlKeyStore):
    """Keys in PostgreSQL, shared by every replica (psycopg 3, one connection per store).

    The connection opens on the first call (and again after it breaks); the tables are
    created then if missing. Every change bumps a one-row counter in its own transaction,
    so :meth:`revision` is one ``SELECT``.
    """

    _for_update = " FOR UPDATE"

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        import asyncio

        self.url = url
        self._timeout = max(1, round(connect_timeout_s))
        self._lock = asyncio.Lock()
        self._conn: Any = None
        self._schema_ready = False
        self._closed = False

    async def _connection(self) -> Any:
        """The open connection (call with the lock held)."""
        if self._closed:
            raise LLMRelayError(f"the key store {redacted(self.url)} is closed")
        if self._conn is not None and not (self._conn.closed or self._conn.broken):
            return self._conn
        try:
            import psycopg  # the ``postgres`` extra
        except ImportError:
            raise ConfigError(
                "server.keys.store: postgres needs psycopg (pip install 'llmrelay[postgres]')"
            ) from None
        try:
            self._conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=self._timeout
            )
            if not self._schema_ready:
                async with self._conn.transaction():
                    # Two processes creating the same tables at once would collide.
                    await self._conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext('llmrelay.keys'))"
                    )
                    for statement in _PG_SCHEMA:
                        await self._conn.execute(statement)
                self._schema_ready = True
        except psycopg.Error as exc:
            await self._drop()
            raise ConfigError(
                f"server.keys.database_url: cannot open {redacted(self.url)}: {exc}"
            ) from None
        return self._conn

    async def _drop(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[_Session]:
        async with self._lock:
            yield _PostgresSession(await self._connection())

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[_Session]:
        async with self._lock:
            conn = await self._connection()
            async with conn.transaction():
                yield _PostgresSession(conn)

    async def revision(self) -> int:
        async with self._lock:
            cursor = await (await self._connection()).execute(_PG_REVISION)
            row = await cursor.fetchone()
        return int(row[0])

    async def aclose(self) -> None:
        async with self._lock:
            self._closed = True
            await self._drop()


def database_url(settings: KeyStoreSettings) -> str:
    """``server.keys.database_url``, else the ``DATABASE_URL`` variable."""
    url = settings.database_url or os.environ.get("DATABASE_URL")
    if not url:
        raise ConfigError(
            "server.keys.database_url: required for store postgres (or set DATABASE_URL)"
        )
    return url


def open_key_store(settings: KeyStoreSettings) -> KeyStore:
    """The store ``settings`` name (a SQLite file is opened now; PostgreSQL on first use)."""
    if settings.store == "postgres":
        return PostgresKeyStore(database_url(settings))
    return SqliteKeyStore(settings.path)


__all__ = [
    "KeyBudget",
    "KeyChanges",
    "KeyNotFound",
    "KeySpec",
    "KeyStore",
    "PostgresKeyStore",
    "SqliteKeyStore",
    "VirtualKey",
    "database_url",
    "hash_secret",
    "new_secret",
    "open_key_store",
]
