"""The ``analytics`` sink: one row per request, written to the store in batches.

``handle`` runs on the sink's observer thread: it turns a ``finished`` or ``cache_hit``
event into a row (scoring the answer with the evaluator, if one is configured) and queues
it. A writer thread of the sink's own writes what is queued at least every ``flush_s``
seconds (at once when a batch is full), so the store is never touched while an event is
being handled. A failed write keeps its rows, in order, for the next turn; everything
queued is written on :meth:`close`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmrelay.analytics.records import RequestRow, row_of
from llmrelay.analytics.settings import AnalyticsSettings
from llmrelay.analytics.store import Store, open_store
from llmrelay.events import Event, EventKind
from llmrelay.imports import import_callable
from llmrelay.types import ChatRequest, ChatResponse

if TYPE_CHECKING:
    from llmrelay.analytics.queries import Analytics

log = logging.getLogger("llmrelay.analytics")

Evaluator = Callable[[ChatRequest, ChatResponse], float | None]
"""Scores one answer: a quality in [0, 1], or ``None`` to leave it unscored."""

BATCH = 500
"""Rows written in one transaction at most; a full batch is written without waiting."""
MAX_PENDING = 100_000
"""Rows kept while the store cannot be written; past this the oldest are dropped (counted)."""


def load_evaluator(path: str) -> Evaluator:
    """The function at ``package.module:function``; ``ValueError`` saying what failed."""
    try:
        evaluator: Evaluator = import_callable(path, shape="function", noun="function")
    except ValueError as exc:
        raise ValueError(f"evaluator: {exc}") from None
    return evaluator


class AnalyticsSink:
    """Records every routed request and cache hit in the analytics store."""

    name = "analytics"

    def __init__(
        self,
        settings: AnalyticsSettings | None = None,
        *,
        store: Store | None = None,
        evaluator: Evaluator | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or AnalyticsSettings()
        if evaluator is None and self.settings.evaluator:
            evaluator = load_evaluator(self.settings.evaluator)
        self.evaluator = evaluator
        self.store = store if store is not None else open_store(self.settings)
        self.batch = BATCH
        self.written = 0
        self.write_errors = 0
        self.dropped = 0
        self.evaluator_errors = 0
        self._clock = clock
        self._pending: list[RequestRow] = []
        self._since: float | None = None
        """When the oldest queued row was queued (``clock`` time)."""
        self._cond = threading.Condition()
        self._asked = 0
        self._served = 0
        self._last_ok = True
        self._closing = False
        self._writer = threading.Thread(target=self._run, name="llmrelay-analytics", daemon=True)
        self._writer.start()

    # -- the observer's thread ------------------------------------------------------------

    def handle(self, event: Event) -> None:
        if event.kind not in (EventKind.FINISHED, EventKind.CACHE_HIT):
            return
        quality = None
        if event.kind is EventKind.FINISHED and event.error is None:
            quality = self._evaluate(event)
        row = row_of(event, self.settings.task_key, quality)
        if row is None:
            return
        with self._cond:
            waiting = self._since is None  # the writer sleeps until told of a first row
            self._queue([row])
            if waiting or len(self._pending) >= self.batch:
                self._cond.notify_all()

    def _evaluate(self, event: Event) -> float | None:
        if self.evaluator is None or event.request is None or event.response is None:
            return None
        try:
            score = self.evaluator(event.request, event.response)
        except Exception:
            self.evaluator_errors += 1
            log.warning("analytics evaluator failed on request %s", event.request_id,
                        exc_info=self.evaluator_errors == 1)  # fmt: skip
            return None
        if score is None:
            return None
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            self.evaluator_errors += 1
            log.warning("analytics evaluator gave %r for request %s: expected a number in "
                        "[0, 1] or None", score, event.request_id)  # fmt: skip
            return None
        return float(score)

    def _queue(self, rows: list[RequestRow], *, first: bool = False) -> None:
        """Queue ``rows`` (``first``: before what is queued); the lock is held."""
        self._pending = [*rows, *self._pending] if first else [*self._pending, *rows]
        if self._since is None:
            self._since = self._clock()
        excess = len(self._pending) - MAX_PENDING
        if excess > 0:
            del self._pending[:excess]
            self.dropped += excess
            log.error("analytics: the store is not taking rows; %d dropped so far", self.dropped)

    # -- the writer thread ----------------------------------------------------------------

    def _due(self) -> float | None:
        """Seconds until the queued rows must be written (``None``: nothing queued)."""
        if self._since is None:
            return None
        return self._since + self.settings.flush_s - self._clock()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (
                    self._closing
                    or self._asked > self._served
                    or (len(self._pending) >= self.batch and self._last_ok)
                ):
                    due = self._due()
                    if due is not None and due <= 0:
                        break
                    self._cond.wait(due)
                rows, self._pending = self._pending[: self.batch], self._pending[self.batch :]
                if not self._pending:
                    self._since = None  # else the rest is already due: written next turn
                ticket, closing = self._asked, self._closing
            ok = self._write(rows)
            with self._cond:
                if not ok:
                    self._queue(rows, first=True)
                    self._since = self._clock()  # the next try after flush_s, not at once
                self._last_ok = ok  # after a failure, a full batch waits flush_s too
                if not self._pending or not ok:
                    self._served = ticket
                    self._cond.notify_all()
                if closing and (not ok or not self._pending):
                    return  # closing: one last try of everything queued

    def _write(self, rows: list[RequestRow]) -> bool:
        if not rows:
            return True
        try:
            self.store.write(rows)
        except Exception:
            self.write_errors += 1
            log.warning("analytics: could not write %d rows to %s; kept for the next try",
                        len(rows), self.store.name,
                        exc_info=self.write_errors == 1)  # fmt: skip
            return False
        self.written += len(rows)
        return True

    # -- callers --------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Write every row queued so far, now; ``False`` if the write failed (the rows are
        kept) or did not finish within ``timeout`` seconds."""
        with self._cond:
            if not self._writer.is_alive():
                return not self._pending
            self._asked += 1
            ticket = self._asked
            self._cond.notify_all()
            served = self._cond.wait_for(lambda: self._served >= ticket, timeout)
            return served and self._last_ok and not self._pending

    def analytics(self) -> Analytics:
        """Queries over this sink's store (which stays the sink's to close); a feedback
        for a request still queued here writes the queue first."""
        from llmrelay.analytics.queries import Analytics

        return Analytics(self.store, self.settings, owned=False, flush=self.flush)

    def close(self) -> None:
        """Write what is queued (one last try), stop the writer, close the store."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._writer.join()
        if self._pending:
            log.error("analytics: %d rows could not be written to %s", len(self._pending),
                      self.store.name)  # fmt: skip
        self.store.close()


def open_sink(settings: AnalyticsSettings) -> AnalyticsSink:
    """The sink ``observe.analytics:`` describes (the registry's opener)."""
    return AnalyticsSink(settings)


__all__ = ["BATCH", "MAX_PENDING", "AnalyticsSink", "Evaluator", "load_evaluator", "open_sink"]
