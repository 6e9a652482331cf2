"""AsyncCachedSession on aiosqlite and asyncpg, with fakeredis and the real redis-server."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, ConfigurationError, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

from .entries import row_in
from .models import Hero, Membership, Team, Token


async def add(engine: AsyncEngine, *rows: Any) -> None:
    async with AsyncSession(engine) as session:
        session.add_all(rows)
        await session.commit()


class StatementCounter:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine.sync_engine
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self)


async def test_miss_fill_hit(async_engine: AsyncEngine, async_redis: Any, stats: CacheStats) -> None:
    await add(async_engine, Hero(id=1, name="Deadpond"))
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, 1)
        assert hero is not None and hero.name == "Deadpond"
    assert stats.fills == 1
    with StatementCounter(async_engine) as counter:
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, 1)
            assert hero is not None and hero.name == "Deadpond"
            assert hero in session and not session.is_modified(hero)
    assert counter.statements == []
    assert stats.hits == 1


async def test_a_missing_row_leaves_no_key_behind(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Hero(id=1, name="a"))
    async with AsyncCachedSession(async_engine) as session:
        assert await session.get(Hero, 404) is None
        assert [h.name if h else None for h in await session.get_many(Hero, [405, 1, 406])] == [None, "a", None]
    assert await async_redis.keys("*") == [SQLModelCache.cache_key(Hero, 1).encode()]


async def test_commit_evicts_and_rollback_does_not(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Hero(id=1, name="old"))
    async with AsyncCachedSession(async_engine) as session:
        await session.get(Hero, 1)
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, 1)
        assert hero is not None
        hero.name = "rolled back"
        await session.flush()
        await session.rollback()
    assert len(await async_redis.keys("sqlmodelcache:hero:*")) == 1
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, 1)
        assert hero is not None and hero.name == "old"
        hero.name = "new"
        await session.commit()
    assert await async_redis.keys("sqlmodelcache:hero:*") == []
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, 1)
        assert hero is not None and hero.name == "new"


async def test_begin_block_and_sessionmaker_evict(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Hero(id=1, name="a"), Hero(id=2, name="b"))
    factory = async_sessionmaker(async_engine, class_=AsyncCachedSession)
    async with factory() as session:
        await session.get(Hero, 1)
        await session.get(Hero, 2)
    async with factory() as session, session.begin():
        hero = await session.get(Hero, 1)
        assert hero is not None
        hero.name = "A"
    async with factory.begin() as session:
        hero = await session.get(Hero, 2)
        assert hero is not None
        await session.delete(hero)
    async with factory() as session:
        assert (await session.get(Hero, 1)).name == "A"  # type: ignore[union-attr]
        assert await session.get(Hero, 2) is None


async def test_execution_options(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Hero(id=1, name="a"), Hero(id=2, name="b"))
    async with AsyncCachedSession(async_engine) as session:
        assert await session.get(Hero, 1, execution_options={"cache": False}) is not None
        assert await async_redis.keys("*") == []
        await session.get(Hero, 2, execution_options={"cache_ttl": 7})
    (key,) = await async_redis.keys("*")
    assert 6_000 < await async_redis.pttl(key) <= 7_000


async def test_composite_keys(async_engine: AsyncEngine, async_redis: Any, stats: CacheStats) -> None:
    await add(async_engine, Membership(org="x:y", user_id=3, role="owner"))
    for _ in range(2):
        async with AsyncCachedSession(async_engine) as session:
            member = await session.get(Membership, ("x:y", 3))
            assert member is not None and member.role == "owner"
    assert stats.hits == 1


async def test_relationship_lazy_load_from_cached_instance(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Team(id=1, name="t"))
    await add(async_engine, Hero(id=1, name="h", team_id=1))
    for _ in range(2):
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, 1)
            assert hero is not None
            team = await session.run_sync(lambda _, hero=hero: hero.team)
            assert team is not None and team.name == "t"


async def test_queries_pass_through(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Hero(id=1, name="a"))
    async with AsyncCachedSession(async_engine) as session:
        heroes = (await session.exec(select(Hero))).all()
        assert [h.name for h in heroes] == ["a"]
    assert await async_redis.keys("*") == []


async def test_wrong_transport_kind_names_the_right_one(async_engine: AsyncEngine, fake_redis: Any) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis))
    async with AsyncCachedSession(async_engine) as session:
        with pytest.raises(ConfigurationError, match="RedisAsyncTransport"):
            await session.get(Hero, 1)


def test_sync_session_with_async_transport_names_the_right_one(sqlite_engine: sa.Engine) -> None:
    import fakeredis

    SQLModelCache.configure(transport=RedisAsyncTransport(fakeredis.FakeAsyncRedis()))
    with CachedSession(sqlite_engine) as session, pytest.raises(ConfigurationError, match="RedisSyncTransport"):
        session.get(Hero, 1)


async def test_fifty_tasks_end_with_cache_equal_to_database(
    async_engine: AsyncEngine, async_cache: Any, stats: CacheStats
) -> None:
    rows = 5
    await add(async_engine, *[Hero(id=i, name="v0", age=0) for i in range(1, rows + 1)])
    rng = random.Random(7)

    async def worker(n: int) -> None:
        for step in range(20):
            pk = rng.randint(1, rows)
            async with AsyncCachedSession(async_engine) as session:
                hero = await session.get(Hero, pk)
                assert hero is not None
                if (n + step) % 4 == 0:
                    hero.age = (hero.age or 0) + 1
                    hero.name = f"v{hero.age}"
                    await session.commit()

    await asyncio.gather(*(worker(n) for n in range(50)))

    async with AsyncSession(async_engine) as session:
        truth = {h.id: (h.name, h.age) for h in (await session.exec(select(Hero))).all()}
    async with AsyncCachedSession(async_engine) as session:
        for pk, expected in truth.items():
            hero = await session.get(Hero, pk)
            assert hero is not None
            assert (hero.name, hero.age) == expected
    # every entry still in Redis holds the committed row

    for pk, (name, age) in truth.items():
        raw = await async_cache.get(SQLModelCache.cache_key(Hero, pk))
        if raw is None or raw.startswith(b"\x00"):
            continue
        row = row_in(raw, Hero, pk)
        assert row is not None
        assert (row["name"], row["age"]) == (name, age)
    assert stats.hits > 0 and stats.invalidations > 0


async def test_explicit_async_eviction(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Hero(id=1, name="a"))
    async with AsyncCachedSession(async_engine) as session:
        await session.get(Hero, 1)
    async with async_engine.begin() as conn:
        await conn.execute(sa.text("UPDATE hero SET name = 'raw'"))
    with pytest.raises(ConfigurationError, match="aevict"):
        SQLModelCache.evict(Hero, 1)
    await SQLModelCache.aevict(Hero, 1)
    async with AsyncCachedSession(async_engine) as session:
        assert (await session.get(Hero, 1)).name == "raw"  # type: ignore[union-attr]


async def test_uuid_keys_and_values_fill_and_hit(
    async_engine: AsyncEngine, async_redis: Any, stats: CacheStats
) -> None:
    """asyncpg returns its own uuid.UUID subclass; rows with UUIDs must still be cached."""
    import uuid

    token_id = uuid.uuid4()
    await add(async_engine, Token(id=token_id, label="t"))
    for _ in range(2):
        async with AsyncCachedSession(async_engine) as session:
            token = await session.get(Token, token_id)
            assert token is not None and token.id == token_id and token.label == "t"
    assert stats.fills == 1 and stats.hits == 1


async def test_async_with_for_update_refreshes(async_engine: AsyncEngine, async_redis: Any) -> None:
    await add(async_engine, Hero(id=1, name="old"))
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, 1)
        assert hero is not None
        async with async_engine.begin() as conn:
            await conn.execute(sa.text("UPDATE hero SET name = 'locked' WHERE id = 1"))
        locked = await session.get(Hero, 1, with_for_update=True)
        assert locked is hero and hero.name == "locked"
