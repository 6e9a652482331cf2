"""The snapshot rule on the real PostgreSQL and on SQLite.

A transaction under REPEATABLE READ or SERIALIZABLE reads the snapshot its first statement
took. If it then misses the cache after another transaction committed a change, its
SELECT returns the old row, and publishing that row would serve it to everyone. The rule:
such a reader serves hits but does not fill.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import Session, select

from sqlmodel_cache import CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .models import Hero, Team


@pytest.fixture
def r(real_redis: redis.Redis) -> redis.Redis:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis), default_ttl=600)
    return real_redis


def cached_names(r: redis.Redis) -> list[bytes]:
    return [v for v in (r.get(k) for k in r.keys("sqlmodelcache:hero:*")) if v and not v.startswith(b"\x00")]


def stale_read(engine: sa.Engine, isolation_level: str) -> str:
    """Reader takes a snapshot, a writer commits, then the reader misses the cache."""
    with Session(engine) as session:
        session.add_all([Hero(id=1, name="old"), Team(id=1, name="t")])
        session.commit()
    reader_engine = engine.execution_options(isolation_level=isolation_level)
    with CachedSession(reader_engine) as reader:
        reader.exec(select(Team)).all()  # first statement: the snapshot is taken here
        with CachedSession(engine) as writer:
            hero = writer.get(Hero, 1, execution_options={"cache": False})
            assert hero is not None
            hero.name = "new"
            writer.commit()
        seen = reader.get(Hero, 1)
        assert seen is not None
        return seen.name


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_old_snapshot_is_not_published(
    postgres_engine: sa.Engine, r: redis.Redis, stats: CacheStats, level: str
) -> None:
    assert stale_read(postgres_engine, level) == "old"  # the transaction sees its snapshot...
    assert cached_names(r) == []  # ...but does not publish it
    assert stats.fills_skipped_snapshot == 1
    with CachedSession(postgres_engine) as session:
        assert session.get(Hero, 1).name == "new"  # type: ignore[union-attr]


def test_without_the_rule_the_old_snapshot_would_be_cached(
    postgres_engine: sa.Engine, r: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlmodel_cache import _policy

    monkeypatch.setattr(_policy, "connection_is_fresh", lambda conn: True)
    stale_read(postgres_engine, "REPEATABLE READ")
    (entry,) = cached_names(r)
    assert b"old" in entry


def test_read_committed_transaction_still_fills(postgres_engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    assert stale_read(postgres_engine, "READ COMMITTED") == "new"
    assert stats.fills == 1
    assert b"new" in cached_names(r)[0]


def test_repeatable_read_first_statement_fills(postgres_engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    with Session(postgres_engine) as session:
        session.add(Hero(id=1, name="x"))
        session.commit()
    with CachedSession(postgres_engine.execution_options(isolation_level="REPEATABLE READ")) as session:
        assert session.get(Hero, 1) is not None  # the get begins the transaction: fresh snapshot
    assert stats.fills == 1


def test_hits_are_served_inside_an_old_snapshot(postgres_engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    with Session(postgres_engine) as session:
        session.add_all([Hero(id=1, name="x"), Team(id=1, name="t")])
        session.commit()
    with CachedSession(postgres_engine) as session:
        session.get(Hero, 1)
    with CachedSession(postgres_engine.execution_options(isolation_level="SERIALIZABLE")) as session:
        session.exec(select(Team)).all()
        assert session.get(Hero, 1) is not None
    assert stats.hits == 1


@pytest.fixture
def sqlite_with_transactions(tmp_path: object) -> Iterator[sa.Engine]:
    """SQLite with real BEGIN (SQLAlchemy's recipe): reads inside a transaction share a snapshot."""
    engine = sa.create_engine(f"sqlite:///{tmp_path}/tx.db", connect_args={"isolation_level": None})

    @sa.event.listens_for(engine, "connect")
    def wal(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.execute("PRAGMA journal_mode=WAL")  # readers keep their snapshot, writers proceed

    @sa.event.listens_for(engine, "begin")
    def begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    from sqlmodel import SQLModel

    SQLModel.metadata.create_all(engine)
    yield engine
    engine.dispose()


def test_sqlite_read_transaction_does_not_fill(
    sqlite_with_transactions: sa.Engine, r: redis.Redis, stats: CacheStats
) -> None:
    engine = sqlite_with_transactions
    with Session(engine) as session:
        session.add_all([Hero(id=1, name="old"), Team(id=1, name="t")])
        session.commit()
    with CachedSession(engine) as reader:
        reader.exec(select(Team)).all()
        with Session(engine) as writer:
            hero = writer.get(Hero, 1)
            assert hero is not None
            hero.name = "new"
            writer.commit()
        assert reader.get(Hero, 1).name == "old"  # type: ignore[union-attr]
    assert cached_names(r) == []
    assert stats.fills_skipped_snapshot == 1
