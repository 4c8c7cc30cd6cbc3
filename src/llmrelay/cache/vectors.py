"""Where semantic cache entries live: SQLite on one machine, Redis shared by replicas.

A store keeps each entry (id, context key, text, vector, value, expiry) and tells each
reader, through :meth:`VectorStore.changes`, the entries added since that reader last asked,
so every replica keeps its local index in step with the shared store:

- SQLite: rows carry an increasing ``seq``; a reader selects ``seq >`` the last it saw.
  Several processes may share the file (WAL mode).
- Redis: each entry is a hash (``{prefix}e:{id}``) that expires with the entry, and each add
  is appended to a stream (``{prefix}log``, ``XADD MAXLEN ~``) without the value. A reader
  ``XREAD``\\ s from its last stream id (non-blocking, one round trip). On its first call, or
  when the stream was trimmed past what it had seen, it reloads every live entry by
  ``SCAN`` and says so (``Changes.reset``).

Values are fetched from the store only on a hit (:meth:`VectorStore.value`), so replicas
hold vectors, not answers. Each store owns its connection and closes it in ``aclose``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

if TYPE_CHECKING:
    import redis.asyncio
    from redis.typing import EncodableT, FieldT


class Entry(msgspec.Struct, frozen=True):
    """One cached question, without its answer: ``vector`` is float32 bytes."""

    id: str
    context: str
    text: str
    vector: bytes
    expires: float | None


@dataclass(frozen=True, slots=True)
class Changes:
    """Entries added since the reader's previous call; ``reset`` means "this is everything:
    forget what you had" (first call, or the reader fell too far behind)."""

    entries: list[Entry]
    reset: bool


class VectorStore(Protocol):
    """The persisted side of the semantic cache."""

    async def add(self, entry: Entry, value: bytes, *, ttl_s: float | None) -> None:
        """Store (or replace) an entry and its value; ``ttl_s`` matches ``entry.expires``."""
        ...

    async def changes(self, now: float) -> Changes:
        """Entries added since the previous call and not expired at ``now``."""
        ...

    async def value(self, entry_id: str) -> bytes | None:
        """The stored value, or ``None`` when the entry is gone."""
        ...

    async def purge(self, now: float) -> None:
        """Delete entries expired at ``now`` (a store whose entries expire by themselves
        does nothing)."""
        ...

    async def aclose(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS semantic_entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    context TEXT NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL,
    value BLOB NOT NULL,
    expires REAL
)
"""


class SqliteVectorStore:
    """Entries in one SQLite file (or ``":memory:"``); blocking calls run in a thread."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._seen = 0

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(_SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, work: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return work(self._connection(), *args)

        return await asyncio.to_thread(locked)

    async def add(self, entry: Entry, value: bytes, *, ttl_s: float | None) -> None:
        def add(conn: sqlite3.Connection) -> None:
            # A new row (not an update) so that readers see the replaced entry as new.
            with conn:
                conn.execute("DELETE FROM semantic_entries WHERE id = ?", (entry.id,))
                conn.execute(
                    "INSERT INTO semantic_entries (id, context, text, vector, value, expires)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (entry.id, entry.context, entry.text, entry.vector, value, entry.expires),
                )

        await self._run(add)

    async def changes(self, now: float) -> Changes:
        def read(conn: sqlite3.Connection) -> Changes:
            reset = self._seen == 0
            rows = conn.execute(
                "SELECT seq, id, context, text, vector, expires FROM semantic_entries"
                " WHERE seq > ? ORDER BY seq",
                (self._seen,),
            ).fetchall()
            if rows:
                self._seen = rows[-1][0]
            entries = [
                Entry(id=r[1], context=r[2], text=r[3], vector=r[4], expires=r[5])
                for r in rows
                if r[5] is None or r[5] > now
            ]
            return Changes(entries, reset)

        result: Changes = await self._run(read)
        return result

    async def value(self, entry_id: str) -> bytes | None:
        def read(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute(
                "SELECT value FROM semantic_entries WHERE id = ?", (entry_id,)
            ).fetchone()
            return None if row is None else bytes(row[0])

        result: bytes | None = await self._run(read)
        return result

    async def purge(self, now: float) -> None:
        def purge(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("DELETE FROM semantic_entries WHERE expires <= ?", (now,))

        await self._run(purge)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)


_FIELDS = (b"context", b"text", b"vector", b"expires")


@dataclass(slots=True)
class RedisVectorStore:
    """Entries in Redis, shared by every replica that uses the same ``url`` and ``prefix``.

    ``stream_maxlen`` bounds the change stream (approximately, as ``XADD MAXLEN ~`` does); a
    replica that falls further behind reloads every entry once.
    """

    url: str
    prefix: str = "llmrelay:semantic:"
    stream_maxlen: int = 100_000
    timeout_s: float = 1.0
    read_batch: int = 1_000
    _client: redis.asyncio.Redis | None = field(default=None, init=False)
    _last_id: bytes | None = field(default=None, init=False)

    @property
    def _stream(self) -> str:
        return f"{self.prefix}log"

    def _key(self, entry_id: str) -> str:
        return f"{self.prefix}e:{entry_id}"

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            try:
                import redis.asyncio
            except ImportError as exc:
                from llmrelay.errors import ConfigError

                raise ConfigError(
                    f"RedisVectorStore needs the 'redis' extra: run `make install` ({exc})"
                ) from None
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout_s, socket_connect_timeout=self.timeout_s
            )
        return self._client

    async def add(self, entry: Entry, value: bytes, *, ttl_s: float | None) -> None:
        head: dict[FieldT, EncodableT] = {
            "id": entry.id,
            "context": entry.context,
            "text": entry.text,
            "vector": entry.vector,
            "expires": "" if entry.expires is None else repr(entry.expires),
        }
        key = self._key(entry.id)
        async with self._redis().pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={**head, "value": value})
            if ttl_s is not None:
                pipe.pexpire(key, max(1, int(ttl_s * 1000)))
            pipe.xadd(self._stream, head, maxlen=self.stream_maxlen, approximate=True)
            await pipe.execute()

    async def changes(self, now: float) -> Changes:
        client = self._redis()
        if self._last_id is None:
            return await self._reload(now)
        async with client.pipeline(transaction=False) as pipe:
            pipe.xrange(self._stream, "-", "+", count=1)
            pipe.xread({self._stream: self._last_id}, count=self.read_batch)
            first, read = await pipe.execute()
        if first and _stream_id(first[0][0]) > _stream_id(self._last_id):
            return await self._reload(now)  # trimmed past what this reader had seen
        entries: list[Entry] = []
        while read:
            records = read[0][1]
            for record_id, fields in records:
                self._last_id = _as_bytes(record_id)
                entry = _entry(fields)
                if entry is not None and (entry.expires is None or entry.expires > now):
                    entries.append(entry)
            if len(records) < self.read_batch:
                break
            read = await client.xread({self._stream: self._last_id}, count=self.read_batch)
        return Changes(entries, reset=False)

    async def _reload(self, now: float) -> Changes:
        client = self._redis()
        # The stream position is taken first: what is added during the scan is read again
        # from the stream next time, and adding an entry twice is harmless.
        last = await client.xrevrange(self._stream, "+", "-", count=1)
        entries: list[Entry] = []
        keys = [key async for key in client.scan_iter(match=f"{self.prefix}e:*", count=1000)]
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            async with client.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.hgetall(key)
                found = await pipe.execute()
            for fields in found:
                entry = _entry(fields) if fields else None
                if entry is not None and (entry.expires is None or entry.expires > now):
                    entries.append(entry)
        self._last_id = _as_bytes(last[0][0]) if last else b"0-0"
        return Changes(entries, reset=True)

    async def value(self, entry_id: str) -> bytes | None:
        found = await self._redis().hget(self._key(entry_id), "value")
        return None if found is None else _as_bytes(found)

    async def purge(self, now: float) -> None:
        """Nothing to do: entry hashes expire by themselves and the stream is trimmed."""

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _entry(fields: dict[bytes, bytes]) -> Entry | None:
    if not all(name in fields for name in (b"id", *_FIELDS)):
        return None
    expires = fields[b"expires"]
    return Entry(
        id=fields[b"id"].decode(),
        context=fields[b"context"].decode(),
        text=fields[b"text"].decode(),
        vector=fields[b"vector"],
        expires=float(expires) if expires else None,
    )


def _as_bytes(value: object) -> bytes:
    """A reply as bytes (the client does not decode, but its types say it might)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"unexpected Redis reply: {value!r}")


def _stream_id(record_id: bytes) -> tuple[int, int]:
    millis, _, seq = record_id.partition(b"-")
    return int(millis), int(seq or 0)


__all__ = ["Changes", "Entry", "RedisVectorStore", "SqliteVectorStore", "VectorStore"]
