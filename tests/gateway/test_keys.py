"""Virtual keys: the structs, and both stores (SQLite and PostgreSQL) behaving alike."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from llmrelay.budget.limits import BudgetLimit
from llmrelay.errors import BadRequest, ConfigError
from llmrelay.gateway.keys import (
    KeyBudget,
    KeyChanges,
    KeyNotFound,
    KeySpec,
    KeyStore,
    VirtualKey,
    hash_secret,
    new_secret,
    open_key_store,
)
from llmrelay.gateway.settings import KeyStoreSettings

OpenStore = Callable[[], Awaitable[KeyStore]]


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> KeyStoreSettings:
    """Settings of an empty store of each kind."""
    if request.param == "sqlite":
        return KeyStoreSettings(store="sqlite", path=str(tmp_path / "keys.sqlite"))
    url: str = request.getfixturevalue("postgres_url")
    return KeyStoreSettings(store="postgres", database_url=url)


@pytest.fixture
async def open_store(store_settings: KeyStoreSettings) -> AsyncIterator[OpenStore]:
    """Opens stores on the same file or database (each its own connection), closed after."""
    opened: list[KeyStore] = []

    async def opener() -> KeyStore:
        store = open_key_store(store_settings)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.aclose()


@pytest.fixture
async def store(open_store: OpenStore) -> KeyStore:
    return await open_store()


def key(**fields: object) -> VirtualKey:
    return VirtualKey(id="key_0123456789abcdef", prefix="sk-relay-abc", created_at=1.0,
                      **fields)  # type: ignore[arg-type]  # fields of VirtualKey  # fmt: skip


# -- the structs ---------------------------------------------------------------------------


def test_secrets_are_long_random_and_prefixed() -> None:
    """A secret is sk-relay- and 43 URL-safe characters, new each time; its hash is SHA-256."""
    first, second = new_secret(), new_secret()
    assert first.startswith("sk-relay-") and len(first) == len("sk-relay-") + 43
    assert first != second
    assert hash_secret(first) == hashlib.sha256(first.encode()).hexdigest()


def test_status_is_revoked_then_expired_then_active() -> None:
    """A revoked key is revoked even when expired; an expired one from its expiry on."""
    assert key().status(1e12) == "active"
    assert key(expires_at=100.0).status(99.9) == "active"
    assert key(expires_at=100.0).status(100.0) == "expired"
    assert key(expires_at=100.0, revoked_at=50.0).status(200.0) == "revoked"
    assert key(revoked_at=50.0).status(10.0) == "revoked"


def test_allows_compares_group_names_case_insensitively() -> None:
    """Groups None allow every group; otherwise only the listed ones, in any case."""
    assert key().allows("anything")
    limited = key(groups=("GPT-4o", "cheap"))
    assert limited.allows("gpt-4o") and limited.allows("Cheap")
    assert not limited.allows("default")
    assert not key(groups=()).allows("cheap")


def test_budget_limits_count_the_keys_own_spend() -> None:
    """Each budget becomes a key-scoped limit on the key's id, named (and so counted) by
    the id, whatever the key's name."""
    budgets = (KeyBudget(5.0), KeyBudget(100.0, "month"))
    assert key(name="alice", budgets=budgets).budget_limits() == [
        BudgetLimit(usd=5.0, period="day", scope="key", value="key_0123456789abcdef",
                    name="key:key_0123456789abcdef/day"),
        BudgetLimit(usd=100.0, period="month", scope="key", value="key_0123456789abcdef",
                    name="key:key_0123456789abcdef/month"),
    ]  # fmt: skip
    assert key(budgets=budgets[:1]).budget_limits()[0].name == "key:key_0123456789abcdef/day"


def test_public_is_json_with_status_and_no_hash() -> None:
    """public() survives json.dumps, has the status now and every field, and no hash."""
    data = key(groups=("a",), budgets=(KeyBudget(1.0),), metadata={"team": "ml"}).public()
    assert json.loads(json.dumps(data)) == data
    assert data["status"] == "active"
    assert data["groups"] == ["a"] and data["budgets"] == [{"usd": 1.0, "period": "day"}]
    assert set(data) == {*VirtualKey.__struct_fields__, "status"}


def test_a_negative_budget_is_refused() -> None:
    """KeyBudget refuses usd < 0 (and NaN, infinity), in code and in a request body."""
    for usd in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="usd must be >= 0"):
            KeyBudget(usd)
    with pytest.raises(ValueError, match="usd must be finite"):
        KeyBudget(float("inf"))
    with pytest.raises(msgspec.ValidationError, match=r"usd must be >= 0.*budgets\[0\]"):
        msgspec.json.decode(b'{"budgets": [{"usd": -2}]}', type=KeySpec)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rpm": 0}, "rpm"),
        ({"tpm": -5}, "tpm"),
        ({"expires_at": 0}, "expires_at"),
        ({"name": "n" * 201}, "name"),
        ({"groups": ["ok", " "]}, "groups"),
    ],
)
@pytest.mark.parametrize("struct", [KeySpec, KeyChanges])
def test_out_of_range_values_are_refused_naming_the_field(
    struct: type[KeySpec | KeyChanges], body: dict[str, object], field: str
) -> None:
    """KeySpec and KeyChanges refuse out-of-range values with a BadRequest naming the field."""
    with pytest.raises(BadRequest, match=f"^{field}: "):
        msgspec.json.decode(json.dumps(body), type=struct)
    with pytest.raises(BadRequest, match=f"^{field}: "):
        struct(**body)  # type: ignore[arg-type]  # the body's values are the fields' own


def test_unknown_fields_are_refused() -> None:
    """A misspelt field in a request body is an error, not silently dropped."""
    for struct in (KeySpec, KeyChanges):
        with pytest.raises(msgspec.ValidationError, match="unknown field `rmp`"):
            msgspec.json.decode(b'{"rmp": 3}', type=struct)


def test_changes_touch_only_the_fields_given_and_null_clears() -> None:
    """A PATCH body changes what it names; null clears groups, rpm, tpm and expiry."""
    before = key(name="a", groups=("x",), rpm=5, tpm=9, expires_at=50.0, admin=True)
    assert msgspec.json.decode(b"{}", type=KeyChanges).apply(before) == before
    cleared = msgspec.json.decode(
        b'{"groups": null, "rpm": null, "tpm": null, "expires_at": null}', type=KeyChanges
    ).apply(before)
    assert cleared == key(name="a", admin=True)
    renamed = KeyChanges(name="b", groups=["y", "z"], budgets=[KeyBudget(2.0)]).apply(before)
    assert renamed.name == "b" and renamed.groups == ("y", "z")
    assert renamed.budgets == (KeyBudget(2.0),) and renamed.rpm == 5 and renamed.admin


# -- the stores ----------------------------------------------------------------------------


async def test_a_new_key_is_found_by_its_secret_id_and_name(store: KeyStore) -> None:
    """create returns the key and its secret; find, get (id or name) and list return it."""
    spec = KeySpec(name="alice", groups=["gpt-4o"], rpm=10, tpm=1000,
                   budgets=[KeyBudget(5.0), KeyBudget(50.0, "month")], expires_at=4e9,
                   metadata={"team": "ml"}, admin=True)  # fmt: skip
    before = time.time()
    made, secret = await store.create(spec)
    assert before <= made.created_at <= time.time()
    assert made.id.startswith("key_") and len(made.id) == 20
    assert set(made.id[4:]) <= set("0123456789abcdef")
    assert made.prefix == secret[:12]
    assert (made.name, made.groups, made.rpm, made.tpm) == ("alice", ("gpt-4o",), 10, 1000)
    assert made.budgets == (KeyBudget(5.0), KeyBudget(50.0, "month"))
    assert (made.expires_at, made.metadata, made.admin) == (4e9, {"team": "ml"}, True)
    assert await store.find(secret) == made
    assert await store.get(made.id) == made
    assert await store.get("alice") == made
    assert await store.list() == [made]


async def test_a_wrong_secret_finds_nothing(store: KeyStore) -> None:
    """find answers None for a secret no key has (and for the id or the prefix)."""
    made, secret = await store.create(KeySpec())
    for wrong in (secret + "x", secret[:-1], made.id, made.prefix, "", new_secret()):
        assert await store.find(wrong) is None


async def test_the_secret_is_never_stored(store: KeyStore, store_settings: KeyStoreSettings,
                                          postgres_rows: Callable[[], str]) -> None:  # fmt: skip
    """Neither the SQLite file (with its WAL) nor the PostgreSQL rows hold the secret;
    they hold its hash."""
    made, secret = await store.create(KeySpec(name="s"))
    await store.list()
    if store_settings.store == "sqlite":
        files = Path(store_settings.path).parent.glob("keys.sqlite*")
        stored = b"".join(f.read_bytes() for f in files)
        assert secret.encode() not in stored and secret[12:].encode() not in stored
        assert hash_secret(secret).encode() in stored
    else:
        rows = postgres_rows()
        assert secret not in rows and secret[12:] not in rows
        assert hash_secret(secret) in rows and made.id in rows


@pytest.fixture
def postgres_rows(store_settings: KeyStoreSettings) -> Callable[[], str]:
    """Every stored key row as text (PostgreSQL only)."""

    def rows() -> str:
        import psycopg

        assert store_settings.database_url is not None
        with psycopg.connect(store_settings.database_url) as conn:
            return repr(conn.execute("SELECT * FROM llmrelay_keys").fetchall())

    return rows


async def test_list_is_oldest_first_and_hides_revoked_keys(store: KeyStore) -> None:
    """list orders by creation; revoked keys only with include_revoked; expired ones stay."""
    first, _ = await store.create(KeySpec(name="one"))
    second, _ = await store.create(KeySpec(name="two", expires_at=1.0))
    third, _ = await store.create(KeySpec(name="three"))
    await store.revoke(second.id)
    assert [k.id for k in await store.list()] == [first.id, third.id]
    listed = await store.list(include_revoked=True)
    assert [k.id for k in listed] == [first.id, second.id, third.id]
    await store.revoke(first.id)
    assert [k.id for k in await store.list()] == [third.id]


async def test_expired_keys_are_still_found_as_expired(store: KeyStore) -> None:
    """A key past its expiry is found (so the gateway can say why) with status expired."""
    made, secret = await store.create(KeySpec(expires_at=1000.0))
    found = await store.find(secret)
    assert found == made and found.status(time.time()) == "expired"
    assert [k.id for k in await store.list()] == [made.id]


async def test_revoking_is_idempotent_and_keeps_the_key_findable(store: KeyStore) -> None:
    """revoke sets revoked_at once; find still returns the key, revoked."""
    made, secret = await store.create(KeySpec(name="r"))
    revoked = await store.revoke("r")
    assert revoked.revoked_at is not None and revoked.status(time.time()) == "revoked"
    assert await store.revoke(made.id) == revoked
    assert await store.find(secret) == revoked
    assert await store.get(made.id) == revoked


async def test_update_saves_only_the_changes(store: KeyStore) -> None:
    """update (by id or name) changes the given fields, keeps the rest and the secret."""
    made, secret = await store.create(
        KeySpec(name="u", groups=["a"], rpm=5, budgets=[KeyBudget(1.0)], metadata={"k": "v"})
    )
    changed = await store.update("u", KeyChanges(rpm=None, tpm=7, groups=None, admin=True))
    assert changed == msgspec.structs.replace(made, rpm=None, tpm=7, groups=None, admin=True)
    renamed = await store.update(made.id, KeyChanges(name="v", metadata={}))
    assert renamed.name == "v" and renamed.metadata == {} and renamed.tpm == 7
    assert await store.find(secret) == renamed
    assert await store.get("v") == renamed
    with pytest.raises(KeyNotFound):
        await store.get("u")


async def test_unknown_ids_raise_key_not_found_naming_them(store: KeyStore) -> None:
    """get, update and revoke of an unknown id or name raise KeyNotFound naming it."""
    for call in (
        store.get("key_ffffffffffffffff"),
        store.update("key_ffffffffffffffff", KeyChanges(rpm=3)),
        store.revoke("key_ffffffffffffffff"),
    ):
        with pytest.raises(KeyNotFound, match="key_ffffffffffffffff") as caught:
            await call
        assert caught.value.key_id == "key_ffffffffffffffff"


async def test_a_shared_name_resolves_only_when_one_active_key_has_it(store: KeyStore) -> None:
    """Two active keys of one name must be named by id; a revoked namesake does not count."""
    old, _ = await store.create(KeySpec(name="ci"))
    await store.revoke(old.id)
    new, _ = await store.create(KeySpec(name="ci"))
    assert await store.get("ci") == new
    other, _ = await store.create(KeySpec(name="ci"))
    with pytest.raises(KeyNotFound, match=f"2 keys are named 'ci' \\({new.id}, {other.id}\\)"):
        await store.get("ci")
    assert await store.get(other.id) == other


async def test_the_revision_moves_on_every_change_from_any_store(open_store: OpenStore) -> None:
    """revision() stays put while nothing changes and moves after a change made through
    this store or through another one (its own connection) on the same file or database."""
    watcher, writer = await open_store(), await open_store()
    start = await watcher.revision()
    assert await watcher.revision() == start
    await watcher.list()
    assert await watcher.revision() == start

    made, _ = await writer.create(KeySpec(name="w"))
    after_create = await watcher.revision()
    assert after_create != start
    assert await watcher.revision() == after_create

    await writer.revoke(made.id)
    after_revoke = await watcher.revision()
    assert after_revoke != after_create

    await watcher.update(made.id, KeyChanges(name="w2"))
    after_own = await watcher.revision()
    assert after_own != after_revoke
    seen = await writer.revision()
    await watcher.update(made.id, KeyChanges(rpm=4))
    assert await writer.revision() != seen


async def test_postgres_needs_a_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """store postgres without database_url or DATABASE_URL is a ConfigError naming the key."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ConfigError) as caught:
        open_key_store(KeyStoreSettings(store="postgres"))
    assert str(caught.value) == (
        "server.keys.database_url: required for store postgres (or set DATABASE_URL)"
    )


async def test_an_unreachable_postgres_is_a_config_error(unused_tcp_port: int) -> None:
    """A database no one answers at fails the first call with a ConfigError naming the key
    and the address (without its password)."""
    url = f"postgresql://user:hunter2@127.0.0.1:{unused_tcp_port}/keys"
    store = open_key_store(KeyStoreSettings(store="postgres", database_url=url))
    try:
        with pytest.raises(
            ConfigError, match=r"^server\.keys\.database_url: cannot open"
        ) as caught:
            await store.revision()
        assert "hunter2" not in str(caught.value) and str(unused_tcp_port) in str(caught.value)
    finally:
        await store.aclose()


async def test_an_unwritable_sqlite_path_is_a_config_error(tmp_path: Path) -> None:
    """A SQLite path that cannot be created is a ConfigError naming server.keys.path."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"^server\.keys\.path: cannot open"):
        open_key_store(KeyStoreSettings(path=str(blocker / "keys.sqlite")))
