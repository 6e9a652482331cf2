"""The sync phase: every case of ``CachedSession`` against its floor and a plain ``Session``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
from sqlmodel import Session, select

from benchmarks.common import MANY, SyncBlock, SyncGroup, SyncOp
from benchmarks.state import Run
from benchmarks.timing import (
    CaseGroup,
    Series,
    expecting,
    expecting_group,
    interleaved,
    progress,
    rotated,
    timed_block,
)
from benchmarks.workers import ChildPair


def sync_cases(bench: Run, children: ChildPair) -> list[CaseGroup]:
    from sqlmodel_cache import CachedSession, SQLModelCache

    settings, engine, model, client = bench.settings, bench.engine, bench.model, bench.client
    gc_off, unpackb, floor_keys, batches = settings.gc_off, msgpack.unpackb, bench.floor_keys, bench.many_batches
    redis_get: Callable[[bytes], bytes] = client.get  # type: ignore[assignment]

    def floor(pk: int) -> None:
        unpackb(redis_get(floor_keys[pk]))

    def rtt(pk: int) -> None:
        client.ping()

    def plain_get(pk: int) -> None:
        with Session(engine) as session:
            session.get(model, pk)

    def cached_get(pk: int) -> None:
        with CachedSession(engine) as session:
            session.get(model, pk)

    def evict(pk: int) -> None:
        SQLModelCache.evict(model, pk)

    # The get_many() cases take the index of a batch of MANY primary keys.
    def cached_get_many(index: int) -> None:
        with CachedSession(engine) as session:
            session.get_many(model, batches[index])

    floor_batches: list[list[bytes]] = []
    redis_mget: Callable[[list[bytes]], list[bytes]] = client.mget  # type: ignore[assignment]

    def many_floor(index: int) -> None:
        if not floor_batches:  # the floor keys exist once the read rows are cached
            floor_batches.extend([floor_keys[pk] for pk in batch] for batch in batches)
        for raw in redis_mget(floor_batches[index]):
            unpackb(raw)

    def evict_many(index: int) -> None:
        SQLModelCache.evict(model, *batches[index])

    def plain_select_in(index: int) -> None:
        with Session(engine) as session:
            session.exec(select(model).where(model.id.in_(batches[index]))).all()

    def rmw(session_class: type[Session]) -> SyncOp:
        def op(pk: int) -> None:
            with session_class(engine) as session:
                row: Any = session.get(model, pk)
                row.score += 1
                session.commit()

        return op

    def block(op: SyncOp, prepare: SyncOp | None = None) -> SyncBlock:
        return timed_block(op, prepare, gc_off)

    def alone(run: SyncBlock) -> SyncGroup:
        return lambda pk_lists: [run(pk_lists[0])]

    # Cases compared by a target run interleaved, operation by operation.
    groups: list[tuple[list[tuple[str, str, list[int]]], SyncGroup]] = [
        (
            [
                ("floor", "raw GET + msgpack.unpackb", bench.read_pks),
                ("rtt", "raw PING", bench.read_pks),
                ("hit", "CachedSession.get, cached", bench.read_pks),
            ],
            expecting_group(interleaved([(floor, None), (rtt, None), (cached_get, None)], gc_off), hits=1, misses=0),
        ),
        (
            [
                ("plain_get", "Session.get, here (as hit/miss)", bench.read_pks),
                ("miss", "CachedSession.get, evicted", bench.miss_pks),
            ],
            expecting_group(interleaved([(plain_get, None), (cached_get, evict)], gc_off), hits=0, misses=1, fills=1),
        ),
        (
            [
                ("plain_get_unimported", "Session.get, child, library never imported", bench.read_pks),
                ("plain_get_configured", "Session.get, child, library configured", bench.read_pks),
            ],
            children.run_interleaved,
        ),
        (
            [
                ("rmw_plain", "Session get+change+commit", bench.rmw_plain_pks),
                ("rmw_cached", "CachedSession get+change+commit, row cached", bench.rmw_cached_pks),
            ],
            expecting_group(
                interleaved([(rmw(Session), None), (rmw(CachedSession), cached_get)], gc_off),
                hits=1,
                misses=1,
                fills=1,
                invalidations=1,
            ),
        ),
        (
            [("rmw_cached_miss", "CachedSession get+change+commit, row evicted", bench.rmw_cold_pks)],
            alone(expecting(block(rmw(CachedSession), evict), hits=0, misses=1, fills=1, invalidations=2)),
        ),
    ]
    # get_many() of MANY rows costs a few single reads: these groups run fewer operations.
    batch_indexes = list(range(len(batches)))
    many_groups: list[tuple[list[tuple[str, str, list[int]]], SyncGroup]] = [
        (
            [
                ("many_hit", f"CachedSession.get_many, {MANY} rows cached", batch_indexes),
                ("hit_with_many", "CachedSession.get, cached (as many_hit)", bench.read_pks),
                ("many_floor", f"raw MGET of {MANY} entries + msgpack.unpackb each", batch_indexes),
            ],
            expecting_group(
                interleaved([(cached_get_many, None), (cached_get, None), (many_floor, None)], gc_off),
                hits=MANY + 1,
                misses=0,
            ),
        ),
        (
            [
                ("many_miss", f"CachedSession.get_many, {MANY} rows evicted", batch_indexes),
                ("plain_select_in", f"Session SELECT ... IN, {MANY} rows", batch_indexes),
                ("rtt_with_many", "raw PING (as many_miss)", bench.read_pks),
            ],
            expecting_group(
                interleaved([(cached_get_many, evict_many), (plain_select_in, None), (rtt, None)], gc_off),
                hits=0,
                misses=MANY,
                fills=MANY,
            ),
        ),
    ]
    result = []
    for kind, ops, warmup_ops in (
        (groups, settings.ops, settings.warmup_ops),
        (many_groups, settings.many_ops, settings.many_warmup_ops),
    ):
        for cases, run in kind:
            members = []
            for name, what, pool in cases:
                bench.series[name] = Series(name, what, pool)
                members.append(bench.series[name])
            result.append(CaseGroup(members, run, ops, warmup_ops))
    return result


def run_sync(bench: Run) -> None:
    settings = bench.settings
    children = ChildPair(bench.postgres.url("psycopg"), f"redis://127.0.0.1:{bench.redis_port}/0", settings.gc_off)
    cases = sync_cases(bench, children)
    warmup_pks = bench.read_pks[: settings.warmup_ops]
    try:
        progress(
            f"sync: warm-up, then {settings.rounds} rounds of {settings.ops} operations per case"
            f" ({settings.many_ops} per get_many case)"
        )
        children.start(warmup_pks)
        for group in cases:
            group.run([series.next_pks(group.warmup_ops) for series in group.members])
        children.stop()
        for round_index in range(settings.rounds):
            children.start(warmup_pks)
            for group in rotated(cases, round_index):
                group.run_round()
            children.stop()
            progress(f"  sync round {round_index + 1}/{settings.rounds} done")
    finally:
        children.kill()
