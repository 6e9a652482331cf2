"""Coalesced asyncio lookups: the single-key commands that concurrent ``AsyncCachedSession``
calls of one event loop send to one server share a write and a read, and each call keeps
its own bound, its own reply and its own errors."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
import redis
import redis.asyncio
from sqlmodel.ext.asyncio.session import AsyncSession

from sqlmodel_cache import AsyncCachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport
from sqlmodel_cache.transport._bound import bounded
from sqlmodel_cache.transport._guard import LoopLate

from .models import Hero
from .servers import RedisClusterServer, RedisServer, redis_server

TASKS = 50


async def seed(async_engine: Any, count: int = TASKS) -> None:
    async with AsyncSession(async_engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, count + 1)])
        await session.commit()


async def read(async_engine: Any, pk: int) -> str | None:
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, pk)
        return None if hero is None else hero.name


def reads_processed(server: RedisServer) -> int:
    with redis.Redis(port=server.port) as admin:
        return int(admin.info("stats")["total_reads_processed"])


async def test_concurrent_hits_share_a_write_and_a_read(
    async_engine: Any, redis_proc: RedisServer, stats: CacheStats
) -> None:
    client = redis.asyncio.Redis(port=redis_proc.port, max_connections=TASKS * 2)
    try:
        await client.flushall()
        # A bound that a loaded machine does not reach: the coalescing is counted here, not it.
        SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=1.0))
        await seed(async_engine)
        for pk in range(1, TASKS + 1):
            assert await read(async_engine, pk) == f"h{pk}"  # fills, one by one
        before = reads_processed(redis_proc)
        names = await asyncio.gather(*(read(async_engine, pk) for pk in range(1, TASKS + 1)))
        read_events = reads_processed(redis_proc) - before - 1  # the INFO of the line above
        assert names == [f"h{pk}" for pk in range(1, TASKS + 1)]
        assert stats.hits == TASKS
        # Without coalescing each lookup is a read event of its own on its own connection.
        assert read_events <= TASKS // 5, read_events
    finally:
        await client.aclose()


async def test_on_a_cluster_each_masters_share_goes_in_shared_writes(
    async_engine: Any, redis_cluster_proc: RedisClusterServer, stats: CacheStats, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio.cluster
    import redis.asyncio.connection

    host, port = redis_cluster_proc.startup
    client = redis.asyncio.cluster.RedisCluster(host=host, port=port, max_connections=TASKS * 2)
    try:
        await client.initialize()
        await client.flushall()
        SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=1.0))
        await seed(async_engine)
        for pk in range(1, TASKS + 1):
            assert await read(async_engine, pk) == f"h{pk}"
        # Once concurrently, so that each master's connections are made, then counted. (A
        # server's read events would count the cluster bus's messages too.)
        await asyncio.gather(*(read(async_engine, pk) for pk in range(1, TASKS + 1)))
        writes = 0
        send = redis.asyncio.connection.AbstractConnection.send_packed_command

        async def counted(self: Any, command: Any, check_health: bool = True) -> None:
            nonlocal writes
            writes += 1
            await send(self, command, check_health)

        monkeypatch.setattr(redis.asyncio.connection.AbstractConnection, "send_packed_command", counted)
        names = await asyncio.gather(*(read(async_engine, pk) for pk in range(1, TASKS + 1)))
        monkeypatch.undo()
        assert names == [f"h{pk}" for pk in range(1, TASKS + 1)]
        assert stats.hits == 2 * TASKS and stats.redis_errors == 0, SQLModelCache.stats()
        # Without coalescing, 50 writes; with it, one call alone and then one batch per master.
        masters = len(redis_cluster_proc.nodes)
        assert writes <= 3 * masters, writes
        # A change is seen at once: a commit's eviction goes to the row's master, and the next
        # concurrent reads of that row, batched with others, miss and fill it again.
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, 7)
            assert hero is not None
            hero.name = "changed"
            await session.commit()
        names = await asyncio.gather(*(read(async_engine, pk) for pk in range(1, TASKS + 1)))
        assert names[6] == "changed" and names[:6] == [f"h{pk}" for pk in range(1, 7)]
    finally:
        await client.aclose()


async def test_concurrent_misses_fill_each_row_once(async_engine: Any, async_cache: Any, stats: CacheStats) -> None:
    await seed(async_engine)
    await async_cache.script_flush()  # the fills' scripts must be loaded again, under load
    names = await asyncio.gather(*(read(async_engine, pk) for pk in range(1, TASKS + 1)))
    assert names == [f"h{pk}" for pk in range(1, TASKS + 1)]
    assert stats.misses == TASKS and stats.fills == TASKS and stats.redis_errors == 0
    assert await asyncio.gather(*(read(async_engine, pk) for pk in range(1, TASKS + 1))) == names
    assert stats.hits == TASKS


async def test_a_paused_server_costs_each_call_its_bound_only(async_engine: Any, stats: CacheStats) -> None:
    bound = 0.1
    with redis_server() as server:
        client = redis.asyncio.Redis(port=server.port, max_connections=TASKS * 2)
        try:
            SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=bound, failure_threshold=1000))
            await seed(async_engine)
            for pk in range(1, TASKS + 1):
                await read(async_engine, pk)
            server.process.send_signal(signal.SIGSTOP)
            try:

                async def timed(pk: int) -> float:
                    start = time.perf_counter()
                    assert await read(async_engine, pk) == f"h{pk}"  # from the database
                    return time.perf_counter() - start

                slowest = max(await asyncio.gather(*(timed(pk) for pk in range(1, TASKS + 1))))
            finally:
                server.process.send_signal(signal.SIGCONT)
            assert slowest < bound + 0.5, slowest  # the bound, plus the database and a loaded machine
            assert stats.redis_errors >= TASKS
            hits = stats.hits
            deadline = time.monotonic() + 5
            while stats.hits == hits:  # hits come back by themselves
                await read(async_engine, 1)
                assert time.monotonic() < deadline, "the cache never served hits again"
        finally:
            await client.aclose()


async def test_a_caller_that_gives_up_leaves_the_others_their_replies(
    async_engine: Any, async_cache: Any, stats: CacheStats
) -> None:
    await seed(async_engine)
    for pk in range(1, TASKS + 1):
        await read(async_engine, pk)

    async def abandoned(pk: int) -> None:
        task = asyncio.ensure_future(read(async_engine, pk))
        await asyncio.sleep(0)
        task.cancel()

    results = await asyncio.gather(
        *(abandoned(pk) if pk % 3 == 0 else read(async_engine, pk) for pk in range(1, TASKS + 1))
    )
    for pk, result in zip(range(1, TASKS + 1), results, strict=True):
        if pk % 3:
            assert result == f"h{pk}"
    assert [await read(async_engine, pk) for pk in range(1, TASKS + 1)] == [f"h{pk}" for pk in range(1, TASKS + 1)]


async def test_an_event_loop_stall_is_not_a_redis_failure(
    async_engine: Any, redis_proc: RedisServer, stats: CacheStats
) -> None:
    """A loop kept busy past the bound (the application's own work, a loaded machine) finds the
    transport's timers overdue when it runs again, and the replies waiting in the sockets: the
    timers measured the loop, not Redis, and the calls are hits."""
    client = redis.asyncio.Redis(port=redis_proc.port, max_connections=TASKS * 2)
    try:
        await client.flushall()
        SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=0.1, failure_threshold=1, cooldown=30))
        await seed(async_engine)
        for pk in range(1, TASKS + 1):
            assert await read(async_engine, pk) == f"h{pk}"
        hits = stats.hits

        async def stall() -> None:
            time.sleep(0.35)  # runs once the reads before it were sent, or queued behind the first

        for _ in range(3):
            *names, _ = await asyncio.gather(*(read(async_engine, pk) for pk in range(1, TASKS + 1)), stall())
            assert names == [f"h{pk}" for pk in range(1, TASKS + 1)]
        now = SQLModelCache.stats()
        assert now.redis_errors == 0 and now.breaker_trips == 0, now
        assert stats.hits == hits + 3 * TASKS
    finally:
        await client.aclose()


async def stalled(seconds: float, times: int) -> None:
    """Keep the loop busy ``times`` in a row, letting it turn twice in between (the overdue
    timers run on the second turn)."""
    for _ in range(times):
        time.sleep(seconds)
        await asyncio.sleep(0)
        await asyncio.sleep(0)


async def test_a_bound_the_loop_ran_late_is_moved_on_once() -> None:
    never = asyncio.get_running_loop().create_future()
    reply = asyncio.get_running_loop().create_future()

    async def answer_after_a_stall() -> None:
        await stalled(0.3, 1)
        reply.set_result("there all along")

    # Late once: the reply read on the loop's next turn is served.
    answered, _ = await asyncio.gather(bounded(reply, 0.1), answer_after_a_stall())
    assert answered == "there all along"
    # Late once, then no reply within the moved bound: Redis did not answer.
    started = time.monotonic()
    with pytest.raises((TimeoutError, asyncio.TimeoutError)) as cut:
        await asyncio.gather(bounded(never, 0.1), stalled(0.3, 1))
    assert not isinstance(cut.value, LoopLate)
    assert 0.35 < time.monotonic() - started < 1.0
    # Late twice: the loop, not Redis, and a miss no breaker counts.
    with pytest.raises(LoopLate):
        await asyncio.gather(bounded(asyncio.get_running_loop().create_future(), 0.1), stalled(0.3, 2))
    # On time: the bound.
    started = time.monotonic()
    with pytest.raises((TimeoutError, asyncio.TimeoutError)) as cut:
        await bounded(asyncio.get_running_loop().create_future(), 0.1)
    assert not isinstance(cut.value, LoopLate)
    assert time.monotonic() - started < 0.5


async def test_a_loop_late_twice_is_a_miss_no_breaker_counts(
    async_engine: Any, redis_proc: RedisServer, stats: CacheStats, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.asyncio.Redis(port=redis_proc.port)
    try:
        await client.flushall()
        SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=0.1, failure_threshold=1, cooldown=30))
        await seed(async_engine, 3)
        assert await read(async_engine, 1) == "h1"

        async def late(awaitable: Any, seconds: float) -> Any:
            if hasattr(awaitable, "close"):
                awaitable.close()
            raise LoopLate("the event loop ran the transport's timer 100 ms late twice in a row")

        monkeypatch.setattr("sqlmodel_cache.transport._async.bounded", late)
        for _ in range(3):
            assert await read(async_engine, 1) == "h1"  # from the database
        now = SQLModelCache.stats()
        assert now.redis_errors == 3 and now.breaker_trips == 0 and now.breaker_state == "closed", now
    finally:
        await client.aclose()
