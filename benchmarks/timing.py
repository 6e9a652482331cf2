"""Timing primitives: cases interleaved operation by operation, throughput, and the counters checks.

Every timed operation takes one primary key (or batch index) and runs between two reads of
``time.perf_counter_ns``; what it needs is bound beforehand, so that the samples measure the
operation and not the harness.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.common import BenchmarkError

# An operation takes one primary key (or batch index); a block times one operation per key;
# a group times several cases, one list of keys each, and returns one list of samples each.
SyncOp = Callable[[int], object]
SyncBlock = Callable[[list[int]], list[int]]
AsyncOp = Callable[[int], Awaitable[object]]
SyncGroup = Callable[[list[list[int]]], list[list[int]]]
AsyncGroup = Callable[[list[list[int]]], Awaitable[list[list[int]]]]


def interleaved(steps: Sequence[tuple[SyncOp, SyncOp | None]], gc_off: bool) -> SyncGroup:
    """Time several cases operation by operation, in turn (a, b, c, a, b, c, ...).

    Cases compared by a ratio run interleaved so that they meet the same machine state:
    on a virtual machine an idle core wakes slowly, and a block of one case after a block
    of another would measure the machine's state as much as the code. The order turns by
    one case per operation, so that no case always follows the same other case (what ran
    just before, and which server it woke, moves a round trip by 10 % and more).
    """

    def group(pk_lists: list[list[int]]) -> list[list[int]]:
        clock = time.perf_counter_ns
        samples: list[list[int]] = [[] for _ in steps]
        if len(pk_lists[0]) > 1:  # a one-operation request (interleaved children) must stay cheap
            gc.collect()
        if gc_off:
            gc.disable()
        try:
            for index, pks in enumerate(zip(*pk_lists, strict=True)):
                for case in rotated(range(len(steps)), index):
                    op, prepare = steps[case]
                    if prepare is not None:
                        prepare(pks[case])
                    start = clock()
                    op(pks[case])
                    samples[case].append(clock() - start)
        finally:
            gc.enable()
        return samples

    return group


def async_interleaved(steps: Sequence[tuple[AsyncOp, AsyncOp | None]], gc_off: bool) -> AsyncGroup:
    """As `interleaved`, on the running event loop."""

    async def group(pk_lists: list[list[int]]) -> list[list[int]]:
        clock = time.perf_counter_ns
        samples: list[list[int]] = [[] for _ in steps]
        gc.collect()
        if gc_off:
            gc.disable()
        try:
            for index, pks in enumerate(zip(*pk_lists, strict=True)):
                for case in rotated(range(len(steps)), index):
                    op, prepare = steps[case]
                    if prepare is not None:
                        await prepare(pks[case])
                    start = clock()
                    await op(pks[case])
                    samples[case].append(clock() - start)
        finally:
            gc.enable()
        return samples

    return group


def timed_block(op: SyncOp, prepare: SyncOp | None, gc_off: bool) -> SyncBlock:
    """Time ``op(pk)`` once per primary key; ``prepare(pk)`` runs before each, untimed."""
    group = interleaved([(op, prepare)], gc_off)
    return lambda pks: group([pks])[0]


async def concurrent_rate(op: AsyncOp, pks: list[int], tasks: int, gc_off: bool) -> float:
    """Operations per second of ``tasks`` tasks sharing ``pks`` on one event loop."""

    async def worker(chunk: list[int]) -> None:
        for pk in chunk:
            await op(pk)

    chunks = [pks[i::tasks] for i in range(tasks)]
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        await asyncio.gather(*(worker(chunk) for chunk in chunks))
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return len(pks) / (elapsed / 1e9)


@dataclass
class Series:
    """One case's samples (nanoseconds per operation), and the primary keys it cycles through."""

    name: str
    what: str
    pool: list[int]
    samples: list[int] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    cursor: int = 0

    def next_pks(self, count: int) -> list[int]:
        pks = [self.pool[(self.cursor + i) % len(self.pool)] for i in range(count)]
        self.cursor += count
        return pks

    def record(self, samples: list[int]) -> None:
        self.samples.extend(samples)
        self.round_medians.append(statistics.median(samples))

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) / 1000

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        return {
            "what": self.what,
            "median_us": self.median_us,
            "mean_us": statistics.fmean(ordered) / 1000,
            "min_us": ordered[0] / 1000,
            "p90_us": ordered[int(0.9 * (len(ordered) - 1))] / 1000,
            "samples": len(ordered),
            "round_medians_us": [m / 1000 for m in self.round_medians],
        }


@dataclass
class Rate:
    """One throughput case: operations per second, one figure per round."""

    name: str
    what: str
    pool: list[int]
    rounds: list[float] = field(default_factory=list)
    cursor: int = 0

    def next_pks(self, count: int) -> list[int]:
        pks = [self.pool[(self.cursor + i) % len(self.pool)] for i in range(count)]
        self.cursor += count
        return pks

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    def summary(self) -> dict[str, Any]:
        return {"what": self.what, "median_ops_per_s": self.median, "rounds_ops_per_s": self.rounds}


@dataclass(frozen=True)
class CaseGroup:
    """Cases timed together, interleaved; the operations each runs per round and to warm up."""

    members: list[Series]
    run: SyncGroup
    ops: int
    warmup_ops: int

    def run_round(self) -> None:
        samples = self.run([series.next_pks(self.ops) for series in self.members])
        for series, taken in zip(self.members, samples, strict=True):
            series.record(taken)


# A case to time: its name, what it measures, and the primary keys (or batch indexes) it cycles through.
Case = tuple[str, str, list[int]]


@dataclass
class Results:
    """Every case of every phase, in the order they were defined (the report's order), and the notes."""

    series: dict[str, Series] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_series(self, cases: Sequence[Case]) -> list[Series]:
        members = []
        for name, what, pool in cases:
            self.series[name] = Series(name, what, pool)
            members.append(self.series[name])
        return members


def rotated(items: Sequence[Any], round_index: int) -> list[Any]:
    """``items`` turned by ``round_index``, so that no item always runs first, or after the same other."""
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def expecting(block: SyncBlock, **per_op: int) -> SyncBlock:
    """``block``, failing the run unless the cache counters moved by ``per_op`` per operation."""
    from sqlmodel_cache import SQLModelCache

    def checked(pks: list[int]) -> list[int]:
        before = SQLModelCache.stats()
        samples = block(pks)
        check_counters(before, SQLModelCache.stats(), per_op, len(pks))
        return samples

    return checked


def expecting_group(group: SyncGroup, **per_op: int) -> SyncGroup:
    """As `expecting`, for interleaved cases of which one moves the counters."""
    from sqlmodel_cache import SQLModelCache

    def checked(pk_lists: list[list[int]]) -> list[list[int]]:
        before = SQLModelCache.stats()
        samples = group(pk_lists)
        check_counters(before, SQLModelCache.stats(), per_op, len(pk_lists[0]))
        return samples

    return checked


def async_expecting_group(group: AsyncGroup, **per_op: int) -> AsyncGroup:
    """As `expecting_group`, on the running event loop."""
    from sqlmodel_cache import SQLModelCache

    async def checked(pk_lists: list[list[int]]) -> list[list[int]]:
        before = SQLModelCache.stats()
        samples = await group(pk_lists)
        check_counters(before, SQLModelCache.stats(), per_op, len(pk_lists[0]))
        return samples

    return checked


def check_counters(before: Any, after: Any, per_op: dict[str, int], ops: int) -> None:
    """Fail the run unless each counter in ``per_op`` grew by its value per operation, and no Redis call failed."""
    for name, each in per_op.items():
        moved = getattr(after, name) - getattr(before, name)
        if moved != each * ops:
            raise BenchmarkError(f"expected {name} to grow by {each * ops} over {ops} operations, got {moved}")
    if after.redis_errors != before.redis_errors:
        raise BenchmarkError("Redis errors during a timed block: the figures would be meaningless")
