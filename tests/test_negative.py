"""Negative caching (``CacheConfig(negative_ttl=...)``): a primary key with no row is
remembered, under the same lease, own-writes and snapshot rules as a row, and forgotten by
the commit of any insert of that key through a cached session."""

from __future__ import annotations

from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .conftest import SQLCounter
from .models import Article, Hero


@pytest.fixture
def r(any_redis: redis.Redis) -> redis.Redis:
    SQLModelCache.configure(transport=RedisSyncTransport(any_redis), default_ttl=60)
    return any_redis


def title(engine: sa.Engine, pk: Any) -> str | None:
    with CachedSession(engine) as session:
        article = session.get(Article, pk)
        return article.title if article is not None else None


def test_a_missing_row_is_answered_from_the_cache(
    engine: sa.Engine, r: redis.Redis, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    assert title(engine, 404) is None  # the database says so, once
    sql_counter.reset()
    for _ in range(3):
        assert title(engine, 404) is None
        with CachedSession(engine) as session:
            assert session.get_many(Article, [404, 404]) == [None, None]
    assert sql_counter.statements == []  # every later lookup: no SQL
    assert stats.negative_hits == 6 and stats.hits == 0
    key = SQLModelCache.cache_key(Article, 404)
    assert 0 < r.pttl(key) <= 30_000, "kept for negative_ttl, not the row TTL"


def test_get_many_remembers_missing_rows_beside_present_ones(
    engine: sa.Engine, r: redis.Redis, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    with Session(engine) as session:
        session.add(Article(id=1, title="one"))
        session.commit()
    with CachedSession(engine) as session:
        assert [a.title if a else None for a in session.get_many(Article, [1, 2, 3])] == ["one", None, None]
    sql_counter.reset()
    with CachedSession(engine) as session:
        assert [a.title if a else None for a in session.get_many(Article, [3, 1, 2])] == [None, "one", None]
    assert sql_counter.statements == []
    assert stats.hits == 1 and stats.negative_hits == 2


@pytest.mark.parametrize("how", ["orm-add", "bulk-insert", "bulk-insert-values", "orm-key-change", "bulk-key-change"])
def test_an_insert_of_the_key_is_seen_at_once_after_commit(
    engine: sa.Engine, r: redis.Redis, stats: CacheStats, how: str
) -> None:
    with Session(engine) as session:
        session.add(Article(id=1, title="moved here"))
        session.commit()
    assert title(engine, 404) is None
    assert title(engine, 404) is None  # from the negative entry
    with CachedSession(engine) as session:
        if how == "orm-add":
            session.add(Article(id=404, title="moved here"))
        elif how == "bulk-insert":
            session.execute(insert(Article), [{"id": 404, "title": "moved here"}])
        elif how == "bulk-insert-values":
            session.execute(insert(Article).values(id=404, title="moved here"))
        elif how == "orm-key-change":
            article = session.get(Article, 1)
            assert article is not None
            article.id = 404
        else:
            session.execute(update(Article).where(Article.id == 1).values(id=404))
        session.commit()
    assert title(engine, 404) == "moved here"  # read-your-writes, in any process
    assert stats.negative_hits == 1


def test_no_negative_entry_from_a_transaction_that_wrote(engine: sa.Engine, r: redis.Redis) -> None:
    with CachedSession(engine) as session:
        session.add(Hero(id=1, name="pending"))
        session.flush()
        assert session.get(Article, 404) is None  # it may not publish: its own writes
        session.rollback()
    assert r.keys("*") == []


def test_without_negative_ttl_nothing_is_remembered(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    for _ in range(2):
        with CachedSession(engine) as session:
            assert session.get(Hero, 404) is None
    assert r.keys("*") == [] and stats.negative_hits == 0


async def test_async_negative_caching(async_engine: AsyncEngine, async_redis: Any, stats: CacheStats) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    for _ in range(3):
        async with AsyncCachedSession(async_engine) as session:
            assert await session.get(Article, 404) is None
            assert await session.get_many(Article, [405]) == [None]
    assert stats.negative_hits == 4
    async with AsyncSession(async_engine) as session:  # no cached session: a write it cannot see
        session.add(Article(id=406, title="quiet"))
        await session.commit()
    async with AsyncCachedSession(async_engine) as session:
        session.add(Article(id=404, title="now"))
        await session.commit()
    async with AsyncCachedSession(async_engine) as session:
        assert (await session.get(Article, 404)).title == "now"  # type: ignore[union-attr]
