"""The asynchronous phase: redis.asyncio and asyncpg, one operation at a time and many tasks at once.

The throughput cases run in the same rounds as the timed groups, each a step of its own in
the turning order, so that all of them meet the same drift.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack

from benchmarks.common import CONCURRENCY, progress
from benchmarks.timing import (
    AsyncGroup,
    AsyncOp,
    Case,
    Rate,
    Results,
    Series,
    async_expecting_group,
    async_interleaved,
    concurrent_rate,
    rotated,
)
from benchmarks.workload import Workload

if TYPE_CHECKING:
    import redis.asyncio
    from sqlalchemy.ext.asyncio import AsyncEngine

# Operations per second of one round's primary keys.
Measure = Callable[[list[int]], Awaitable[float]]
# One group's or one throughput case's share of a round.
Step = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class AsyncOps:
    floor: AsyncOp
    rtt: AsyncOp
    plain_get: AsyncOp
    cached_get: AsyncOp
    evict: AsyncOp


def async_ops(workload: Workload, client: redis.asyncio.Redis, engine: AsyncEngine) -> AsyncOps:
    """The operations, each a closure bound beforehand to what it uses, as in the synchronous phase."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    from sqlmodel_cache import AsyncCachedSession, SQLModelCache

    model, floor_keys = workload.model, workload.floor_keys
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

    return AsyncOps(floor=floor, rtt=rtt, plain_get=plain_get, cached_get=cached_get, evict=evict)


def timed_groups(workload: Workload, ops: AsyncOps, gc_off: bool) -> list[tuple[list[Case], AsyncGroup]]:
    read = workload.read_pks
    return [
        (
            [
                ("async_floor", "raw asyncio GET + msgpack.unpackb", read),
                ("async_rtt", "raw asyncio PING", read),
                ("async_hit", "AsyncCachedSession.get, cached", read),
            ],
            async_expecting_group(
                async_interleaved([(ops.floor, None), (ops.rtt, None), (ops.cached_get, None)], gc_off),
                hits=1,
                misses=0,
            ),
        ),
        (
            [
                ("async_plain_get", "AsyncSession.get (asyncpg)", read),
                ("async_miss", "AsyncCachedSession.get, evicted", workload.miss_pks),
            ],
            async_expecting_group(
                async_interleaved([(ops.plain_get, None), (ops.cached_get, ops.evict)], gc_off),
                hits=0,
                misses=1,
                fills=1,
            ),
        ),
    ]


def rate_cases(ops: AsyncOps, gc_off: bool) -> list[tuple[str, str, Measure]]:
    def rate(op: AsyncOp) -> Measure:
        return lambda pks: concurrent_rate(op, pks, CONCURRENCY, gc_off)

    return [
        ("async_floor_x50", f"{CONCURRENCY} tasks: raw asyncio GET + unpackb", rate(ops.floor)),
        ("async_hit_x50", f"{CONCURRENCY} tasks: AsyncCachedSession.get hits", rate(ops.cached_get)),
    ]


def group_step(members: list[Series], run: AsyncGroup, count: int) -> Step:
    async def step() -> None:
        samples = await run([series.next_pks(count) for series in members])
        for series, taken in zip(members, samples, strict=True):
            series.record(taken)

    return step


def rate_step(meter: Rate, measure: Measure, count: int) -> Step:
    async def step() -> None:
        meter.rounds.append(await measure(meter.next_pks(count)))

    return step


async def run_async(workload: Workload, results: Results) -> None:
    """Warm every case up, then run them all each round, in a turning order; the configuration reset at the end."""
    import redis.asyncio
    from sqlalchemy.ext.asyncio import create_async_engine

    from sqlmodel_cache import SQLModelCache
    from sqlmodel_cache.transport import RedisAsyncTransport

    settings = workload.settings
    SQLModelCache.reset()
    client = redis.asyncio.Redis(host="127.0.0.1", port=workload.redis_port)
    SQLModelCache.configure(transport=RedisAsyncTransport(client))
    engine = create_async_engine(workload.postgres.url("asyncpg"))
    ops = async_ops(workload, client, engine)
    timed = timed_groups(workload, ops, settings.gc_off)
    rates = rate_cases(ops, settings.gc_off)
    per_round = CONCURRENCY * settings.per_task
    steps = [group_step(results.add_series(cases), run, settings.ops) for cases, run in timed]
    for name, what, measure in rates:
        meter = results.rates[name] = Rate(name, what, workload.read_pks)
        steps.append(rate_step(meter, measure, per_round))
    try:
        progress(f"async: warm-up, then {settings.rounds} rounds")
        for cases, run in timed:
            await run([pool[: settings.warmup_ops] for _, _, pool in cases])
        for _, _, measure in rates:
            await measure(workload.read_pks[:per_round])
        for round_index in range(settings.rounds):
            for step in rotated(steps, round_index):
                await step()
            progress(f"  async round {round_index + 1}/{settings.rounds} done")
    finally:
        await engine.dispose()
        SQLModelCache.reset()
        await client.aclose()
