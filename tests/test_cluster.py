"""Redis Cluster specifics: keys spread over every master, and a master dying mid-run.

The core behaviour (hits, misses, eviction on commit, bulk statements, get_many, the race
interleavings) runs on the cluster through the ``any_redis`` / ``any_real_redis`` /
``async_redis`` fixtures in the other test modules.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio.cluster
import redis.cluster
import sqlalchemy as sa
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

from .conftest import _unavailable
from .models import Hero
from .servers import RedisClusterServer, ServerUnavailable, redis_cluster

ROWS = 60
BOUND = 0.1
SLACK = 0.3


def seed(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, ROWS + 1)])
        session.commit()


def node_of(client: redis.cluster.RedisCluster, key: str) -> int:
    return int(client.nodes_manager.get_node_from_slot(client.keyslot(key)).port)


def test_one_tables_keys_spread_over_every_master(
    sqlite_engine: sa.Engine, real_cluster: redis.cluster.RedisCluster, redis_cluster_proc: RedisClusterServer
) -> None:
    seed(sqlite_engine)
    SQLModelCache.configure(transport=RedisSyncTransport(real_cluster))
    with CachedSession(sqlite_engine) as session:
        assert len(session.get_many(Hero, list(range(1, ROWS + 1)))) == ROWS
    per_node = {}
    for node in redis_cluster_proc.nodes:
        with redis.Redis(port=node.port) as client:
            per_node[node.port] = len(client.keys("sqlmodelcache:hero:*"))
    assert sum(per_node.values()) == ROWS
    assert all(count > 0 for count in per_node.values()), per_node


@pytest.fixture
def private_cluster() -> Iterator[RedisClusterServer]:
    """A cluster of its own: this test kills one of its masters."""
    try:
        with redis_cluster() as cluster:
            yield cluster
    except ServerUnavailable as error:
        _unavailable(error)


def test_a_dead_master_only_sends_its_own_keys_to_the_database(
    sqlite_engine: sa.Engine, private_cluster: RedisClusterServer, stats: CacheStats
) -> None:
    seed(sqlite_engine)
    host, port = private_cluster.startup
    client = redis.cluster.RedisCluster(host=host, port=port)
    transport = RedisSyncTransport(client, failure_threshold=3, cooldown=30)
    SQLModelCache.configure(transport=transport)
    with CachedSession(sqlite_engine) as session:
        session.get_many(Hero, list(range(1, ROWS + 1)))  # fill everything
    owner = {pk: node_of(client, SQLModelCache.cache_key(Hero, pk)) for pk in range(1, ROWS + 1)}
    victim = private_cluster.nodes[1].port
    private_cluster.node_for(victim).kill()

    hits_before = stats.hits
    slowest = 0.0
    for _ in range(3):
        for pk in range(1, ROWS + 1):
            start = time.perf_counter()
            with CachedSession(sqlite_engine) as session:
                hero = session.get(Hero, pk)
                assert hero is not None and hero.name == f"h{pk}"
            slowest = max(slowest, time.perf_counter() - start)
    survivors = sum(1 for pk in owner if owner[pk] != victim)
    assert stats.hits - hits_before == 3 * survivors, "keys on the live masters stopped hitting"
    assert slowest < BOUND + SLACK, slowest
    assert SQLModelCache.stats().breaker_state == "open"  # the dead node's breaker only
    client.close()


async def test_async_dead_master(async_engine: Any, private_cluster: RedisClusterServer, stats: CacheStats) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, 31)])
        await session.commit()
    host, port = private_cluster.startup
    client = redis.asyncio.cluster.RedisCluster(host=host, port=port)
    # The client learns the slot map on its first call; done here, so that on a loaded
    # machine that call cannot outlast the transport's bound and turn the warm-up into misses.
    await client.initialize()
    SQLModelCache.configure(transport=RedisAsyncTransport(client, failure_threshold=3, cooldown=30))
    async with AsyncCachedSession(async_engine) as session:
        await session.get_many(Hero, list(range(1, 31)))
    assert stats.fills == 30, SQLModelCache.stats()
    private_cluster.nodes[2].kill()
    hits_before = stats.hits
    timings = []
    for pk in range(1, 31):
        start = time.perf_counter()
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, pk)
            assert hero is not None and hero.name == f"h{pk}"
        timings.append(time.perf_counter() - start)
    assert max(timings) < BOUND + SLACK + 0.2, timings
    assert stats.hits > hits_before, SQLModelCache.stats()
    await client.aclose()


def test_hits_use_the_nodes_own_connections_and_follow_a_moved_slot(
    sqlite_engine: sa.Engine,
    real_cluster: redis.cluster.RedisCluster,
    stats: CacheStats,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from redis.exceptions import MovedError

    from sqlmodel_cache.transport import _connections

    seed(sqlite_engine)
    transport = RedisSyncTransport(real_cluster)
    SQLModelCache.configure(transport=transport)
    with CachedSession(sqlite_engine) as session:
        session.get_many(Hero, [1, 2, 3, 4, 5])
    for pk in (1, 2, 3, 4, 5):
        with CachedSession(sqlite_engine) as session:
            assert session.get(Hero, pk).name == f"h{pk}"  # type: ignore[union-attr]
    assert stats.hits == 5
    assert len(transport._nodes) == 3, "hits go to each master on the transport's own connections"

    refreshes: list[str] = []
    monkeypatch.setattr(transport._router, "_start_refresh", lambda: refreshes.append("refresh"))
    real_call = _connections.Link.call

    def moved_once(link: _connections.Link, command: bytes) -> object:
        """A master that answers MOVED, as after a resharding the transport has not seen yet."""
        monkeypatch.setattr(_connections.Link, "call", real_call)
        raise MovedError("1 127.0.0.1:1")

    monkeypatch.setattr(_connections.Link, "call", moved_once)
    with CachedSession(sqlite_engine) as session:
        assert session.get(Hero, 1).name == "h1"  # type: ignore[union-attr]  # from the database
    assert refreshes == ["refresh"], "the layout is refreshed beside the requests"
    assert SQLModelCache.stats().breaker_state == "closed", "a moved slot is not the node's failure"
    transport._router.refreshed()
    for pk in (1, 2, 3, 4, 5):
        with CachedSession(sqlite_engine) as session:
            assert session.get(Hero, pk).name == f"h{pk}"  # type: ignore[union-attr]
    assert stats.hits == 10


def test_single_key_calls_go_to_the_node_the_cluster_client_would_choose(
    real_cluster: redis.cluster.RedisCluster,
) -> None:
    transport = RedisSyncTransport(real_cluster)
    keys = [f"sqlmodelcache:hero:abcd:{i}" for i in range(200)]
    keys += ["prefix-ünïcode:hero:abcd:1", "sqlmodelcache:{hero}:abcd:7", "sqlmodelcache:hero:{}:9"]
    for key in keys:
        chosen = transport._guard.node_of(key)
        assert chosen is not None
        assert chosen.name == real_cluster.nodes_manager.get_node_from_slot(real_cluster.keyslot(key)).name, key
    assert len({transport._guard.node_of(key).name for key in keys}) == 3
    transport.close()


@pytest.fixture
def cluster_with_replicas() -> Iterator[RedisClusterServer]:
    """Three masters, each with a replica that takes over when its master dies."""
    try:
        with redis_cluster(masters=3, replicas=1) as cluster:
            yield cluster
    except ServerUnavailable as error:
        _unavailable(error)


def replica_of(port: int) -> int | None:
    """The port of the master that the node on ``port`` replicates, if it is a replica."""
    with redis.Redis(port=port) as node:
        role = node.role()
    return int(role[2]) if role[0] == b"slave" else None


Read = Callable[[int], Awaitable[str | None]]
Rename = Callable[[int, str], Awaitable[None]]


async def exercise_a_failover(cluster: RedisClusterServer, stats: CacheStats, read: Read, rename: Rename) -> None:
    """A master dies and its replica takes over: no exception, every get() within the bound,
    the other masters' keys keep hitting, nothing stale (not even what the replica kept of
    an eviction it never received), and hits come back on the promoted replica by themselves."""
    slowest = 0.0

    async def timed(pk: int) -> str | None:
        nonlocal slowest
        start = time.perf_counter()
        name = await read(pk)
        slowest = max(slowest, time.perf_counter() - start)
        return name

    for pk in range(1, ROWS + 1):
        await timed(pk)  # fill
    assert stats.fills == ROWS
    host, port = cluster.startup
    with redis.cluster.RedisCluster(host=host, port=port) as client:
        owner = {pk: node_of(client, SQLModelCache.cache_key(Hero, pk)) for pk in range(1, ROWS + 1)}
    key, victim = SQLModelCache.cache_key(Hero, 1), owner[1]
    replica = next(port for port in (n.port for n in cluster.nodes) if replica_of(port) == victim)
    with redis.Redis(port=victim) as master:
        assert master.wait(1, 5000) == 1  # the replica has the entry
        cluster.node_for(replica).process.send_signal(signal.SIGSTOP)
        master.client_kill_filter(_type="replica")  # cut off: it cannot come back while stopped
    await rename(1, "new")  # its eviction never reaches the replica
    cluster.node_for(victim).kill()
    cluster.node_for(replica).process.send_signal(signal.SIGCONT)

    hits = stats.hits
    for pk in range(1, ROWS + 1):  # while the cluster notices and fails over
        assert await timed(pk) == ("new" if pk == 1 else f"h{pk}")
    survivors = sum(1 for pk in owner if owner[pk] != victim)
    assert stats.hits - hits >= survivors, "a dead master cost the living masters' keys"
    cluster.wait_failover(replica)
    with redis.Redis(port=replica) as promoted:
        assert promoted.get(key) is not None, "the promoted replica kept the evicted entry"
    deadline = time.monotonic() + 30
    while True:  # hits come back on the promoted replica, and never with the evicted row
        hits = stats.hits
        assert await timed(1) == "new"
        if stats.hits > hits:
            break
        assert time.monotonic() < deadline, "no hits on the promoted replica"
        await asyncio.sleep(0.1)
    assert stats.other_lifetime_entries >= 1
    assert slowest < BOUND + SLACK, slowest


async def test_failover_on_a_cluster_with_replicas(
    sqlite_engine: sa.Engine, cluster_with_replicas: RedisClusterServer, stats: CacheStats
) -> None:
    seed(sqlite_engine)
    host, port = cluster_with_replicas.startup
    client = redis.cluster.RedisCluster(host=host, port=port)
    SQLModelCache.configure(transport=RedisSyncTransport(client, failure_threshold=3, cooldown=1), default_ttl=3600)

    async def read(pk: int) -> str | None:
        with CachedSession(sqlite_engine) as session:
            hero = session.get(Hero, pk)
            return hero.name if hero is not None else None

    async def rename(pk: int, name: str) -> None:
        with CachedSession(sqlite_engine) as session:
            hero = session.get(Hero, pk)
            assert hero is not None
            hero.name = name
            session.commit()

    await exercise_a_failover(cluster_with_replicas, stats, read, rename)
    client.close()


async def test_async_failover_on_a_cluster_with_replicas(
    async_engine: Any, cluster_with_replicas: RedisClusterServer, stats: CacheStats
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, ROWS + 1)])
        await session.commit()
    host, port = cluster_with_replicas.startup
    client = redis.asyncio.cluster.RedisCluster(host=host, port=port)
    await client.initialize()
    SQLModelCache.configure(transport=RedisAsyncTransport(client, failure_threshold=3, cooldown=1), default_ttl=3600)

    async def read(pk: int) -> str | None:
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, pk)
            return hero.name if hero is not None else None

    async def rename(pk: int, name: str) -> None:
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, pk)
            assert hero is not None
            hero.name = name
            await session.commit()

    await exercise_a_failover(cluster_with_replicas, stats, read, rename)
    await client.aclose()


async def test_async_eviction_sent_to_a_paused_master_after_a_timeout_runs_there(
    async_engine: Any, private_cluster: RedisClusterServer
) -> None:
    """The connection a cut call leaves owing replies is kept per master: the commit's eviction
    joins the paused master's queue on it, and runs before another process's read."""
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in (1, 2)])
        await session.commit()
    host, port = private_cluster.startup
    client = redis.asyncio.cluster.RedisCluster(host=host, port=port)
    await client.initialize()
    transport = RedisAsyncTransport(client, failure_threshold=1000)
    SQLModelCache.configure(transport=transport)

    async def read(pk: int) -> str | None:
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, pk)
            return None if hero is None else hero.name

    key = SQLModelCache.cache_key(Hero, 1)
    master = private_cluster.node_for(client.get_node_from_key(key).port)
    other_process = redis.Redis(port=master.port)
    try:
        assert await read(1) == "h1"  # filled
        assert other_process.exists(key)
        master.process.send_signal(signal.SIGSTOP)
        try:
            assert await read(1) == "h1"  # timed out: from the database
            async with AsyncCachedSession(async_engine) as session:
                hero = await session.get(Hero, 1)
                assert hero is not None
                hero.name = "changed"
                await session.commit()  # its eviction times out too, and is kept
            kept = [name for by_node in transport._owing.values() for name in by_node]
            assert kept == [f"127.0.0.1:{master.port}"], kept
        finally:
            master.process.send_signal(signal.SIGCONT)
        assert not other_process.exists(key), "another process was served the stale row"
        assert await read(1) == "changed"
        assert not any(transport._owing.values())
    finally:
        other_process.close()
        await client.aclose()
