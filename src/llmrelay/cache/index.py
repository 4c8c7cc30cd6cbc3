"""The local vector index of the semantic cache: exact top-1 by cosine, one per context key.

Measured against hnswlib and usearch (docs/decisions/0005-semantic-index.md): numpy brute
force over a contiguous float32 matrix stays well under the embedding's own cost up to 100k
entries in one context, is exact, and needs no build time and no compiled dependency, so it
is the only index shipped. Vectors are L2-normalized, so the cosine is a dot product.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt


class BruteForceIndex:
    """Vectors in the rows of one matrix that doubles when full; removal moves the last row
    into the hole, so search reads exactly ``len(self)`` rows."""

    def __init__(self, dim: int, *, capacity: int = 64) -> None:
        self._dim = dim
        self._rows = np.zeros((capacity, dim), dtype=np.float32)
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._row_of

    def add(self, entry_id: str, vector: npt.NDArray[np.float32]) -> None:
        """Add a vector, or replace the one already stored under ``entry_id``."""
        row = self._row_of.get(entry_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._rows):
                grown = np.zeros((2 * len(self._rows), self._dim), dtype=np.float32)
                grown[:row] = self._rows
                self._rows = grown
            self._ids.append(entry_id)
            self._row_of[entry_id] = row
        self._rows[row] = vector

    def remove(self, entry_id: str) -> None:
        """Forget ``entry_id``; unknown ids are ignored."""
        row = self._row_of.pop(entry_id, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._rows[row] = self._rows[last]
            self._ids[row] = moved
            self._row_of[moved] = row
        self._ids.pop()

    def search(self, vector: npt.NDArray[np.float32]) -> tuple[str, float] | None:
        """The nearest entry and its cosine similarity, or ``None`` when empty."""
        count = len(self._ids)
        if not count:
            return None
        scores = self._rows[:count] @ vector
        best = int(np.argmax(scores))
        return self._ids[best], float(scores[best])


@dataclass(frozen=True, slots=True)
class IndexedEntry:
    """What a replica keeps in memory about one stored entry (the value stays in the store)."""

    id: str
    context: str
    text: str
    expires: float | None


@dataclass(slots=True)
class ContextIndexes:
    """One :class:`BruteForceIndex` per context key, and the expiry of every entry.

    A search never crosses context keys. Expired entries are dropped before each search
    (a heap ordered by expiry), so a stale entry cannot shadow a live one.
    """

    dim: int
    _indexes: dict[str, BruteForceIndex] = field(default_factory=dict)
    _entries: dict[str, IndexedEntry] = field(default_factory=dict)
    _expiries: list[tuple[float, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, entry: IndexedEntry, vector: npt.NDArray[np.float32]) -> None:
        old = self._entries.get(entry.id)
        if old is not None and old.context != entry.context:
            self.remove(entry.id)
        self._entries[entry.id] = entry
        index = self._indexes.get(entry.context)
        if index is None:
            index = self._indexes[entry.context] = BruteForceIndex(self.dim)
        index.add(entry.id, vector)
        if entry.expires is not None:
            heapq.heappush(self._expiries, (entry.expires, entry.id))

    def remove(self, entry_id: str) -> None:
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            return
        index = self._indexes[entry.context]
        index.remove(entry_id)
        if not len(index):
            del self._indexes[entry.context]

    def expire(self, now: float) -> None:
        """Drop every entry whose expiry is at or before ``now``."""
        while self._expiries and self._expiries[0][0] <= now:
            expires, entry_id = heapq.heappop(self._expiries)
            entry = self._entries.get(entry_id)
            # A re-put entry has a later expiry; its old heap item is stale.
            if entry is not None and entry.expires == expires:
                self.remove(entry_id)

    def search(
        self, context: str, vector: npt.NDArray[np.float32]
    ) -> tuple[IndexedEntry, float] | None:
        """The nearest live entry of ``context`` and its similarity."""
        index = self._indexes.get(context)
        found = index.search(vector) if index is not None else None
        if found is None:
            return None
        entry_id, similarity = found
        return self._entries[entry_id], similarity


__all__ = ["BruteForceIndex", "ContextIndexes", "IndexedEntry"]
