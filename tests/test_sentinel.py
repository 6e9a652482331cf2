"""Redis Sentinel, the standard self-hosted high-availability set-up: a master, a replica and
a Sentinel that promotes the replica when the master dies.

Both transports take a Sentinel-managed client. A failover raises nothing, keeps every
``get()`` within the transport's bound plus the database's own time, serves nothing stale
(not even what the promoted replica held when the master's last eviction never reached
it), and hits come back by themselves once the new master answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.sentinel
import redis.sentinel
import sqlalchemy as sa
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

from .conftest import _unavailable
from .models import Hero, Note
from .servers import SentinelDeployment, ServerUnavailable, sentinel_deployment

BOUND = 0.1
SLACK = 0.25  # a loaded 2-CPU machine: scheduling, not waiting on Redis


@pytest.fixture
def deployment() -> Iterator[SentinelDeployment]:
    try:
        with sentinel_deployment() as deployment:
            yield deployment
    except ServerUnavailable as error:
        _unavailable(error)


def seed(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.add_all([Hero(id=1, name="old"), Hero(id=2, name="two")])
        session.commit()


def timed_name(engine: sa.Engine, pk: int) -> tuple[str | None, float]:
    start = time.perf_counter()
    with CachedSession(engine) as session:
        hero = session.get(Hero, pk)
        return (hero.name if hero is not None else None), time.perf_counter() - start


def test_a_sentinel_managed_client(sqlite_engine: sa.Engine, deployment: SentinelDeployment, stats: CacheStats) -> None:
    seed(sqlite_engine)
    client = redis.sentinel.Sentinel(deployment.sentinels).master_for(deployment.name)
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    assert [timed_name(sqlite_engine, 1)[0] for _ in range(3)] == ["old"] * 3
    assert stats.fills == 1 and stats.hits == 2
    with redis.Redis(port=deployment.master_port()) as master:
        assert master.get(SQLModelCache.cache_key(Hero, 1)) is not None


async def test_an_async_sentinel_managed_client(
    async_engine: Any, deployment: SentinelDeployment, stats: CacheStats
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add(Hero(id=1, name="old"))
        await session.commit()
    sentinel = redis.asyncio.sentinel.Sentinel(deployment.sentinels)
    client = sentinel.master_for(deployment.name)
    SQLModelCache.configure(transport=RedisAsyncTransport(client))
    for _ in range(3):
        async with AsyncCachedSession(async_engine) as session:
            assert (await session.get(Hero, 1)).name == "old"  # type: ignore[union-attr]
    assert stats.fills == 1 and stats.hits == 2
    await client.aclose()
    for sentinel_client in sentinel.sentinels:
        await sentinel_client.aclose()


def test_failover_serves_nothing_stale_and_recovers(
    sqlite_engine: sa.Engine, deployment: SentinelDeployment, stats: CacheStats
) -> None:
    seed(sqlite_engine)
    client = redis.sentinel.Sentinel(deployment.sentinels).master_for(deployment.name)
    SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=BOUND), default_ttl=3600)
    assert timed_name(sqlite_engine, 1)[0] == "old"  # filled on the master
    with redis.Redis(port=deployment.master_port()) as master:
        assert master.wait(1, 5000) == 1  # the replica has the entry
    old_master = deployment.master_port()
    replica = next(port for port in deployment.servers if port != old_master)
    deployment.pause(replica)  # the master's next eviction never reaches it:
    with redis.Redis(port=old_master) as master:
        master.client_kill_filter(_type="replica")  # cut off, it cannot come back while paused
    with CachedSession(sqlite_engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "new"
        session.commit()
    new_master = deployment.failover(after_kill=lambda: deployment.resume(replica))
    assert new_master == replica
    with redis.Redis(port=new_master) as promoted:
        assert promoted.get(SQLModelCache.cache_key(Hero, 1)) is not None, "the promoted replica kept the entry"

    slowest, hits_before = 0.0, stats.hits
    deadline = time.monotonic() + 20
    while stats.hits == hits_before:  # until hits come back by themselves
        name, took = timed_name(sqlite_engine, 1)
        assert name == "new"  # never the evicted row the replica kept
        slowest = max(slowest, took)
        assert time.monotonic() < deadline, "the cache never served hits again after the failover"
        time.sleep(0.05)
    assert stats.other_lifetime_entries >= 1
    assert slowest < BOUND + SLACK, slowest


async def test_async_failover_serves_nothing_stale_and_recovers(
    async_engine: Any, deployment: SentinelDeployment, stats: CacheStats
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add(Hero(id=1, name="old"))
        await session.commit()
    sentinel = redis.asyncio.sentinel.Sentinel(deployment.sentinels)
    client = sentinel.master_for(deployment.name)
    SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=BOUND), default_ttl=3600)

    async def timed_read() -> tuple[str | None, float]:
        start = time.perf_counter()
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, 1)
            return (hero.name if hero is not None else None), time.perf_counter() - start

    assert (await timed_read())[0] == "old"
    old_master = deployment.master_port()
    replica = next(port for port in deployment.servers if port != old_master)
    with redis.Redis(port=old_master) as master:
        assert master.wait(1, 5000) == 1
        deployment.pause(replica)
        master.client_kill_filter(_type="replica")
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, 1)
        assert hero is not None
        hero.name = "new"
        await session.commit()
    deployment.failover(after_kill=lambda: deployment.resume(replica))
    slowest, hits_before = 0.0, stats.hits
    deadline = time.monotonic() + 20
    while stats.hits == hits_before:
        name, took = await timed_read()
        assert name == "new"
        slowest = max(slowest, took)
        assert time.monotonic() < deadline, "the cache never served hits again after the failover"
        await asyncio.sleep(0.05)
    assert stats.other_lifetime_entries >= 1
    assert slowest < BOUND + SLACK, slowest
    await client.aclose()
    for sentinel_client in sentinel.sentinels:
        await sentinel_client.aclose()


# The near cache over Sentinel ----------------------------------------------------------------


def _note_title(engine: sa.Engine) -> str | None:
    with CachedSession(engine) as session:
        note = session.get(Note, 1)
        return None if note is None else note.title


def _until_near(read: Any, stats: CacheStats) -> None:
    before, deadline = stats.near_hits, time.monotonic() + 10
    while stats.near_hits == before:
        read()
        assert time.monotonic() < deadline, "never served from the near cache"
        time.sleep(0.005)


def _change_without_eviction(engine: sa.Engine, new_title: str) -> None:
    """A commit whose eviction never reached the new master (it went to the dying one)."""
    with Session(engine) as session:
        note = session.get(Note, 1)
        assert note is not None
        note.title = new_title
        session.commit()


def test_near_entries_do_not_survive_a_failover(
    sqlite_engine: sa.Engine, deployment: SentinelDeployment, stats: CacheStats
) -> None:
    with Session(sqlite_engine) as session:
        session.add(Note(id=1, title="old"))
        session.commit()
    client = redis.sentinel.Sentinel(deployment.sentinels).master_for(deployment.name)
    SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=BOUND), default_ttl=3600)
    _until_near(lambda: _note_title(sqlite_engine), stats)
    deployment.failover()
    _change_without_eviction(sqlite_engine, "new")
    assert _note_title(sqlite_engine) == "new"  # the tracking connection died with the master
    _until_near(lambda: _note_title(sqlite_engine), stats)  # tracking the new master by itself
    assert _note_title(sqlite_engine) == "new"


async def test_async_near_entries_do_not_survive_a_failover(
    async_engine: Any, deployment: SentinelDeployment, stats: CacheStats
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add(Note(id=1, title="old"))
        await session.commit()
    sentinel = redis.asyncio.sentinel.Sentinel(deployment.sentinels)
    client = sentinel.master_for(deployment.name)
    SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=BOUND), default_ttl=3600)

    async def read() -> str | None:
        async with AsyncCachedSession(async_engine) as session:
            note = await session.get(Note, 1)
            return None if note is None else note.title

    async def until_near() -> None:
        before, deadline = stats.near_hits, time.monotonic() + 10
        while stats.near_hits == before:
            await read()
            assert time.monotonic() < deadline, "never served from the near cache"
            await asyncio.sleep(0.005)

    await until_near()
    await asyncio.to_thread(deployment.failover)
    async with AsyncSession(async_engine) as session:
        note = await session.get(Note, 1)
        assert note is not None
        note.title = "new"
        await session.commit()
    assert await read() == "new"
    await until_near()
    assert await read() == "new"
    await client.aclose()
    for sentinel_client in sentinel.sentinels:
        await sentinel_client.aclose()
