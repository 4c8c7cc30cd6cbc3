"""Money: what every call cost, where it is recorded, and the router's meter.

The price of a call is :meth:`llmrelay.catalog.Price.micros` — each kind of token at its
own rate, in integer micro-dollars. :class:`Spending` is the router's
:class:`~llmrelay.router.Meter`: it holds each call's worst case on the budgets
(:mod:`llmrelay.budget`) and records every priced call, and every cache hit, in the spend
ledger.

The ledger is one append-only table, ``spend_ledger``: SQLite by default (a file), or
PostgreSQL through asyncpg — a single table written in batches needs no ORM, and asyncpg
is the fastest PostgreSQL driver for asyncio. Rows are written in batches by a task the
ledger owns (after ``flush_s`` or ``batch`` rows), and every row still queued is written
when it closes: nothing recorded is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from llmrelay.budget import Budgets, Who
from llmrelay.errors import ConfigError
from llmrelay.router import Spent
from llmrelay.sqlite import open_sqlite
from llmrelay.types import ChatRequest, Usage

log = logging.getLogger("llmrelay.cost")


class SpendRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the spend ledger: one priced call, or one cache hit (cost 0)."""

    at: float
    request_id: str
    group: str
    deployment: str
    key: str | None = None
    user: str | None = None
    tags: tuple[str, ...] = ()
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_micros: int = 0
    estimated: bool = False
    """The provider reported no usage; tokens and cost are estimates."""
    cache_hit: str | None = None
    """``exact`` or ``semantic`` when the answer came from the response cache."""
    saved_micros: int = 0


_COLUMNS = tuple(SpendRecord.__struct_fields__)


def record_of(
    request: ChatRequest,
    request_id: str,
    group: str,
    deployment: str,
    usage: Usage,
    cost_micros: int,
    *,
    at: float,
    cache_hit: str | None = None,
    saved_micros: int = 0,
) -> SpendRecord:
    return SpendRecord(
        at=at,
        request_id=request_id,
        group=group,
        deployment=deployment,
        key=request.key,
        user=request.user,
        tags=tuple(request.tags or ()),
        input_tokens=usage.input_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_input_tokens=usage.cache_write_input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        cost_micros=cost_micros,
        estimated=usage.estimated,
        cache_hit=cache_hit,
        saved_micros=saved_micros,
    )


class LedgerStore(Protocol):
    """Where ledger rows are written and summed."""

    async def write(self, rows: Sequence[SpendRecord]) -> None: ...

    async def totals(self, by: str = "deployment") -> dict[str, dict[str, int]]: ...

    async def aclose(self) -> None: ...


_SUMS = ("count(*)", "sum(input_tokens)", "sum(cached_input_tokens)",
         "sum(cache_write_input_tokens)", "sum(output_tokens)", "sum(cost_micros)",
         "sum(saved_micros)")  # fmt: skip
_SUM_NAMES = ("calls", "input_tokens", "cached_input_tokens", "cache_write_input_tokens",
              "output_tokens", "cost_micros", "saved_micros")  # fmt: skip
_GROUPINGS = ("deployment", "group", "key", "user")


def _grouping(by: str) -> str:
    if by not in _GROUPINGS:
        raise ValueError(f"totals by {by!r}: expected one of {', '.join(_GROUPINGS)}")
    return by if by != "group" else '"group"'


class SqliteLedger:
    """The ledger in one SQLite file (WAL; writes are short local transactions)."""

    def __init__(self, path: Path | str) -> None:
        self._db = open_sqlite(path, key="spend.path", busy_timeout_s=10.0, schema=[
            "CREATE TABLE IF NOT EXISTS spend_ledger (at REAL, request_id TEXT, "
            '"group" TEXT, deployment TEXT, key TEXT, user TEXT, tags TEXT, '
            "input_tokens INTEGER, cached_input_tokens INTEGER, "
            "cache_write_input_tokens INTEGER, output_tokens INTEGER, "
            "reasoning_tokens INTEGER, cost_micros INTEGER, estimated INTEGER, "
            "cache_hit TEXT, saved_micros INTEGER)"
        ])  # fmt: skip

    async def write(self, rows: Sequence[SpendRecord]) -> None:
        marks = ",".join("?" * len(_COLUMNS))
        values = [_row(r) for r in rows]
        with self._db:
            self._db.executemany(f"INSERT INTO spend_ledger VALUES ({marks})", values)

    async def totals(self, by: str = "deployment") -> dict[str, dict[str, int]]:
        column = _grouping(by)
        rows = self._db.execute(
            f"SELECT {column}, {', '.join(_SUMS)} FROM spend_ledger GROUP BY {column}"
        )
        return {str(r[0]): dict(zip(_SUM_NAMES, map(int, r[1:]), strict=True)) for r in rows}

    async def aclose(self) -> None:
        self._db.close()


def _row(record: SpendRecord) -> tuple[Any, ...]:
    values = list(msgspec.structs.astuple(record))
    values[_COLUMNS.index("tags")] = ",".join(record.tags)
    return tuple(values)


class PostgresLedger:
    """The ledger in PostgreSQL (asyncpg), shared by every replica."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None
        self._opening = asyncio.Lock()

    async def _connected(self) -> Any:
        async with self._opening:
            if self._pool is None:
                try:
                    import asyncpg  # type: ignore[import-untyped]
                except ImportError as exc:  # pragma: no cover - the ``postgres`` extra
                    raise ConfigError("spend.database_url needs the postgres extra") from exc
                self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
                await self._pool.execute(
                    "CREATE TABLE IF NOT EXISTS spend_ledger (at DOUBLE PRECISION, "
                    'request_id TEXT, "group" TEXT, deployment TEXT, key TEXT, "user" TEXT, '
                    "tags TEXT, input_tokens BIGINT, cached_input_tokens BIGINT, "
                    "cache_write_input_tokens BIGINT, output_tokens BIGINT, "
                    "reasoning_tokens BIGINT, cost_micros BIGINT, estimated BOOLEAN, "
                    "cache_hit TEXT, saved_micros BIGINT)"
                )
            return self._pool

    async def write(self, rows: Sequence[SpendRecord]) -> None:
        pool = await self._connected()
        await pool.copy_records_to_table(
            "spend_ledger", records=[_row(r) for r in rows], columns=list(_COLUMNS)
        )

    async def totals(self, by: str = "deployment") -> dict[str, dict[str, int]]:
        column = _grouping(by).replace("user", '"user"')
        pool = await self._connected()
        rows = await pool.fetch(
            f"SELECT {column}, {', '.join(_SUMS)} FROM spend_ledger GROUP BY {column}"
        )
        return {str(r[0]): dict(zip(_SUM_NAMES, map(int, r[1:]), strict=True)) for r in rows}

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()


LEDGERS: Mapping[str, Callable[..., LedgerStore]] = {
    "sqlite": lambda *, path, **_: SqliteLedger(path),
    "postgres": lambda *, database_url, **_: PostgresLedger(database_url),
}
"""Ledger backends by the name ``spend.ledger`` takes."""


class Ledger:
    """Queues rows and writes them in batches; :meth:`flush` and :meth:`aclose` write
    everything queued. A failed write keeps its rows for the next try and warns."""

    def __init__(self, store: LedgerStore, *, flush_s: float = 0.5, batch: int = 500) -> None:
        self.store = store
        self.flush_s = flush_s
        self.batch = batch
        self.recorded = 0
        self.write_errors = 0
        self._queue: list[SpendRecord] = []
        self._writer: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()

    def record(self, row: SpendRecord) -> None:
        self._queue.append(row)
        self.recorded += 1
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_soon())

    async def _write_soon(self) -> None:
        """Write what is queued every ``flush_s`` (at once when a batch is full), until
        nothing is left; a failed write is tried again at the next turn."""
        while self._queue:
            if len(self._queue) < self.batch:
                await asyncio.sleep(self.flush_s)
            await self.flush()

    async def flush(self) -> None:
        """Write every row queued so far."""
        async with self._writing:
            rows, self._queue = self._queue, []
            if not rows:
                return
            try:
                await self.store.write(rows)
            except Exception:
                self.write_errors += 1
                self._queue[:0] = rows  # kept for the next flush, in order
                log.warning("spend ledger: could not write %d rows", len(rows), exc_info=True)

    async def totals(self, by: str = "deployment") -> dict[str, dict[str, int]]:
        """Sums per deployment (or group, key, user) of everything recorded."""
        await self.flush()
        return await self.store.totals(by)

    async def aclose(self) -> None:
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        await self.flush()
        await self.store.aclose()


class Spending:
    """The router's meter: budgets (optional) and the spend ledger (optional)."""

    def __init__(
        self,
        budgets: Budgets | None = None,
        ledger: Ledger | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.budgets = budgets
        self.ledger = ledger
        self._clock = clock

    def prefer_cheaper(self, request: ChatRequest) -> bool:
        return self.budgets is not None and self.budgets.prefer_cheaper(Who.of(request))

    async def reserve(self, request: ChatRequest, worst_case_micros: int) -> Any:
        if self.budgets is None:
            return None
        return await self.budgets.reserve(Who.of(request), worst_case_micros)

    async def settle(self, hold: Any, spent: Spent) -> None:
        if self.ledger is not None:
            self.ledger.record(record_of(spent.request, spent.request_id, spent.group,
                                         spent.deployment, spent.usage, spent.cost_micros,
                                         at=self._clock()))  # fmt: skip
        if self.budgets is not None and hold is not None:
            await self.budgets.settle(hold, spent.cost_micros)

    async def release(self, hold: Any) -> None:
        if self.budgets is not None and hold is not None:
            await self.budgets.release(hold)

    def cache_hit(
        self,
        request: ChatRequest,
        request_id: str,
        group: str,
        deployment: str,
        kind: str,
        saved_micros: int,
    ) -> None:
        """Record an answer served from the cache: nothing spent, ``saved_micros`` saved."""
        if self.ledger is not None:
            self.ledger.record(record_of(request, request_id, group, deployment, Usage(), 0,
                                         at=self._clock(), cache_hit=kind,
                                         saved_micros=saved_micros))  # fmt: skip

    async def snapshot(self) -> dict[str, Any]:
        return {"budgets": await self.budgets.snapshot() if self.budgets else []}

    async def aclose(self) -> None:
        failures: list[Exception] = []
        for part in (self.ledger, self.budgets):
            if part is not None:
                try:
                    await part.aclose()
                except Exception as exc:
                    failures.append(exc)
        if failures:
            raise failures[0]


__all__ = ["LEDGERS", "Ledger", "LedgerStore", "PostgresLedger", "SpendRecord", "Spending",
           "SqliteLedger", "record_of"]  # fmt: skip
