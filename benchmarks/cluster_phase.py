"""The cluster phase: a hit on a Redis Cluster against a hit on one server, interleaved."""

from __future__ import annotations

from collections.abc import Callable

import msgpack
import redis
import redis.cluster

from benchmarks.common import CLUSTER_MASTERS, BenchmarkError, SyncGroup, SyncOp
from benchmarks.state import Run
from benchmarks.timing import CaseGroup, Series, interleaved, progress, redis_on_its_own_cpu


def run_cluster(bench: Run) -> None:
    """``floor`` and ``hit`` again on a Redis Cluster (sync only), interleaved with the same on
    the single server, then the configuration reset.

    Both hits run operation by operation in turn: before each, untimed, the library is
    configured with that hit's transport (two transports kept open across the switches,
    so that neither pays for a new connection).
    """
    from sqlmodel_cache import CachedSession, SQLModelCache
    from sqlmodel_cache.transport import RedisSyncTransport
    from tests.servers import redis_cluster

    class KeptOpen(RedisSyncTransport):
        """A transport that outlives `SQLModelCache.reset()`: closed at the end of the phase."""

        def close(bench) -> None:
            pass

        def close_now(bench) -> None:
            super().close()

    settings, engine, model, floor_keys = bench.settings, bench.engine, bench.model, bench.floor_keys
    progress(f"cluster: starting {CLUSTER_MASTERS} masters")
    with redis_cluster(CLUSTER_MASTERS) as cluster:
        host, port = cluster.startup
        client = redis.cluster.RedisCluster(host=host, port=port)
        on_cluster, on_single = KeptOpen(client), KeptOpen(bench.client)

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

        SQLModelCache.reset()
        SQLModelCache.configure(transport=on_cluster)
        pids = [node.process.pid for node in cluster.nodes]
        try:
            bench.fill_read_rows(client)
            unpackb = msgpack.unpackb
            cluster_get: Callable[[bytes], bytes] = client.get  # type: ignore[assignment]
            single_get: Callable[[bytes], bytes] = bench.client.get  # type: ignore[assignment]

            def floor(pk: int) -> None:
                unpackb(cluster_get(floor_keys[pk]))

            def single_floor(pk: int) -> None:
                unpackb(single_get(floor_keys[pk]))

            def cached_get(pk: int) -> None:
                with CachedSession(engine) as session:
                    session.get(model, pk)

            members = []
            for name, what in (
                ("cluster_floor", "raw cluster GET + msgpack.unpackb"),
                ("cluster_hit", "CachedSession.get, cached, on the cluster"),
                ("hit_with_cluster", "CachedSession.get, cached, single server (as cluster_*)"),
                ("floor_with_cluster", "raw GET + msgpack.unpackb, single server (as cluster_*)"),
            ):
                bench.series[name] = Series(name, what, bench.read_pks)
                members.append(bench.series[name])
            steps = [
                (floor, None),
                (cached_get, use(on_cluster)),
                (cached_get, use(on_single)),
                (single_floor, None),
            ]
            group = CaseGroup(
                members,
                checked(interleaved(steps, settings.gc_off)),
                settings.ops,
                settings.warmup_ops,
            )
            progress(f"cluster: warm-up, then {settings.rounds} rounds")
            with redis_on_its_own_cpu([*pids, *([bench.redis_pid] if bench.redis_pid else [])]) as pinned:
                group.run([series.next_pks(group.warmup_ops) for series in members])
                for round_index in range(settings.rounds):
                    group.run_round()
                    progress(f"  cluster round {round_index + 1}/{settings.rounds} done")
            bench.notes.append(
                "cluster phase: every redis-server on one CPU and this process on another"
                if pinned
                else "cluster phase: processes not pinned to CPUs (fewer than 2 CPUs, or no sched_setaffinity)"
            )
        finally:
            SQLModelCache.reset()
            on_cluster.close_now()
            on_single.close_now()
            client.close()
