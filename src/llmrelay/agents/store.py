"""The runs store: runs, their steps' execution ledger, their events, and the todo list.

SQLAlchemy Core over SQLite (WAL) by default or PostgreSQL. The step ledger is what makes
the execution guarantees hold whatever the engine replays: a step is *claimed* (marked
``running``, committed) before its tool is called and marked ``succeeded`` with its result
after; a claim that finds ``succeeded`` reuses the result, and one that finds ``running``
(a crash interrupted the call) retries an idempotent tool but stops a non-idempotent one
as ``outcome_unknown``. Calls are synchronous; async callers use ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa

from llmrelay.agents.errors import RunConflict, RunNotFound
from llmrelay.agents.states import FINISHED, RESTARTABLE

_meta = sa.MetaData()
runs = sa.Table(
    "agent_runs", _meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("planner", sa.String(40), nullable=False),
    sa.Column("planner_note", sa.Text, nullable=False, default=""),
    sa.Column("plan", sa.Text, nullable=False),
    sa.Column("verdicts", sa.Text, nullable=False, default="[]"),
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True, index=True),
)  # fmt: skip
steps = sa.Table(
    "agent_steps", _meta,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("step_id", sa.String(16), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("tool", sa.String(64), nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("executions", sa.Integer, nullable=False, default=0),
    sa.Column("result", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
)  # fmt: skip
events = sa.Table(
    "agent_events", _meta,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
)  # fmt: skip
executors = sa.Table(
    "agent_executors", _meta,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("seen_at", sa.Float, nullable=False),
)  # fmt: skip
"""Every process executing runs, and when it last said it was alive."""
todos = sa.Table(
    "agent_todos", _meta,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("done", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Claim:
    """What a step's executor may do: ``run`` the tool, ``reuse`` a result, or stop."""

    action: str
    """``run``, ``reuse`` or ``unknown``."""
    result: Any = None
    interrupted: bool = False
    """The previous call was cut off by a crash (an idempotent tool is called again)."""


@dataclass(frozen=True, slots=True)
class NewRun:
    id: str
    prompt: str
    planner: str
    planner_note: str
    plan: dict[str, Any]
    steps: list[tuple[str, str, str]]
    """``(step_id, tool, version)`` in plan order."""
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    """The plan judge's verdicts (see :mod:`llmrelay.agents.planning.judge`)."""


def engine_url(url: str) -> str:
    """SQLAlchemy's spelling of a database URL (PostgreSQL through psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


class RunStore:
    """The tables above, in one database; it opens its engine and closes it once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = sa.create_engine(engine_url(url), future=True)
        if self._engine.dialect.name == "sqlite":
            sa.event.listen(self._engine, "connect", _sqlite_pragmas)
        _meta.create_all(self._engine)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self._engine.begin() as conn:
            yield conn

    # -- runs ---------------------------------------------------------------------------

    def create(self, run: NewRun) -> None:
        """Store a planned run and its pending steps in one transaction."""
        now = time.time()
        with self._tx() as conn:
            conn.execute(runs.insert().values(
                id=run.id, status="queued", prompt=run.prompt, planner=run.planner,
                planner_note=run.planner_note, plan=_dump(run.plan), verdicts=_dump(run.verdicts),
                attempt=1,
                created_at=now, updated_at=now,
            ))  # fmt: skip
            conn.execute(steps.insert(), [
                {"run_id": run.id, "step_id": sid, "position": i, "tool": tool,
                 "version": version, "status": "pending", "executions": 0}
                for i, (sid, tool, version) in enumerate(run.steps)
            ])  # fmt: skip
            self._event(conn, run.id, "planned", {"planner": run.planner, "plan": run.plan})

    def get(self, run_id: str) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute(runs.select().where(runs.c.id == run_id)).mappings().first()
            if row is None:
                raise RunNotFound(f"no run {run_id!r}")
            rows = conn.execute(
                steps.select().where(steps.c.run_id == run_id).order_by(steps.c.position)
            ).mappings()
            return {**_run(row), "steps": [_step(r) for r in rows]}

    def plan(self, run_id: str) -> tuple[dict[str, Any], int]:
        """The run's plan and current attempt."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(runs.c.plan, runs.c.attempt).where(runs.c.id == run_id)
            ).first()
        if row is None:
            raise RunNotFound(f"no run {run_id!r}")
        return _load(row.plan), int(row.attempt)

    def list_runs(
        self,
        *,
        status: str | None = None,
        since: float | None = None,
        until: float | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Runs, newest first, and the cursor of the next page (``None``: no more)."""
        query = runs.select().order_by(runs.c.created_at.desc(), runs.c.id.desc())
        if status is not None:
            query = query.where(runs.c.status == status)
        if since is not None:
            query = query.where(runs.c.created_at >= since)
        if until is not None:
            query = query.where(runs.c.created_at < until)
        if cursor is not None:
            at, last = decode_cursor(cursor)
            query = query.where(
                sa.or_(runs.c.created_at < at, sa.and_(runs.c.created_at == at, runs.c.id < last))
            )
        with self._tx() as conn:
            rows = [_run(r) for r in conn.execute(query.limit(limit + 1)).mappings()]
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
        return rows, next_cursor

    def unfinished(self) -> list[tuple[str, int]]:
        """``(run id, attempt)`` of every queued or running run."""
        query = sa.select(runs.c.id, runs.c.attempt).where(runs.c.status.in_(("queued", "running")))
        with self._tx() as conn:
            return [(r.id, int(r.attempt)) for r in conn.execute(query)]

    def set_status(self, run_id: str, status: str, error: str | None = None) -> bool:
        """Move a run to ``status`` unless it was cancelled; whether it moved."""
        now = time.time()
        done = now if status in FINISHED else None
        with self._tx() as conn:
            moved = conn.execute(
                runs.update()
                .where(runs.c.id == run_id, runs.c.status != "cancelled")
                .values(status=status, error=error, updated_at=now, finished_at=done)
            ).rowcount
            if moved:
                self._event(conn, run_id, "status", {"status": status, "error": error})
        return bool(moved)

    def cancel(self, run_id: str) -> dict[str, Any]:
        with self._tx() as conn:
            row = conn.execute(sa.select(runs.c.status).where(runs.c.id == run_id)).first()
            if row is None:
                raise RunNotFound(f"no run {run_id!r}")
            if row.status in FINISHED:
                raise RunConflict(f"run {run_id} is already {row.status}")
            now = time.time()
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                status="cancelled", updated_at=now, finished_at=now))  # fmt: skip
            self._event(conn, run_id, "status", {"status": "cancelled", "error": None})
        return self.get(run_id)

    def prepare_restart(self, run_id: str, *, rerun_unknown: bool = False) -> int:
        """Reset the steps not yet succeeded to pending; the new attempt number."""
        with self._tx() as conn:
            row = conn.execute(
                sa.select(runs.c.status, runs.c.attempt).where(runs.c.id == run_id)
            ).first()
            if row is None:
                raise RunNotFound(f"no run {run_id!r}")
            if row.status not in RESTARTABLE:
                raise RunConflict(f"run {run_id} is {row.status}; only {RESTARTABLE} restart")
            unknown = [r.step_id for r in conn.execute(sa.select(steps.c.step_id).where(
                steps.c.run_id == run_id, steps.c.status == "outcome_unknown"))]  # fmt: skip
            if unknown and not rerun_unknown:
                raise RunConflict(
                    f"run {run_id}: the outcome of {', '.join(unknown)} is unknown; check "
                    "its effect, then restart with rerun_unknown to call it again"
                )
            conn.execute(steps.update().where(
                steps.c.run_id == run_id, steps.c.status != "succeeded"
            ).values(status="pending", error=None))  # fmt: skip
            attempt = int(row.attempt) + 1
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                status="queued", attempt=attempt, error=None, updated_at=time.time(),
                finished_at=None))  # fmt: skip
            self._event(conn, run_id, "restarted", {"attempt": attempt})
        return attempt

    # -- the step ledger ----------------------------------------------------------------

    def claim(self, run_id: str, step_id: str, *, idempotent: bool) -> Claim:
        """Decide whether the step's tool may be called now, and mark it running if so."""
        where = (steps.c.run_id == run_id, steps.c.step_id == step_id)
        with self._tx() as conn:
            row = conn.execute(
                sa.select(steps.c.status, steps.c.result).where(*where).with_for_update()
            ).first()
            if row is None:
                raise RunNotFound(f"run {run_id!r} has no step {step_id!r}")
            if row.status == "succeeded":
                return Claim("reuse", _load(row.result))
            if row.status == "outcome_unknown":
                return Claim("unknown")
            interrupted = row.status == "running"
            if interrupted and not idempotent:
                conn.execute(steps.update().where(*where).values(
                    status="outcome_unknown", finished_at=time.time(),
                    error="interrupted while running; the tool is not idempotent"))  # fmt: skip
                self._event(conn, run_id, "step_unknown", {"step": step_id})
                return Claim("unknown")
            conn.execute(steps.update().where(*where).values(
                status="running", executions=steps.c.executions + 1,
                started_at=time.time(), finished_at=None))  # fmt: skip
            self._event(conn, run_id, "step_started", {"step": step_id, "after_crash": interrupted})
            return Claim("run", interrupted=interrupted)

    def succeed(self, run_id: str, step_id: str, result: Any) -> None:
        self._finish_step(run_id, step_id, "succeeded", result=_dump(result))
        # event written by _finish_step

    def fail(self, run_id: str, step_id: str, status: str, error: str) -> None:
        """Record a failed call: ``retrying``, ``failed``, ``cancelled``, ``outcome_unknown``."""
        self._finish_step(run_id, step_id, status, error=error)

    def _finish_step(self, run_id: str, step_id: str, status: str, **values: Any) -> None:
        with self._tx() as conn:
            conn.execute(steps.update().where(
                steps.c.run_id == run_id, steps.c.step_id == step_id
            ).values(status=status, finished_at=time.time(), **values))  # fmt: skip
            data = {"step": step_id, "status": status}
            if "result" in values:
                data["result"] = _load(values["result"])
            if "error" in values:
                data["error"] = values["error"]
            self._event(conn, run_id, "step_finished", data)

    # -- events -------------------------------------------------------------------------

    def _event(self, conn: sa.Connection, run_id: str, kind: str, data: Any) -> None:
        conn.execute(events.insert().values(
            run_id=run_id, kind=kind, data=_dump(data), at=time.time()))  # fmt: skip

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        query = (
            events.select()
            .where(events.c.run_id == run_id, events.c.seq > after)
            .order_by(events.c.seq)
        )
        with self._tx() as conn:
            return [
                {"seq": r.seq, "kind": r.kind, "data": _load(r.data), "at": r.at}
                for r in conn.execute(query)
            ]

    # -- retention ----------------------------------------------------------------------

    def prune(self, older_than: float) -> dict[str, int]:
        """Delete runs finished before ``older_than`` (epoch seconds), with their rows."""
        with self._tx() as conn:
            ids = [r.id for r in conn.execute(sa.select(runs.c.id).where(
                runs.c.finished_at.is_not(None), runs.c.finished_at < older_than))]  # fmt: skip
            counts = {"runs": len(ids), "steps": 0, "events": 0}
            for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
                counts["events"] += conn.execute(
                    events.delete().where(events.c.run_id.in_(chunk))).rowcount  # fmt: skip
                counts["steps"] += conn.execute(
                    steps.delete().where(steps.c.run_id.in_(chunk))).rowcount  # fmt: skip
                conn.execute(runs.delete().where(runs.c.id.in_(chunk)))
        return counts

    # -- executors ------------------------------------------------------------------------

    def heartbeat(self, executor_id: str) -> None:
        """Say that ``executor_id`` is alive now."""
        now = time.time()
        with self._tx() as conn:
            done = conn.execute(executors.update().where(executors.c.id == executor_id)
                                .values(seen_at=now)).rowcount  # fmt: skip
            if not done:
                conn.execute(executors.insert().values(id=executor_id, seen_at=now))

    def silent_executors(self, since: float) -> list[str]:
        """The executors not heard from since ``since`` (epoch seconds)."""
        query = sa.select(executors.c.id).where(executors.c.seen_at < since)
        with self._tx() as conn:
            return [row.id for row in conn.execute(query)]

    def bury(self, executor_id: str, since: float) -> bool:
        """Forget a silent executor; whether this caller did (only one adopts its runs)."""
        with self._tx() as conn:
            gone = conn.execute(executors.delete().where(
                executors.c.id == executor_id, executors.c.seen_at < since)).rowcount  # fmt: skip
        return bool(gone)

    def sizes(self) -> dict[str, int]:
        """Row counts of each table."""
        with self._tx() as conn:
            count = sa.select(sa.func.count())
            return {
                table.name: int(conn.execute(count.select_from(table)).scalar_one())
                for table in (runs, steps, events, todos)
            }

    # -- todos ----------------------------------------------------------------------------

    def add_todo(self, text: str) -> dict[str, Any]:
        with self._tx() as conn:
            new_id = conn.execute(
                todos.insert().values(text=text, done=False, created_at=time.time())
            ).inserted_primary_key
        return {"id": int(new_id[0]) if new_id else 0, "text": text, "done": False}

    def list_todos(self, *, include_done: bool = False) -> list[dict[str, Any]]:
        query = todos.select().order_by(todos.c.id)
        if not include_done:
            query = query.where(todos.c.done.is_(False))
        with self._tx() as conn:
            return [{"id": r.id, "text": r.text, "done": bool(r.done)}
                    for r in conn.execute(query)]  # fmt: skip

    def complete_todo(self, todo_id: int) -> dict[str, Any] | None:
        with self._tx() as conn:
            conn.execute(todos.update().where(todos.c.id == todo_id).values(done=True))
            row = conn.execute(todos.select().where(todos.c.id == todo_id)).first()
        return None if row is None else {"id": row.id, "text": row.text, "done": bool(row.done)}


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _cursor(created_at: float, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at!r}|{run_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    """``(created_at, id)`` of a page cursor; ``ValueError`` for one that is not ours."""
    try:
        at, _, run_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return float(at), run_id
    except (ValueError, UnicodeDecodeError):
        raise ValueError(f"cursor: not a cursor this server gave out: {cursor!r}") from None


def _dump(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def _load(text: str | None) -> Any:
    return None if text is None else msgspec.json.decode(text)


def _run(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "status": row["status"], "prompt": row["prompt"],
        "planner": row["planner"], "planner_note": row["planner_note"],
        "plan": _load(row["plan"]), "verdicts": _load(row["verdicts"]),
        "attempt": row["attempt"], "error": row["error"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
        "finished_at": row["finished_at"],
    }  # fmt: skip


def _step(row: Any) -> dict[str, Any]:
    return {
        "id": row["step_id"], "tool": row["tool"], "version": row["version"],
        "status": row["status"], "executions": row["executions"],
        "result": _load(row["result"]), "error": row["error"],
        "started_at": row["started_at"], "finished_at": row["finished_at"],
    }  # fmt: skip


__all__ = ["Claim", "NewRun", "RunStore", "decode_cursor", "engine_url"]
