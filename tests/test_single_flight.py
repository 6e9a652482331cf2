"""Single flight (``configure(lease_wait=...)``): N concurrent misses of one row cost one
database read. A reader that finds another's lease waits, briefly and boundedly, for that
reader's fill; a lease holder that hangs or dies costs the others only ``lease_wait``."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, ConfigurationError, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

from .models import Hero
from .servers import PostgresServer

THREADS = 32
TASKS = 50
SLOW_SELECT = 0.05  # the first SELECT of the row: long enough that every reader misses while it runs
# The transport's bound: the herds test single flight, not the bound, on a loaded 2-CPU machine
# where 50 tasks' first calls (each a new connection) may take longer than the default 100 ms.
BOUND = 0.5
# How long a herd waits for its one fill: the default 0.1 s holds here alone, not always on a
# CI machine that runs the servers and the suite on 2 CPUs; the herds test the mechanism.
HERD_WAIT = 1.0


class HeroSelects:
    """Counts the SELECTs of the hero table on an engine; the first one takes SLOW_SELECT longer
    (in the database, so that an asyncio loop goes on meanwhile)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.count, self.lock = engine, 0, threading.Lock()

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if not statement.lstrip().upper().startswith("SELECT") or "FROM hero" not in statement:
            return
        with self.lock:
            self.count += 1
            first = self.count == 1
        if first:
            cursor.execute(f"SELECT pg_sleep({SLOW_SELECT})")

    def __enter__(self) -> HeroSelects:
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self)


@pytest.fixture
def seeded(postgres_engine: sa.Engine) -> sa.Engine:
    with Session(postgres_engine) as session:
        session.add(Hero(id=1, name="hot"))
        session.commit()
    return postgres_engine


@pytest.fixture
def sync_cache(real_redis: redis.Redis) -> redis.Redis:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis, timeout=BOUND))
    return real_redis


def herd(engine: sa.Engine, readers: int, many: bool = False) -> list[float]:
    """``readers`` threads behind a barrier, each a new session's get() of row 1 (or get_many())."""
    barrier = threading.Barrier(readers)
    took: list[float] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            barrier.wait()
            start = time.perf_counter()
            with CachedSession(engine) as session:
                hero = session.get_many(Hero, [1])[0] if many else session.get(Hero, 1)
                assert hero is not None and hero.name == "hot"
            took.append(time.perf_counter() - start)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return took


def test_a_thread_herd_on_a_cold_row_costs_one_select(
    seeded: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis, timeout=BOUND), lease_wait=HERD_WAIT)
    with HeroSelects(seeded) as selects:
        took = herd(seeded, THREADS)
    assert selects.count <= 2, f"{selects.count} SELECTs for {THREADS} readers of one cold row"
    assert stats.lease_waits >= THREADS - 2 and stats.lease_wait_hits >= THREADS - 2
    assert max(took) < SLOW_SELECT + HERD_WAIT + BOUND + 0.5, max(took)


def test_a_get_many_herd_on_a_cold_row_costs_one_select(
    seeded: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis, timeout=BOUND), lease_wait=HERD_WAIT)
    with HeroSelects(seeded) as selects:
        herd(seeded, THREADS, many=True)
    assert selects.count <= 2, (
        f"{selects.count} SELECTs for {THREADS} get_many() of one cold row: {SQLModelCache.stats()}"
    )
    assert stats.lease_wait_hits >= THREADS - 2


def test_without_lease_wait_every_reader_reads_the_database(
    seeded: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis), lease_wait=0)
    with HeroSelects(seeded) as selects:
        herd(seeded, THREADS)
    assert selects.count > 2 and stats.lease_waits == 0  # what single flight saves


async def test_an_asyncio_herd_on_a_cold_row_costs_one_select(
    seeded: sa.Engine, postgres_proc: PostgresServer, async_real_redis: Any, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisAsyncTransport(async_real_redis, timeout=BOUND), lease_wait=HERD_WAIT)
    engine = create_async_engine(postgres_proc.url("asyncpg"), pool_size=TASKS)

    async def read() -> float:
        start = time.perf_counter()
        async with AsyncCachedSession(engine) as session:
            hero = await session.get(Hero, 1)
            assert hero is not None and hero.name == "hot"
        return time.perf_counter() - start

    with HeroSelects(engine.sync_engine) as selects:
        took = await asyncio.gather(*(read() for _ in range(TASKS)))
    assert selects.count <= 2, (
        f"{selects.count} SELECTs for {TASKS} tasks reading one cold row: {SQLModelCache.stats()}"
    )
    assert stats.lease_wait_hits >= TASKS - 2
    assert max(took) < SLOW_SELECT + HERD_WAIT + BOUND + 1.0, max(took)
    await engine.dispose()


@pytest.mark.parametrize("holder", ["hangs", "dies"])
def test_a_lease_holder_that_hangs_or_dies_costs_only_lease_wait(
    seeded: sa.Engine, sync_cache: redis.Redis, stats: CacheStats, holder: str
) -> None:
    key = SQLModelCache.cache_key(Hero, 1)
    # Another reader took the lease and never fills: stuck in its SELECT, or killed (its
    # lease then lives until it expires).
    sync_cache.set(key, b"\x00lease:a-reader-that-never-comes-back", px=10_000 if holder == "hangs" else 3_000)
    with HeroSelects(seeded) as selects:
        took = herd(seeded, 8)
    assert selects.count == 8  # each read the database itself, once its wait was over
    assert max(took) < 0.1 + BOUND + SLOW_SELECT + 0.5, max(took)
    assert stats.lease_waits == 8 and stats.lease_wait_hits == 0 and stats.fills == 0


def test_a_released_lease_is_taken_over_by_a_waiting_reader(
    seeded: sa.Engine, sync_cache: redis.Redis, stats: CacheStats
) -> None:
    """The holder released its lease without filling (its transaction wrote, say): the waiter
    takes the key in the same command it looks with, and fills it."""
    key = SQLModelCache.cache_key(Hero, 1)
    sync_cache.set(key, b"\x00lease:released-soon", px=10_000)
    threading.Timer(0.02, lambda: sync_cache.delete(key)).start()
    with CachedSession(seeded) as session:
        assert session.get(Hero, 1).name == "hot"  # type: ignore[union-attr]
    assert stats.lease_waits == 1 and stats.fills == 1
    with CachedSession(seeded) as session:
        session.get(Hero, 1)
    assert stats.hits == 1


@pytest.mark.parametrize("wait", [-0.1, 11, True, "0.1", None])
def test_lease_wait_is_checked(fake_redis: Any, wait: Any) -> None:
    with pytest.raises(ConfigurationError, match="lease_wait"):
        SQLModelCache.configure(transport=RedisSyncTransport(fake_redis), lease_wait=wait)
