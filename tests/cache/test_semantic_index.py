"""The local index (exact top-1 per context key, expiry) and the SQLite change feed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from llmrelay.cache.index import BruteForceIndex, ContextIndexes, IndexedEntry
from llmrelay.cache.vectors import Entry, SqliteVectorStore
from llmrelay.errors import ConfigError


def unit(*values: float) -> npt.NDArray[np.float32]:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_search_returns_the_nearest_vector_and_its_cosine() -> None:
    """Top-1 by dot product of unit vectors, i.e. by cosine."""
    index = BruteForceIndex(2)
    index.add("east", unit(1, 0))
    index.add("north", unit(0, 1))
    found = index.search(unit(1, 0.2))
    assert found is not None
    assert found[0] == "east"
    assert abs(found[1] - float(unit(1, 0.2) @ unit(1, 0))) < 1e-6


def test_the_index_grows_and_removal_keeps_every_other_entry() -> None:
    """Past its first capacity the index still finds every vector, and removing one (the
    last row moves into its place) loses no other."""
    index = BruteForceIndex(3, capacity=2)
    vectors = {f"v{n}": unit(1, n, n * n) for n in range(10)}
    for key, vector in vectors.items():
        index.add(key, vector)
    index.remove("v3")
    index.remove("unknown")
    assert len(index) == 9 and "v3" not in index
    for key, vector in vectors.items():
        if key != "v3":
            found = index.search(vector)
            assert found is not None and found[0] == key


def test_adding_an_id_again_replaces_its_vector() -> None:
    """One id is one row."""
    index = BruteForceIndex(2)
    index.add("a", unit(1, 0))
    index.add("a", unit(0, 1))
    assert len(index) == 1
    assert index.search(unit(0, 1)) == ("a", 1.0)


def test_an_empty_index_finds_nothing() -> None:
    assert BruteForceIndex(4).search(unit(1, 0, 0, 0)) is None


def test_searches_stay_inside_their_context_and_expired_entries_go() -> None:
    """Another context's vector is never returned; expire() drops what has expired."""
    indexes = ContextIndexes(2)
    indexes.add(IndexedEntry("a", "ctx1", "text a", expires=10.0), unit(1, 0))
    indexes.add(IndexedEntry("b", "ctx2", "text b", expires=None), unit(1, 0))
    found = indexes.search("ctx1", unit(1, 0))
    assert found is not None and found[0].id == "a"
    assert indexes.search("ctx3", unit(1, 0)) is None
    indexes.expire(10.0)
    assert indexes.search("ctx1", unit(1, 0)) is None
    assert len(indexes) == 1


def test_a_re_put_entry_keeps_its_later_expiry() -> None:
    """The heap item of an entry's earlier expiry does not remove the renewed entry."""
    indexes = ContextIndexes(2)
    indexes.add(IndexedEntry("a", "ctx", "t", expires=10.0), unit(1, 0))
    indexes.add(IndexedEntry("a", "ctx", "t", expires=20.0), unit(1, 0))
    indexes.expire(15.0)
    assert indexes.search("ctx", unit(1, 0)) is not None
    indexes.expire(20.0)
    assert indexes.search("ctx", unit(1, 0)) is None


def entry(entry_id: str, expires: float | None = None) -> Entry:
    return Entry(entry_id, "ctx", f"text {entry_id}", unit(1, 0).tobytes(), expires)


async def test_sqlite_changes_are_everything_first_then_only_what_is_new(
    tmp_path: Path,
) -> None:
    """The first read is a reset with every live entry; later reads bring only new rows,
    including those another process (another store object) wrote."""
    path = tmp_path / "v.sqlite"
    writer, reader = SqliteVectorStore(path), SqliteVectorStore(path)
    try:
        await writer.add(entry("a"), b"A", ttl_s=None)
        await writer.add(entry("old", expires=5.0), b"O", ttl_s=5.0)
        first = await reader.changes(now=10.0)
        assert first.reset and [e.id for e in first.entries] == ["a"]
        assert (await reader.changes(now=10.0)).entries == []
        await writer.add(entry("b"), b"B", ttl_s=None)
        second = await reader.changes(now=10.0)
        assert not second.reset and [e.id for e in second.entries] == ["b"]
        assert await reader.value("b") == b"B"
        await writer.purge(now=10.0)
        assert await reader.value("old") is None
    finally:
        await writer.aclose()
        await reader.aclose()


def test_a_missing_semantic_extra_is_named_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the packages, MiniLM() says which extra to install and how."""
    import importlib.util

    from llmrelay.cache import embed

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"'semantic' extra.*make install.*sentence_transformers"):
        embed.MiniLM()
