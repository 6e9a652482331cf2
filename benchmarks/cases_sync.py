"""The synchronous phase: redis-py and psycopg, in this process and in two child processes.

Each operation is a closure bound beforehand to what it uses (the client's methods, the
keys, the model), so that a sample holds the operation and as little of the harness as can be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
from sqlmodel import Session, select

from benchmarks.common import MANY, NEAR_BURST, progress
from benchmarks.servers import ChildPair
from benchmarks.timing import (
    Case,
    CaseGroup,
    Results,
    SyncBlock,
    SyncGroup,
    SyncOp,
    expecting,
    expecting_group,
    interleaved,
    rotated,
    timed_block,
)
from benchmarks.workload import Workload

# Cases timed together, and the group that times them.
Groups = list[tuple[list[Case], SyncGroup]]


@dataclass(frozen=True)
class SyncOps:
    """The operations of the phase; a get_many() operation takes the index of a batch of MANY rows."""

    floor: SyncOp
    rtt: SyncOp
    plain_get: SyncOp
    cached_get: SyncOp
    cached_get_by: SyncOp
    near_get: SyncOp
    near_burst: SyncOp
    evict: SyncOp
    cached_get_many: SyncOp
    many_floor: SyncOp
    evict_many: SyncOp
    plain_select_in: SyncOp
    rmw_plain: SyncOp
    rmw_cached: SyncOp


def sync_ops(workload: Workload) -> SyncOps:
    """The phase's operations, bound to the workload's engine, client, model and keys."""
    from sqlmodel_cache import CachedSession, SQLModelCache

    engine, model, client = workload.engine, workload.model, workload.client
    unpackb, floor_keys, batches = msgpack.unpackb, workload.floor_keys, workload.many_batches
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

    emails, lookup_model, near_model = workload.emails, workload.lookup_model, workload.near_model

    def near_get(pk: int) -> None:
        with CachedSession(engine) as session:
            session.get(near_model, pk)

    def near_burst(pk: int) -> None:
        for _ in range(NEAR_BURST):
            with CachedSession(engine) as session:
                session.get(near_model, pk)

    def cached_get_by(pk: int) -> None:
        with CachedSession(engine) as session:
            session.get_by(lookup_model, email=emails[pk])

    def evict(pk: int) -> None:
        SQLModelCache.evict(model, pk)

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

    return SyncOps(
        floor=floor,
        rtt=rtt,
        plain_get=plain_get,
        cached_get=cached_get,
        cached_get_by=cached_get_by,
        near_get=near_get,
        near_burst=near_burst,
        evict=evict,
        cached_get_many=cached_get_many,
        many_floor=many_floor,
        evict_many=evict_many,
        plain_select_in=plain_select_in,
        rmw_plain=rmw(Session),
        rmw_cached=rmw(CachedSession),
    )


def single_groups(workload: Workload, ops: SyncOps, children: ChildPair, gc_off: bool) -> Groups:
    """Cases compared by a target run interleaved, operation by operation."""
    read = workload.read_pks
    return [
        (
            [
                ("floor", "raw GET + msgpack.unpackb", read),
                ("rtt", "raw PING", read),
                ("hit", "CachedSession.get, cached", read),
                ("negative_hit", "CachedSession.get, cached: no such row", workload.absent_pks),
                ("get_by_hit", "CachedSession.get_by(email=...), cached", read),
                ("near_hit", "CachedSession.get, near=True: from process memory", workload.near_pks),
                (
                    "near_hit_x10",
                    f"{NEAR_BURST} near hits in a row, new session each (the CPU kept busy)",
                    workload.near_pks,
                ),
            ],
            expecting_group(
                interleaved(
                    [
                        (ops.floor, None),
                        (ops.rtt, None),
                        (ops.cached_get, None),
                        (ops.cached_get, None),
                        (ops.cached_get_by, None),
                        (ops.near_get, None),
                        (ops.near_burst, None),
                    ],
                    gc_off,
                ),
                hits=2,
                near_hits=1 + NEAR_BURST,
                negative_hits=1,
                misses=0,
            ),
        ),
        (
            [
                ("plain_get", "Session.get, here (as hit/miss)", read),
                ("miss", "CachedSession.get, evicted", workload.miss_pks),
            ],
            expecting_group(
                interleaved([(ops.plain_get, None), (ops.cached_get, ops.evict)], gc_off), hits=0, misses=1, fills=1
            ),
        ),
        (
            [
                ("plain_get_unimported", "Session.get, child, library never imported", read),
                ("plain_get_configured", "Session.get, child, library configured", read),
            ],
            children.run_interleaved,
        ),
        (
            [
                ("rmw_plain", "Session get+change+commit", workload.rmw_plain_pks),
                ("rmw_cached", "CachedSession get+change+commit, row cached", workload.rmw_cached_pks),
            ],
            expecting_group(
                interleaved([(ops.rmw_plain, None), (ops.rmw_cached, ops.cached_get)], gc_off),
                hits=1,
                misses=1,
                fills=1,
                invalidations=1,
            ),
        ),
        (
            [("rmw_cached_miss", "CachedSession get+change+commit, row evicted", workload.rmw_cold_pks)],
            alone(
                expecting(timed_block(ops.rmw_cached, ops.evict, gc_off), hits=0, misses=1, fills=1, invalidations=2)
            ),
        ),
    ]


def many_groups(workload: Workload, ops: SyncOps, gc_off: bool) -> Groups:
    """The get_many() cases, with single reads interleaved for their targets."""
    read = workload.read_pks
    batch_indexes = list(range(len(workload.many_batches)))
    return [
        (
            [
                ("many_hit", f"CachedSession.get_many, {MANY} rows cached", batch_indexes),
                ("hit_with_many", "CachedSession.get, cached (as many_hit)", read),
                ("many_floor", f"raw MGET of {MANY} entries + msgpack.unpackb each", batch_indexes),
            ],
            expecting_group(
                interleaved([(ops.cached_get_many, None), (ops.cached_get, None), (ops.many_floor, None)], gc_off),
                hits=MANY + 1,
                misses=0,
            ),
        ),
        (
            [
                ("many_miss", f"CachedSession.get_many, {MANY} rows evicted", batch_indexes),
                ("plain_select_in", f"Session SELECT ... IN, {MANY} rows", batch_indexes),
                ("rtt_with_many", "raw PING (as many_miss)", read),
            ],
            expecting_group(
                interleaved(
                    [(ops.cached_get_many, ops.evict_many), (ops.plain_select_in, None), (ops.rtt, None)], gc_off
                ),
                hits=0,
                misses=MANY,
                fills=MANY,
            ),
        ),
    ]


def alone(run: SyncBlock) -> SyncGroup:
    """A block as a group of one, for a case that no target compares with another."""
    return lambda pk_lists: [run(pk_lists[0])]


def sync_cases(workload: Workload, results: Results, children: ChildPair) -> list[CaseGroup]:
    """Every group of the phase; get_many() of MANY rows costs a few single reads, so its groups run fewer."""
    settings = workload.settings
    ops = sync_ops(workload)
    result = []
    for kind, count, warmup_ops in (
        (single_groups(workload, ops, children, settings.gc_off), settings.ops, settings.warmup_ops),
        (many_groups(workload, ops, settings.gc_off), settings.many_ops, settings.many_warmup_ops),
    ):
        for cases, run in kind:
            result.append(CaseGroup(results.add_series(cases), run, count, warmup_ops))
    return result


def run_sync(workload: Workload, results: Results) -> None:
    """Warm every group up, then run them all each round, in a turning order; a fresh pair of children each round."""
    settings = workload.settings
    children = ChildPair(workload.postgres.url("psycopg"), workload.redis_url, settings.gc_off)
    cases = sync_cases(workload, results, children)
    warmup_pks = workload.read_pks[: settings.warmup_ops]
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
