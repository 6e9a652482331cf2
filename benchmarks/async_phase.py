"""The asyncio phase: ``AsyncCachedSession`` against its floor, and 50 tasks' throughput."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgpack

from benchmarks.common import CONCURRENCY, AsyncBlock, AsyncGroup, AsyncOp
from benchmarks.state import Run
from benchmarks.timing import (
    Rate,
    Series,
    async_expecting_group,
    async_interleaved,
    async_timed_block,
    concurrent_rate,
    progress,
    rotated,
)


async def run_async(bench: Run) -> None:
    import redis.asyncio
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlmodel.ext.asyncio.session import AsyncSession

    from sqlmodel_cache import AsyncCachedSession, SQLModelCache
    from sqlmodel_cache.transport import RedisAsyncTransport

    settings, model, floor_keys = bench.settings, bench.model, bench.floor_keys
    SQLModelCache.reset()
    client = redis.asyncio.Redis(host="127.0.0.1", port=bench.redis_port)
    SQLModelCache.configure(transport=RedisAsyncTransport(client))
    engine = create_async_engine(bench.postgres.url("asyncpg"))
    unpackb = msgpack.unpackb
    redis_get: Callable[[bytes], Awaitable[bytes]] = client.get  # type: ignore[assignment]

    async def floor(pk: int) -> None:
        unpackb(await redis_get(floor_keys[pk]))

    async def rtt(pk: int) -> None:
        await client.ping()

    async def plain_get(pk: int) -> None:
        async with AsyncSession(engine) as session:
            await session.get(model, pk)

    async def cached_get(pk: int) -> None:
        async with AsyncCachedSession(engine) as session:
            await session.get(model, pk)

    async def evict(pk: int) -> None:
        await SQLModelCache.aevict(model, pk)

    def block(op: AsyncOp, prepare: AsyncOp | None = None) -> AsyncBlock:
        return async_timed_block(op, prepare, settings.gc_off)

    timed: list[tuple[list[tuple[str, str, list[int]]], AsyncGroup]] = [
        (
            [
                ("async_floor", "raw asyncio GET + msgpack.unpackb", bench.read_pks),
                ("async_rtt", "raw asyncio PING", bench.read_pks),
                ("async_hit", "AsyncCachedSession.get, cached", bench.read_pks),
            ],
            async_expecting_group(
                async_interleaved([(floor, None), (rtt, None), (cached_get, None)], settings.gc_off),
                hits=1,
                misses=0,
            ),
        ),
        (
            [
                ("async_plain_get", "AsyncSession.get (asyncpg)", bench.read_pks),
                ("async_miss", "AsyncCachedSession.get, evicted", bench.miss_pks),
            ],
            async_expecting_group(
                async_interleaved([(plain_get, None), (cached_get, evict)], settings.gc_off),
                hits=0,
                misses=1,
                fills=1,
            ),
        ),
    ]
    per_round = CONCURRENCY * settings.per_task
    gc_off = settings.gc_off

    def rate(op: AsyncOp) -> Callable[[list[int]], Awaitable[float]]:
        return lambda pks: concurrent_rate(op, pks, CONCURRENCY, gc_off)

    rates: list[tuple[str, str, Callable[[list[int]], Awaitable[float]]]] = [
        ("async_floor_x50", f"{CONCURRENCY} tasks: raw asyncio GET + unpackb", rate(floor)),
        ("async_hit_x50", f"{CONCURRENCY} tasks: AsyncCachedSession.get hits", rate(cached_get)),
    ]
    steps: list[Callable[[], Awaitable[None]]] = []
    for cases, run in timed:
        members = []
        for name, what, pool in cases:
            members.append(Series(name, what, pool))
            bench.series[name] = members[-1]
        steps.append(group_step(bench, members, run))
    for name, what, measure in rates:
        meter = bench.rates[name] = Rate(name, what, bench.read_pks)
        steps.append(rate_step(meter, measure, per_round))
    try:
        progress(f"async: warm-up, then {settings.rounds} rounds")
        for cases, run in timed:
            await run([pool[: settings.warmup_ops] for _, _, pool in cases])
        for _, _, measure in rates:
            await measure(bench.read_pks[:per_round])
        for round_index in range(settings.rounds):
            for step in rotated(steps, round_index):
                await step()
            progress(f"  async round {round_index + 1}/{settings.rounds} done")
    finally:
        await engine.dispose()
        SQLModelCache.reset()
        await client.aclose()


def group_step(bench: Run, members: list[Series], run: AsyncGroup) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        samples = await run([series.next_pks(bench.settings.ops) for series in members])
        for series, taken in zip(members, samples, strict=True):
            series.record(taken)

    return step


def rate_step(
    meter: Rate, measure: Callable[[list[int]], Awaitable[float]], count: int
) -> Callable[[], Awaitable[None]]:
    async def step() -> None:
        meter.rounds.append(await measure(meter.next_pks(count)))

    return step
