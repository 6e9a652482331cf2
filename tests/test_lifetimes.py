"""Nothing evicted ever comes back: a restart from persistence, and values no reader may serve.

Redis snapshots to RDB (Debian's default) or appends to an AOF synced every second; after a
crash it comes back with entries a commit had already evicted. An entry is served only by
the server lifetime that stored it, a lease of one lifetime never publishes in another, and
whatever is not served is replaced by the next reader at once.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import Answer, RedisAsyncTransport, RedisSyncTransport

from .entries import row_in
from .models import Hero
from .servers import PersistentRedis, persistent_redis


@pytest.fixture(params=["rdb", "aof-everysec"])
def server(request: pytest.FixtureRequest) -> Any:
    with persistent_redis(aof=request.param == "aof-everysec") as server:
        yield server


def seed(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.add_all([Hero(id=1, name="old"), Hero(id=2, name="two")])
        session.commit()


def name_of(engine: sa.Engine, pk: int) -> str | None:
    with CachedSession(engine) as session:
        hero = session.get(Hero, pk)
        return hero.name if hero is not None else None


def rename(engine: sa.Engine, pk: int, name: str) -> None:
    with CachedSession(engine) as session:
        hero = session.get(Hero, pk)
        assert hero is not None
        hero.name = name
        session.commit()


def test_a_restart_from_persistence_never_brings_back_an_evicted_row(
    sqlite_engine: sa.Engine, server: PersistentRedis, stats: CacheStats, caplog: pytest.LogCaptureFixture
) -> None:
    seed(sqlite_engine)
    client = redis.Redis.from_url(server.url)
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=3600)
    assert name_of(sqlite_engine, 1) == "old"  # filled
    old_entry = client.get(SQLModelCache.cache_key(Hero, 1))
    client.save()
    server.backup()  # the files hold the old row
    rename(sqlite_engine, 1, "new")  # evicted in Redis, an eviction the crash loses
    server.restore()
    server.restart()
    assert client.get(SQLModelCache.cache_key(Hero, 1)) == old_entry, "the evicted entry is back in Redis"

    with caplog.at_level(logging.WARNING, logger="sqlmodel_cache"):
        assert name_of(sqlite_engine, 1) == "new"  # not the old row: another server lifetime stored it
    assert stats.other_lifetime_entries == 1 and stats.hits == 1  # the hit is the rename's own get
    assert any("another Redis server lifetime" in record.message for record in caplog.records)
    # That reader replaced the entry at once: the next one hits the new row.
    assert row_in(client.get(SQLModelCache.cache_key(Hero, 1)), Hero, 1) == {
        "id": 1,
        "name": "new",
        "secret_name": "",
        "age": None,
        "team_id": None,
    }
    assert name_of(sqlite_engine, 1) == "new"
    assert stats.hits == 2
    client.close()


def test_get_many_after_a_restart_serves_no_evicted_row_and_refills(
    sqlite_engine: sa.Engine, server: PersistentRedis, stats: CacheStats
) -> None:
    seed(sqlite_engine)
    client = redis.Redis.from_url(server.url)
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=3600)
    with CachedSession(sqlite_engine) as session:
        session.get_many(Hero, [1, 2])
    client.save()
    server.backup()
    rename(sqlite_engine, 1, "new")
    server.restore()
    server.restart()
    with CachedSession(sqlite_engine) as session:
        assert [h.name for h in session.get_many(Hero, [1, 2]) if h] == ["new", "two"]
    assert stats.other_lifetime_entries == 2  # both entries are of the old lifetime, row 2's too
    hits = stats.hits
    with CachedSession(sqlite_engine) as session:
        assert [h.name for h in session.get_many(Hero, [1, 2]) if h] == ["new", "two"]
    assert stats.hits == hits + 2, "both were replaced at once and hit now"
    client.close()


class CrashBetweenLeaseAndFill(RedisSyncTransport):
    """The server snapshots right after the reader's lease; a writer then commits (and evicts)
    while the reader holds the row it read before that commit; then the server crashes and
    comes back from the snapshot, lease included, eviction lost."""

    def __init__(self, client: redis.Redis, server: PersistentRedis, writer: Any) -> None:
        super().__init__(client, timeout=2.0)
        self.server, self.writer, self.armed = server, writer, True

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        answer = super().lookup(key, lease, lease_ms)
        if self.armed:
            self.client.save()  # type: ignore[union-attr]
            self.server.backup()
        return answer

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int, epoch: bytes | None) -> bool:
        if self.armed:
            self.armed = False
            self.writer()
            self.server.restore()
            self.server.restart()
        return super().settle(key, lease, value, ttl_ms, epoch)


def test_a_lease_of_another_lifetime_never_publishes(sqlite_engine: sa.Engine, server: PersistentRedis) -> None:
    seed(sqlite_engine)
    client = redis.Redis.from_url(server.url)
    transport = CrashBetweenLeaseAndFill(client, server, lambda: rename(sqlite_engine, 1, "new"))
    SQLModelCache.configure(transport=transport, default_ttl=3600)
    with CachedSession(sqlite_engine) as session:
        hero = session.get(Hero, 1)  # reads "old" under a lease that the crash brings back
        assert hero is not None and hero.name == "old"
    key = SQLModelCache.cache_key(Hero, 1)
    assert row_in(client.get(key), Hero, 1) is None, "the old row was published under a restored lease"
    assert name_of(sqlite_engine, 1) == "new"
    client.close()


async def test_async_restart_from_persistence(async_engine: AsyncEngine, stats: CacheStats) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add(Hero(id=1, name="old"))
        await session.commit()
    with persistent_redis() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=2.0), default_ttl=3600)
        async with AsyncCachedSession(async_engine) as session:
            assert (await session.get(Hero, 1)).name == "old"  # type: ignore[union-attr]
        await client.save()
        server.backup()
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, 1)
            assert hero is not None
            hero.name = "new"
            await session.commit()
        server.restore()
        server.restart()
        for _ in range(2):  # the first replaces the old lifetime's entry, the second hits it
            async with AsyncCachedSession(async_engine) as session:
                assert (await session.get(Hero, 1)).name == "new"  # type: ignore[union-attr]
        assert stats.other_lifetime_entries == 1
        await client.aclose()


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe not msgpack", b"\x93\x01\x02\x03", b"\x92\xc4\x04abcd\x01"],
    ids=["bytes", "foreign", "other-fingerprint"],
)
def test_a_value_no_reader_may_serve_is_replaced_at_once(
    sqlite_engine: sa.Engine, any_real_redis: redis.Redis, stats: CacheStats, garbage: bytes
) -> None:
    seed(sqlite_engine)
    SQLModelCache.configure(transport=RedisSyncTransport(any_real_redis))
    for pk in (1, 2):
        any_real_redis.set(SQLModelCache.cache_key(Hero, pk), garbage)  # no TTL: it would stay forever
    assert name_of(sqlite_engine, 1) == "old"
    with CachedSession(sqlite_engine) as session:
        assert [h.name for h in session.get_many(Hero, [2]) if h] == ["two"]
    assert stats.corrupt_entries == 2 and stats.fills == 2
    assert name_of(sqlite_engine, 1) == "old"
    with CachedSession(sqlite_engine) as session:
        session.get_many(Hero, [2])
    assert stats.hits == 2 and stats.corrupt_entries == 2


def test_a_value_changed_meanwhile_is_not_leased_over(
    sqlite_engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    """The lease over an unusable value is taken only if the key still holds what was found."""
    seed(sqlite_engine)

    class ChangedMeanwhile(RedisSyncTransport):
        def lease_over(self, key: str, found: bytes, lease: bytes, lease_ms: int) -> Answer:
            real_redis.set(key, b"\x00lease:another-reader")
            return super().lease_over(key, found, lease, lease_ms)

    SQLModelCache.configure(transport=ChangedMeanwhile(real_redis))
    key = SQLModelCache.cache_key(Hero, 1)
    real_redis.set(key, b"garbage")
    assert name_of(sqlite_engine, 1) == "old"
    assert real_redis.get(key) == b"\x00lease:another-reader"  # left to its holder
    assert stats.fills == 0
