"""get_many(): order, duplicates, identity map first, one Redis round trip, one SELECT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session, select

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import Answer, Answers, RedisAsyncTransport, RedisSyncTransport, TransportError

from .conftest import SQLCounter
from .models import Hero, Membership, Plain, Team


class CountingTransport(RedisSyncTransport):
    """Counts the transport calls, each of which is one Redis round trip."""

    calls: list[str]

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        self.calls = []

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        self.calls.append("lookup")
        return super().lookup(key, lease, lease_ms)

    def peek_many(self, keys: Sequence[str]) -> Answers:
        self.calls.append("peek_many")
        return super().peek_many(keys)

    def lookup_many(
        self, keys: Sequence[str], leases: Sequence[bytes], replacing: Sequence[bytes | None], lease_ms: int
    ) -> Answers:
        self.calls.append("lookup_many")
        return super().lookup_many(keys, leases, replacing, lease_ms)

    def settle_many(
        self, settlements: Sequence[tuple[str, bytes, bytes | None, int]], epochs: Sequence[bytes | None]
    ) -> list[bool]:
        self.calls.append("settle_many")
        return super().settle_many(settlements, epochs)


@pytest.fixture
def transport(any_redis: redis.Redis) -> CountingTransport:
    transport = CountingTransport(any_redis)
    SQLModelCache.configure(transport=transport, default_ttl=60)
    return transport


def seed(engine: sa.Engine, n: int = 5) -> None:
    with Session(engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, n + 1)])
        session.commit()


def test_order_missing_and_duplicates(engine: sa.Engine, transport: CountingTransport, sql_counter: SQLCounter) -> None:
    seed(engine)
    for _ in range(2):
        with CachedSession(engine) as session:
            heroes = session.get_many(Hero, [4, 1, 99, 1, 2])
            assert [h.name if h else None for h in heroes] == ["h4", "h1", None, "h1", "h2"]
            assert heroes[1] is heroes[3]
            assert all(h in session for h in heroes if h is not None)


def test_one_round_trip_and_one_select(
    engine: sa.Engine, transport: CountingTransport, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    seed(engine)
    sql_counter.reset()
    with CachedSession(engine) as session:
        session.get_many(Hero, [1, 2, 3, 4, 5])
    assert transport.calls == ["peek_many", "lookup_many", "settle_many"]  # read, leases, fills: one trip each
    assert len(sql_counter.selects) == 1
    assert stats.fills == 5

    transport.calls.clear()
    sql_counter.reset()
    with CachedSession(engine) as session:
        heroes = session.get_many(Hero, [5, 4, 3, 2, 1])
        assert [h.id for h in heroes if h] == [5, 4, 3, 2, 1]
    assert transport.calls == ["peek_many"]  # all hits: one round trip
    assert sql_counter.statements == []
    assert stats.hits == 5

    transport.calls.clear()
    sql_counter.reset()
    with CachedSession(engine) as session:
        session.get_many(Hero, [1, 2, 6, 7])  # two hits, two rows that do not exist
    assert transport.calls == ["peek_many", "lookup_many", "settle_many"]  # nothing to fill: leases released
    assert len(sql_counter.selects) == 1
    assert not [key for key in transport.client.keys("*") if key.endswith((b":6", b":7"))]


def test_identity_map_first(engine: sa.Engine, transport: CountingTransport, stats: CacheStats) -> None:
    seed(engine)
    with CachedSession(engine) as session:
        first = session.get(Hero, 1)
        transport.calls.clear()
        lookups = stats.hits + stats.misses
        heroes = session.get_many(Hero, [1])
        assert heroes == [first] and heroes[0] is first
        assert transport.calls == []
        assert stats.hits + stats.misses == lookups


def test_composite_keys(engine: sa.Engine, transport: CountingTransport, stats: CacheStats) -> None:
    with Session(engine) as session:
        session.add_all([Membership(org="a", user_id=1, role="x"), Membership(org="b", user_id=2, role="y")])
        session.commit()
    for _ in range(2):
        with CachedSession(engine) as session:
            rows = session.get_many(Membership, [("b", 2), {"org": "a", "user_id": 1}, ("c", 3)])
            assert [r.role if r else None for r in rows] == ["y", "x", None]
    assert stats.hits == 2


def test_uncached_model_and_cache_false_go_to_the_database(
    engine: sa.Engine, transport: CountingTransport, sql_counter: SQLCounter
) -> None:
    seed(engine, 2)
    with Session(engine) as session:
        session.add(Plain(id=1, name="p"))
        session.commit()
    sql_counter.reset()
    with CachedSession(engine) as session:
        assert [p.name if p else None for p in session.get_many(Plain, [1, 2])] == ["p", None]
        assert [h.name if h else None for h in session.get_many(Hero, [1, 2], execution_options={"cache": False})] == [
            "h1",
            "h2",
        ]
    assert transport.calls == []
    assert len(sql_counter.selects) == 2


def test_own_writes_are_seen_and_not_published(
    engine: sa.Engine, transport: CountingTransport, stats: CacheStats
) -> None:
    seed(engine, 3)
    with CachedSession(engine) as session:
        session.get_many(Hero, [1, 2, 3])
    fills = stats.fills
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "mine"
        session.flush()
        session.expunge_all()
        heroes = session.get_many(Hero, [1, 2, 3])
        assert [h.name for h in heroes if h] == ["mine", "h2", "h3"]
        session.rollback()
    assert stats.fills == fills


def test_eviction_on_commit_applies(engine: sa.Engine, transport: CountingTransport) -> None:
    seed(engine, 3)
    with CachedSession(engine) as session:
        session.get_many(Hero, [1, 2, 3])
    with CachedSession(engine) as session:
        heroes = session.get_many(Hero, [1, 2])
        for hero in heroes:
            assert hero is not None
            hero.name = "changed"
        session.commit()
    with CachedSession(engine) as session:
        assert [h.name for h in session.get_many(Hero, [1, 2, 3]) if h] == ["changed", "changed", "h3"]


def test_snapshot_rule_applies(postgres_engine: sa.Engine, transport: CountingTransport, stats: CacheStats) -> None:
    seed(postgres_engine, 2)
    with Session(postgres_engine) as session:
        session.add(Team(id=1, name="t"))
        session.commit()
    with CachedSession(postgres_engine.execution_options(isolation_level="REPEATABLE READ")) as session:
        session.exec(select(Team)).all()
        assert len(session.get_many(Hero, [1, 2])) == 2
    assert stats.fills == 0
    assert stats.fills_skipped_snapshot == 2


def test_redis_down_is_a_database_read(engine: sa.Engine) -> None:
    seed(engine, 2)
    from .servers import free_port

    SQLModelCache.configure(transport=RedisSyncTransport(redis.Redis(port=free_port())))
    with CachedSession(engine) as session:
        assert [h.name for h in session.get_many(Hero, [1, 2]) if h] == ["h1", "h2"]


async def test_async_get_many(async_engine: AsyncEngine, async_redis: Any, stats: CacheStats) -> None:
    async with AsyncCachedSession(async_engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in (1, 2, 3)])
        await session.commit()
    for _ in range(2):
        async with AsyncCachedSession(async_engine) as session:
            heroes = await session.get_many(Hero, [3, 9, 1, 3])
            assert [h.name if h else None for h in heroes] == ["h3", None, "h1", "h3"]
            assert heroes[0] is heroes[3]
    assert stats.fills == 2 and stats.hits == 2


async def test_async_get_many_redis_down(async_engine: AsyncEngine) -> None:
    import redis.asyncio

    from .servers import free_port

    async with AsyncCachedSession(async_engine) as session:
        session.add(Hero(id=1, name="h1"))
        await session.commit()
    client = redis.asyncio.Redis(port=free_port())
    SQLModelCache.configure(transport=RedisAsyncTransport(client))
    async with AsyncCachedSession(async_engine) as session:
        assert [h.name if h else None for h in await session.get_many(Hero, [1, 2])] == ["h1", None]
    await client.aclose()


def test_another_readers_lease_means_database_and_no_fill(
    engine: sa.Engine, transport: CountingTransport, any_redis: redis.Redis, stats: CacheStats
) -> None:

    seed(engine, 2)
    key = SQLModelCache.cache_key(Hero, 1)
    any_redis.set(key, b"\x00lease:someone-else", px=5000)
    with CachedSession(engine) as session:
        assert [h.name for h in session.get_many(Hero, [1, 2]) if h] == ["h1", "h2"]
    assert any_redis.get(key) == b"\x00lease:someone-else"  # the other reader's lease is untouched
    assert stats.fills == 1 and stats.fills_skipped_lease_busy == 1


def test_get_many_fills_after_a_flushed_script_cache(
    engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    seed(engine, 4)
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    with CachedSession(engine) as session:
        session.get_many(Hero, [1, 2])
    real_redis.script_flush()
    with CachedSession(engine) as session:
        session.get_many(Hero, [3, 4])
    assert stats.fills == 4 and stats.redis_errors == 0


class FillsBetweenReadAndLease(CountingTransport):
    """Another reader fills a key after this call's read and before its lease."""

    filler: Any = None

    def peek_many(self, keys: Sequence[str]) -> Answers:
        values = super().peek_many(keys)
        if self.filler is not None:
            self.filler()
        return values


def test_a_key_filled_between_read_and_lease_is_a_hit(
    engine: sa.Engine, any_real_redis: redis.Redis, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    seed(engine, 3)
    transport = FillsBetweenReadAndLease(any_real_redis)
    SQLModelCache.configure(transport=transport)

    def another_reader_fills_row_2() -> None:
        transport.filler = None
        with CachedSession(engine) as other:
            other.get(Hero, 2)

    transport.filler = another_reader_fills_row_2
    sql_counter.reset()
    with CachedSession(engine) as session:
        heroes = session.get_many(Hero, [1, 2, 3])
        assert [h.name for h in heroes if h] == ["h1", "h2", "h3"]
    assert stats.hits == 1  # row 2, found at lease time
    assert stats.fills == 3  # the other reader's row 2, then rows 1 and 3 under this call's leases
    assert len(sql_counter.selects) == 2  # the other reader's SELECT of row 2, then rows 1 and 3 only
    with CachedSession(engine) as session:
        session.get_many(Hero, [1, 2, 3])
    assert stats.hits == 4


class LeasesFail(CountingTransport):
    def lookup_many(
        self, keys: Sequence[str], leases: Sequence[bytes], replacing: Sequence[bytes | None], lease_ms: int
    ) -> Answers:
        self.calls.append("lookup_many")
        raise TransportError("Redis lookup failed: injected")


def test_a_failed_lease_step_reads_the_database_and_fills_nothing(
    engine: sa.Engine, any_real_redis: redis.Redis, stats: CacheStats
) -> None:
    seed(engine, 3)
    transport = LeasesFail(any_real_redis)
    SQLModelCache.configure(transport=transport)
    with CachedSession(engine) as session:
        heroes = session.get_many(Hero, [1, 2, 3])
        assert [h.name for h in heroes if h] == ["h1", "h2", "h3"]
    assert transport.calls == ["peek_many", "lookup_many"]  # no fill without leases
    assert stats.fills == 0 and stats.misses == 3 and stats.redis_errors == 1


def test_keys_in_another_exact_form_are_the_typed_keys(
    engine: sa.Engine, transport: CountingTransport, stats: CacheStats
) -> None:
    """Before, ``get_many(Hero, ["1"])`` answered ``[None]`` for a row that exists."""
    seed(engine, 3)
    for _ in range(2):
        with CachedSession(engine) as session:
            heroes = session.get_many(Hero, ["1", 2, "3", 1])
            assert [h.name if h else None for h in heroes] == ["h1", "h2", "h3", "h1"]
            assert heroes[0] is heroes[3], "one row, one instance, whatever form it was asked by"
    assert stats.fills == 3 and stats.hits == 3 and stats.uncacheable == 0
