"""The cluster phase: ``floor`` and ``hit`` on a Redis Cluster, interleaved with the same on the single server.

It runs after the other phases, on a cluster of its own, synchronously only. Both hits run
operation by operation in turn: before each, untimed, the library is configured with that
hit's transport (two transports kept open across the switches, so that neither pays for a
new connection).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import msgpack
import redis.cluster

from benchmarks.common import CLUSTER_MASTERS, BenchmarkError, progress
from benchmarks.servers import cluster_servers, redis_on_its_own_cpu
from benchmarks.timing import CaseGroup, Results, SyncGroup, SyncOp, interleaved
from benchmarks.workload import Workload

if TYPE_CHECKING:
    from sqlmodel_cache.transport import RedisSyncTransport

# The cases, in the order of the steps that time them; each reads every read row.
CASES = [
    ("cluster_floor", "raw cluster GET + msgpack.unpackb"),
    ("cluster_hit", "CachedSession.get, cached, on the cluster"),
    ("hit_with_cluster", "CachedSession.get, cached, single server (as cluster_*)"),
    ("floor_with_cluster", "raw GET + msgpack.unpackb, single server (as cluster_*)"),
]


class Switch(NamedTuple):
    """``use(transport)``: an untimed step that configures the library with ``transport``;
    ``checked(group)``: ``group``, failing the run unless both hits were hits."""

    use: Callable[[RedisSyncTransport], SyncOp]
    checked: Callable[[SyncGroup], SyncGroup]


def transport_switch(on_cluster: RedisSyncTransport) -> Switch:
    from sqlmodel_cache import SQLModelCache

    # reset() zeroes the counters: each switch banks them first.
    moved = {"hits": 0, "misses": 0, "redis_errors": 0}

    def bank() -> None:
        stats = SQLModelCache.stats()
        for name in moved:
            moved[name] += getattr(stats, name)

    def use(transport: RedisSyncTransport) -> SyncOp:
        def configure(pk: int) -> None:
            bank()
            SQLModelCache.reset()
            SQLModelCache.configure(transport=transport)

        return configure

    def checked(run: SyncGroup) -> SyncGroup:
        def group(pk_lists: list[list[int]]) -> list[list[int]]:
            use(on_cluster)(0)
            moved.update(dict.fromkeys(moved, 0))
            samples = run(pk_lists)
            bank()
            expected = {"hits": 2 * len(pk_lists[0]), "misses": 0, "redis_errors": 0}
            if moved != expected:
                raise BenchmarkError(f"expected the counters to move by {expected}, got {moved}")
            return samples

        return group

    return Switch(use, checked)


def cluster_ops(workload: Workload, client: redis.cluster.RedisCluster) -> tuple[SyncOp, SyncOp, SyncOp]:
    """The floor on the cluster, the floor on the single server, and a hit on whichever is configured."""
    from sqlmodel_cache import CachedSession

    engine, model, floor_keys = workload.engine, workload.model, workload.floor_keys
    unpackb = msgpack.unpackb
    cluster_get: Callable[[bytes], bytes] = client.get  # type: ignore[assignment]
    single_get: Callable[[bytes], bytes] = workload.client.get  # type: ignore[assignment]

    def floor(pk: int) -> None:
        unpackb(cluster_get(floor_keys[pk]))

    def single_floor(pk: int) -> None:
        unpackb(single_get(floor_keys[pk]))

    def cached_get(pk: int) -> None:
        with CachedSession(engine) as session:
            session.get(model, pk)

    return floor, single_floor, cached_get


def run_pinned(group: CaseGroup, rounds: int, pids: Sequence[int]) -> bool:
    """Warm up and run every round with the servers pinned to a CPU; whether they could be."""
    progress(f"cluster: warm-up, then {rounds} rounds")
    with redis_on_its_own_cpu(pids) as pinned:
        group.run([series.next_pks(group.warmup_ops) for series in group.members])
        for round_index in range(rounds):
            group.run_round()
            progress(f"  cluster round {round_index + 1}/{rounds} done")
    return pinned


def run_cluster(workload: Workload, results: Results, redis_pid: int | None) -> None:
    """The phase, from starting the cluster to resetting the configuration."""
    from sqlmodel_cache import SQLModelCache
    from sqlmodel_cache.transport import RedisSyncTransport

    class KeptOpen(RedisSyncTransport):
        """A transport that outlives `SQLModelCache.reset()`: closed at the end of the phase."""

        def close(self) -> None:
            pass

        def close_now(self) -> None:
            super().close()

    settings = workload.settings
    progress(f"cluster: starting {CLUSTER_MASTERS} masters")
    with cluster_servers(CLUSTER_MASTERS) as cluster:
        host, port = cluster.startup
        client = redis.cluster.RedisCluster(host=host, port=port)
        on_cluster, on_single = KeptOpen(client), KeptOpen(workload.client)
        switch = transport_switch(on_cluster)
        SQLModelCache.reset()
        SQLModelCache.configure(transport=on_cluster)
        pids = [node.process.pid for node in cluster.nodes]
        try:
            workload.fill_read_rows(client)
            floor, single_floor, cached_get = cluster_ops(workload, client)
            members = results.add_series([(name, what, workload.read_pks) for name, what in CASES])
            steps = [
                (floor, None),
                (cached_get, switch.use(on_cluster)),
                (cached_get, switch.use(on_single)),
                (single_floor, None),
            ]
            group = CaseGroup(
                members, switch.checked(interleaved(steps, settings.gc_off)), settings.ops, settings.warmup_ops
            )
            pinned = run_pinned(group, settings.rounds, [*pids, *([redis_pid] if redis_pid else [])])
            results.notes.append(
                "cluster phase: every redis-server on one CPU and this process on another"
                if pinned
                else "cluster phase: processes not pinned to CPUs (fewer than 2 CPUs, or no sched_setaffinity)"
            )
        finally:
            SQLModelCache.reset()
            on_cluster.close_now()
            on_single.close_now()
            client.close()
