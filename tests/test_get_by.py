"""Unique secondary lookups: ``get_by()`` of a declared unique column set reads through the
cache like ``get()``, answers what ``select(...).where(...).one_or_none()`` would, and every
commit that changes a row evicts its lookups under the old and the new values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, ConfigurationError, SQLModelCache
from sqlmodel_cache.transport import Answer, RedisSyncTransport

from .conftest import SQLCounter
from .entries import row_in
from .models import Account, Hero


class CountingTransport(RedisSyncTransport):
    """Counts the round trips a read makes (each transport call is one)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.calls: list[str] = []

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        self.calls.append("lookup")
        return super().lookup(key, lease, lease_ms)

    def peek(self, key: str) -> Answer:
        self.calls.append("peek")
        return super().peek(key)

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int, epoch: bytes | None) -> bool:
        self.calls.append("settle")
        return super().settle(key, lease, value, ttl_ms, epoch)


@pytest.fixture
def r(any_redis: redis.Redis) -> redis.Redis:
    SQLModelCache.configure(transport=RedisSyncTransport(any_redis), default_ttl=60)
    return any_redis


ACCOUNTS = [
    {"id": 1, "email": "ada@example.com", "tenant_id": 7, "slug": "ada", "name": "Ada"},
    {"id": 2, "email": "bob@example.com", "tenant_id": 7, "slug": "bob", "name": "Bob"},
    {"id": 3, "email": "cy@example.com", "tenant_id": 8, "slug": "ada", "name": "Cy"},
]


def seed(engine: sa.Engine, rows: Sequence[dict[str, Any]] = ACCOUNTS) -> None:
    with Session(engine) as session:
        for row in rows:
            session.add(Account(**row))
        session.commit()


def by(engine: sa.Engine, **columns: Any) -> dict[str, Any] | None:
    """What ``get_by()`` answers, in a new cached session, as a plain dict."""
    with CachedSession(engine) as session:
        account = session.get_by(Account, **columns)
        return None if account is None else account.model_dump()


def truth(engine: sa.Engine, **columns: Any) -> dict[str, Any] | None:
    """What the database says, through a plain session."""
    with Session(engine) as session:
        statement = select(Account).where(*(getattr(Account, name) == value for name, value in columns.items()))
        account = session.execute(statement).scalars().one_or_none()
        return None if account is None else account.model_dump()


PROBES: list[dict[str, Any]] = [
    {"email": "ada@example.com"},
    {"email": "bob@example.com"},
    {"email": "cy@example.com"},
    {"email": "new@example.com"},
    {"email": "other@example.com"},
    {"tenant_id": 7, "slug": "ada"},
    {"tenant_id": 7, "slug": "bob"},
    {"tenant_id": 8, "slug": "ada"},
    {"tenant_id": 9, "slug": "ada"},
    {"tenant_id": 7, "slug": "new"},
]


def warm(engine: sa.Engine) -> None:
    """Fill every probe's lookup (rows and negative entries)."""
    for probe in PROBES:
        by(engine, **probe)


def assert_fresh(engine: sa.Engine) -> None:
    """Every lookup answers what the database holds now."""
    for probe in PROBES:
        assert by(engine, **probe) == truth(engine, **probe), probe


# Reads -------------------------------------------------------------------------------------


@pytest.mark.parametrize("columns", [{"email": "bob@example.com"}, {"tenant_id": 7, "slug": "bob"}])
def test_a_hit_runs_no_sql_and_one_round_trip(
    engine: sa.Engine, any_real_redis: Any, sql_counter: SQLCounter, stats: CacheStats, columns: dict[str, Any]
) -> None:
    transport = CountingTransport(any_real_redis)
    SQLModelCache.configure(transport=transport)
    seed(engine)
    assert by(engine, **columns) == truth(engine, **columns)  # a miss fills the lookup
    assert transport.calls == ["lookup", "settle"]
    transport.calls.clear()
    sql_counter.reset()
    hits = stats.hits
    for _ in range(3):
        assert by(engine, **columns) == {**ACCOUNTS[1]}
    assert sql_counter.statements == []
    assert transport.calls == ["lookup"] * 3
    assert stats.hits == hits + 3
    key = SQLModelCache.lookup_key(Account, **columns)
    assert row_in(any_real_redis.get(key), Account, 2) == ACCOUNTS[1]  # the row's whole entry
    assert 0 < any_real_redis.pttl(key) <= 600_000
    assert any_real_redis.get(SQLModelCache.cache_key(Account, 2)) is None  # the lookup filled only itself


def test_the_same_instance_as_the_query_and_get(engine: sa.Engine, r: redis.Redis) -> None:
    seed(engine)
    by(engine, email="ada@example.com")  # cached
    with CachedSession(engine) as session:
        held = session.get(Account, 1)
        assert session.get_by(Account, email="ada@example.com") is held
        assert session.get_by(Account, tenant_id=7, slug="ada") is held
        assert session.execute(select(Account).where(Account.email == "ada@example.com")).scalar_one() is held
    with CachedSession(engine) as session:
        found = session.get_by(Account, email="ada@example.com")
        assert found is not None and session.get(Account, 1) is found
        assert found in session and not session.dirty
        found.name = "Ada L."  # an ordinary persistent instance: its change commits
        session.commit()
    assert truth(engine, id=1) == {**ACCOUNTS[0], "name": "Ada L."}
    assert by(engine, email="ada@example.com") == {**ACCOUNTS[0], "name": "Ada L."}


def test_an_expired_instance_in_the_session_is_refreshed(engine: sa.Engine, r: redis.Redis) -> None:
    seed(engine)
    by(engine, email="ada@example.com")
    with CachedSession(engine) as session:
        held = session.get(Account, 1)
        assert held is not None
        session.expire(held)
        with Session(engine) as other:  # a change this session has not seen
            other.execute(update(Account).where(Account.id == 1).values(name="Changed"))
            other.commit()
        found = session.get_by(Account, email="ada@example.com")
        assert found is held and found.name == "Changed"


def test_text_values_take_the_columns_type(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    seed(engine)
    assert by(engine, tenant_id=7, slug="bob") == ACCOUNTS[1]
    assert by(engine, tenant_id="7", slug="bob") == ACCOUNTS[1]  # the same key
    assert stats.hits == 1 and stats.uncacheable == 0
    assert by(engine, tenant_id=None, slug="bob") is None  # NULL is not unique: the database answers
    assert stats.uncacheable == 1


def test_wrong_keyword_sets_name_the_declared_sets(engine: sa.Engine, r: redis.Redis) -> None:
    with CachedSession(engine) as session:
        for columns in ({"slug": "ada"}, {"email": "a", "slug": "ada"}, {}, {"name": "Ada"}):
            with pytest.raises(TypeError, match=r"email; tenant_id, slug"):
                session.get_by(Account, **columns)
        with pytest.raises(ConfigurationError, match=r"Hero declares none"):
            session.get_by(Hero, name="x")


def test_cache_false_and_a_disabled_cache_read_the_database(
    engine: sa.Engine, r: redis.Redis, sql_counter: SQLCounter
) -> None:
    seed(engine)
    by(engine, email="ada@example.com")
    sql_counter.reset()
    with CachedSession(engine) as session:
        found = session.get_by(Account, email="ada@example.com", execution_options={"cache": False})
        assert found is not None and found.name == "Ada"
    assert len(sql_counter.selects) == 1


def test_negative_lookups_are_remembered_until_an_insert(
    engine: sa.Engine, r: redis.Redis, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    seed(engine)
    assert by(engine, email="new@example.com") is None
    assert by(engine, tenant_id=7, slug="new") is None
    sql_counter.reset()
    assert by(engine, email="new@example.com") is None
    assert by(engine, tenant_id=7, slug="new") is None
    assert sql_counter.statements == [] and stats.negative_hits == 2
    key = SQLModelCache.lookup_key(Account, email="new@example.com")
    assert 0 < r.pttl(key) <= 30_000
    with CachedSession(engine) as session:
        session.add(Account(id=9, email="new@example.com", tenant_id=7, slug="new", name="New"))
        session.commit()
    assert by(engine, email="new@example.com") == truth(engine, email="new@example.com") != None  # noqa: E711
    assert by(engine, tenant_id=7, slug="new") == truth(engine, email="new@example.com")


# Writes through the ORM --------------------------------------------------------------------


def _change_email(session: Session) -> None:
    account = session.get(Account, 1)
    assert account is not None
    account.email = "new@example.com"


def _change_name(session: Session) -> None:
    account = session.get(Account, 2)
    assert account is not None
    account.name = "Robert"


def _change_slug_and_tenant(session: Session) -> None:
    account = session.get(Account, 3)
    assert account is not None
    account.tenant_id, account.slug = 7, "new"


def _swap_emails(session: Session) -> None:
    first, second = session.get(Account, 1), session.get(Account, 2)
    assert first is not None and second is not None
    first.email = "other@example.com"
    session.flush()
    second.email = "ada@example.com"
    session.flush()
    first.email = "bob@example.com"


def _delete(session: Session) -> None:
    account = session.get(Account, 2)
    assert account is not None
    session.delete(account)


def _insert(session: Session) -> None:
    session.add(Account(id=4, email="new@example.com", tenant_id=9, slug="ada", name="New"))


def _change_email_of_an_unloaded_row(session: Session) -> None:
    """The old value was never loaded: it is read before the flush."""
    account = session.get(Account, 1, execution_options={"cache": False})
    assert account is not None
    session.commit()  # expires it
    account.email = "new@example.com"


def _delete_an_unloaded_row(session: Session) -> None:
    account = session.get(Account, 1, execution_options={"cache": False})
    assert account is not None
    session.commit()
    session.delete(account)


def _change_in_a_savepoint(session: Session) -> None:
    with session.begin_nested():
        _change_email(session)


ORM_CHANGES = [
    _change_email,
    _change_name,
    _change_slug_and_tenant,
    _swap_emails,
    _delete,
    _insert,
    _change_email_of_an_unloaded_row,
    _delete_an_unloaded_row,
    _change_in_a_savepoint,
]


@pytest.mark.parametrize("change", ORM_CHANGES, ids=lambda change: change.__name__.strip("_"))
def test_an_orm_commit_evicts_the_old_and_the_new_lookups(engine: sa.Engine, r: redis.Redis, change: Any) -> None:
    seed(engine)
    warm(engine)
    with CachedSession(engine) as session:
        change(session)
        session.commit()
    assert_fresh(engine)


def test_a_rollback_keeps_the_lookups(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    seed(engine)
    warm(engine)
    with CachedSession(engine) as session:
        _change_email(session)
        session.flush()
        session.rollback()
    hits = stats.hits
    assert_fresh(engine)
    assert stats.hits > hits


def test_own_writes_are_read_from_the_database_and_never_published(engine: sa.Engine, r: redis.Redis) -> None:
    seed(engine)
    warm(engine)
    with CachedSession(engine) as session:
        _change_email(session)  # pending: get_by flushes it first, as the query would
        assert session.get_by(Account, email="ada@example.com") is None
        found = session.get_by(Account, email="new@example.com")
        assert found is not None and found.id == 1
        moved = session.get_by(Account, tenant_id=7, slug="ada")
        assert moved is found
        session.rollback()
    assert_fresh(engine)
    with CachedSession(engine) as session:
        _change_name(session)
        session.flush()
        assert session.get_by(Account, email="bob@example.com").name == "Robert"  # type: ignore[union-attr]
        session.commit()
    assert by(engine, email="bob@example.com") == {**ACCOUNTS[1], "name": "Robert"}


# Bulk statements ---------------------------------------------------------------------------


MOVED_PROBES = [{"email": "ada@moved.example.com"}, {"email": "bob@moved.example.com"}]

BULK_CHANGES: dict[str, Any] = {
    "update-unique-column": lambda s: s.execute(
        update(Account).where(Account.tenant_id == 7).values(email=Account.slug + "@moved.example.com")
    ),
    "update-unique-column-literal": lambda s: s.execute(
        update(Account).where(Account.id == 1).values(email="new@example.com", slug="new")
    ),
    "update-other-column": lambda s: s.execute(update(Account).where(Account.tenant_id == 7).values(name="Renamed")),
    "update-primary-key": lambda s: s.execute(update(Account).where(Account.id == 2).values(id=20)),
    "update-by-primary-key": lambda s: s.execute(
        update(Account), [{"id": 1, "email": "new@example.com"}, {"id": 2, "name": "Robert"}]
    ),
    "delete": lambda s: s.execute(delete(Account).where(Account.tenant_id == 7)),
    "insert-parameters": lambda s: s.execute(
        insert(Account), [{"id": 4, "email": "new@example.com", "tenant_id": 7, "slug": "new", "name": "N"}]
    ),
    "insert-values": lambda s: s.execute(
        insert(Account).values(id=4, email="new@example.com", tenant_id=7, slug="new", name="N")
    ),
    "insert-default-slug": lambda s: s.execute(insert(Account), [{"id": 4, "email": "new@example.com"}]),
}


# SQLAlchemy has no "fetch" for executemany updates (it raises InvalidRequestError).
BULK_CASES = [
    (change, strategy)
    for change in BULK_CHANGES
    for strategy in ("auto", "fetch", False)
    if not (change == "update-by-primary-key" and strategy == "fetch")
]


@pytest.mark.parametrize(("change", "strategy"), BULK_CASES)
def test_a_bulk_statement_evicts_the_lookups_of_the_rows_it_changed(
    dml_engine: sa.Engine, r: redis.Redis, change: str, strategy: Any
) -> None:
    seed(dml_engine, [*ACCOUNTS, {"id": 5, "email": "e@example.com", "tenant_id": 9, "slug": "new", "name": "E"}])
    warm(dml_engine)
    with CachedSession(dml_engine) as session:
        if strategy != "auto":
            session.execute = _with_strategy(session.execute, strategy)  # type: ignore[method-assign]
        BULK_CHANGES[change](session)
        session.commit()
    assert_fresh(dml_engine)
    for probe in MOVED_PROBES:
        assert by(dml_engine, **probe) == truth(dml_engine, **probe)


def _with_strategy(execute: Any, strategy: Any) -> Any:
    def with_strategy(statement: Any, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(statement, sa.Insert):
            kwargs["execution_options"] = {"synchronize_session": strategy}
        return execute(statement, *args, **kwargs)

    return with_strategy


def test_an_upsert_evicts_every_lookup_of_the_model(engine: sa.Engine, r: redis.Redis) -> None:
    seed(engine)
    warm(engine)
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    with CachedSession(engine) as session:
        statement = dialect_insert(Account).values(id=1, email="ada@example.com", tenant_id=7, slug="ada")
        session.execute(statement.on_conflict_do_update(index_elements=["id"], set_={"email": "new@example.com"}))
        session.commit()
    assert_fresh(engine)


def test_evict_for_changes_outside_the_orm_takes_the_lookups_too(engine: sa.Engine, r: redis.Redis) -> None:
    seed(engine)
    warm(engine)
    with Session(engine) as session:  # another service
        session.execute(update(Account).where(Account.id == 1).values(email="new@example.com", name="Renamed"))
        session.commit()
    SQLModelCache.evict(Account, 1)
    assert_fresh(engine)


# asyncio -----------------------------------------------------------------------------------


async def test_async_get_by(async_engine: AsyncEngine, async_redis: Any, stats: CacheStats) -> None:
    async with AsyncCachedSession(async_engine) as session:
        session.add(Account(**ACCOUNTS[0]))
        await session.commit()
    for _ in range(2):
        async with AsyncCachedSession(async_engine) as session:
            found = await session.get_by(Account, email="ada@example.com")
            assert found is not None and found.name == "Ada"
            assert await session.get_by(Account, tenant_id=7, slug="ada") is found
            assert await session.get_by(Account, email="new@example.com") is None
    assert stats.hits == 2 and stats.negative_hits == 1
    async with AsyncCachedSession(async_engine) as session:
        account = await session.get(Account, 1)
        assert account is not None
        account.email = "new@example.com"
        await session.commit()
    async with AsyncCachedSession(async_engine) as session:
        assert await session.get_by(Account, email="ada@example.com") is None
        moved = await session.get_by(Account, email="new@example.com")
        assert moved is not None and moved.id == 1
        await session.exec(update(Account).where(Account.id == 1).values(name="Renamed"))  # type: ignore[call-overload]
        await session.commit()
    async with AsyncCachedSession(async_engine) as session:
        renamed = await session.get_by(Account, tenant_id=7, slug="ada")
        assert renamed is not None and renamed.name == "Renamed"


def test_an_old_snapshot_is_not_published_under_a_lookup(
    postgres_engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    """The snapshot rule of get(): a REPEATABLE READ transaction whose snapshot predates a
    commit reads the old row by its email, and serves it, but does not publish it."""
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis), default_ttl=600)
    seed(postgres_engine)
    reader_engine = postgres_engine.execution_options(isolation_level="REPEATABLE READ")
    with CachedSession(reader_engine) as reader:
        reader.execute(select(Hero)).all()  # the snapshot is taken here
        with CachedSession(postgres_engine) as writer:
            account = writer.get(Account, 1, execution_options={"cache": False})
            assert account is not None
            account.name = "Renamed"
            writer.commit()
        seen = reader.get_by(Account, email="ada@example.com")
        assert seen is not None and seen.name == "Ada"  # its snapshot
    assert real_redis.get(SQLModelCache.lookup_key(Account, email="ada@example.com")) is None
    assert stats.fills_skipped_snapshot == 1
    assert by(postgres_engine, email="ada@example.com")["name"] == "Renamed"  # type: ignore[index]
