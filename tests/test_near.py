"""The near cache (``CacheConfig(near=True)``): entries in process memory in front of Redis,
served with no Redis call and no SQL, and dropped as soon as Redis's client tracking says
their key changed, whoever changed it; nothing is served while tracking may have missed a
change (its connection lost, the server silent)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import Session

from sqlmodel_cache import (
    AsyncCachedSession,
    CacheConfig,
    CachedSession,
    CacheStats,
    ConfigurationError,
    SQLModelCache,
)
from sqlmodel_cache.transport import Answer, Answers, RedisAsyncTransport, RedisSyncTransport

from .conftest import SQLCounter
from .models import Hero, Note
from .servers import redis_server


class CountingTransport(RedisSyncTransport):
    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.calls = 0

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        self.calls += 1
        return super().lookup(key, lease, lease_ms)

    def peek(self, key: str) -> Answer:
        self.calls += 1
        return super().peek(key)

    def peek_many(self, keys: Sequence[str]) -> Answers:
        self.calls += 1
        return super().peek_many(keys)

    def lookup_many(
        self, keys: Sequence[str], leases: Sequence[bytes], expected: Sequence[bytes | None], lease_ms: int
    ) -> Answers:
        self.calls += 1
        return super().lookup_many(keys, leases, expected, lease_ms)


def seed(engine: sa.Engine, *notes: Note) -> None:
    with Session(engine) as session:
        session.add_all(notes or [Note(id=1, title="first", tags={"a": 1})])
        session.commit()


def title(engine: sa.Engine, pk: int = 1) -> str | None:
    with CachedSession(engine) as session:
        note = session.get(Note, pk)
        return None if note is None else note.title


def until(condition: Callable[[], bool], what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def warm(engine: sa.Engine, stats: Any, pk: int = 1) -> None:
    """Read ``pk`` until it is served from process memory (tracking starts with the first read)."""
    before = stats.near_hits

    def near_hit() -> bool:
        title(engine, pk)
        return bool(stats.near_hits > before)

    until(near_hit, f"row {pk} was never served from the near cache")


def change_elsewhere(engine: sa.Engine, client: Any, pk: int, new_title: str) -> None:
    """What another process's commit does: the row in the database, then its key evicted, then
    one more round trip (the fence): Redis writes the deletion's reply and its invalidations in
    one pass, in no set order, so the reply alone may come before the invalidation is sent."""
    with Session(engine) as session:
        note = session.get(Note, pk)
        assert note is not None
        note.title = new_title
        session.commit()
    client.delete(SQLModelCache.cache_key(Note, pk))
    client.ping()


def tracking_clients(client: redis.Redis) -> list[dict[str, Any]]:
    return [c for c in client.client_list() if "t" in c["flags"]]


# Serving --------------------------------------------------------------------------------------


def test_a_near_hit_makes_no_redis_call_and_no_sql(
    engine: sa.Engine, any_real_redis: Any, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    transport = CountingTransport(any_real_redis)
    SQLModelCache.configure(transport=transport)
    seed(engine)
    warm(engine, stats)
    transport.calls = 0
    sql_counter.reset()
    with CachedSession(engine) as session:
        note = session.get(Note, 1)
        assert note is not None and note.title == "first" and note.tags == {"a": 1}
        assert session.get(Note, 1) is note  # the identity map, as for any row
        assert note in session and not session.dirty
    assert transport.calls == 0
    assert sql_counter.statements == []
    with CachedSession(engine) as session:  # an ordinary persistent instance: changes flush
        note = session.get(Note, 1)
        assert note is not None
        note.title = "changed"
        session.commit()
    assert title(engine) == "changed"


def test_get_many_serves_near_entries_and_asks_redis_only_for_the_rest(
    engine: sa.Engine, any_real_redis: Any, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    transport = CountingTransport(any_real_redis)
    SQLModelCache.configure(transport=transport, default_ttl=60)
    seed(engine, *(Note(id=pk, title=f"n{pk}", tags={"pk": pk}) for pk in range(1, 6)))
    for pk in (1, 2, 3):
        warm(engine, stats, pk)
    transport.calls = 0
    sql_counter.reset()
    with CachedSession(engine) as session:
        notes = session.get_many(Note, [1, 2, 3, 1])
        assert [n.title for n in notes if n is not None] == ["n1", "n2", "n3", "n1"]
        assert notes[0] is notes[3] and all(n in session for n in notes)
    assert transport.calls == 0 and sql_counter.statements == []  # all from process memory
    near_hits = stats.near_hits
    with CachedSession(engine) as session:  # 4 and 5: the database, then Redis fills
        notes = session.get_many(Note, [1, 4, 5, 2])
        assert [n.title if n is not None else None for n in notes] == ["n1", "n4", "n5", "n2"]
    assert stats.near_hits == near_hits + 2
    # A multi-key read of Redis keeps its hits near, as get() does.
    for _ in range(200):
        before = stats.near_hits
        with CachedSession(engine) as session:
            session.get_many(Note, [4, 5])
        if stats.near_hits == before + 2:
            break
        time.sleep(0.005)
    else:
        pytest.fail("get_many never kept its Redis hits near")
    # A change elsewhere is applied before the next get_many() serves the row.
    change_elsewhere(engine, any_real_redis, 4, "changed")
    with CachedSession(engine) as session:
        notes = session.get_many(Note, [4, 5])
        assert [n.title for n in notes if n is not None] == ["changed", "n5"]


def test_get_many_keeps_no_shared_mutable_value(engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    seed(engine)
    warm(engine, stats)  # tracking is live
    change_elsewhere(engine, real_redis, 1, "second")
    until(lambda: stats.near_invalidations > 0, "the change never reached the near cache")
    kept = stats.near_hits
    while stats.near_hits == kept:  # until a get_many() read of Redis kept the entry again
        with CachedSession(engine) as session:
            [note] = session.get_many(Note, [1])
            assert note is not None and note.tags is not None
            note.tags["a"] = 2  # in place, never committed
    with CachedSession(engine) as session:
        [again] = session.get_many(Note, [1])
        assert again is not None and again.tags == {"a": 1}


def test_a_change_by_another_process_is_applied_before_the_next_read(
    engine: sa.Engine, any_real_redis: Any, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(any_real_redis))
    seed(engine)
    for round_ in range(30):
        warm(engine, stats)
        change_elsewhere(engine, any_real_redis, 1, f"version {round_}")
        assert title(engine) == f"version {round_}"  # at once: no older row after the eviction returned
    assert stats.near_invalidations >= 30


def test_a_commit_of_this_process_drops_the_entry_at_once(
    engine: sa.Engine, any_real_redis: Any, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(any_real_redis))
    seed(engine)
    warm(engine, stats)
    with CachedSession(engine) as session:
        note = session.get(Note, 1)
        assert note is not None
        note.title = "mine"
        session.commit()
    assert title(engine) == "mine"
    with CachedSession(engine) as session:
        session.delete(session.get(Note, 1))
        session.commit()
    assert title(engine) is None


def test_unique_lookups_are_kept_near_too(
    engine: sa.Engine, real_redis: redis.Redis, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    seed(engine)

    def by_title(value: str) -> int | None:
        with CachedSession(engine) as session:
            note = session.get_by(Note, title=value)
            return None if note is None else note.id

    until(lambda: by_title("first") == 1 and stats.near_hits > 0, "never served from the near cache")
    sql_counter.reset()
    near_hits = stats.near_hits
    assert by_title("first") == 1
    assert stats.near_hits == near_hits + 1 and sql_counter.statements == []
    with CachedSession(engine) as session:  # a commit moves the row away from the looked-up title
        note = session.get(Note, 1)
        assert note is not None
        note.title = "renamed"
        session.commit()
    assert by_title("first") is None
    assert by_title("renamed") == 1


def test_mutable_values_are_not_shared_between_sessions(
    engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    seed(engine)
    warm(engine, stats)
    with CachedSession(engine) as session:
        note = session.get(Note, 1)
        assert note is not None and note.tags is not None
        note.tags["a"] = 2  # in place, never committed
    with CachedSession(engine) as session:
        again = session.get(Note, 1)
        assert again is not None and again.tags == {"a": 1}


def test_the_read_that_keeps_an_entry_does_not_share_its_mutable_values(
    engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    seed(engine)
    warm(engine, stats)
    change_elsewhere(engine, real_redis, 1, "second")  # the near entry is invalidated
    until(lambda: stats.near_invalidations > 0, "the change never reached the near cache")
    kept = stats.near_hits
    while stats.near_hits == kept:  # until a Redis hit has kept the entry again
        with CachedSession(engine) as session:
            note = session.get(Note, 1)
            assert note is not None and note.tags is not None
            note.tags["a"] = 2  # in place, never committed: this session's own
    with CachedSession(engine) as session:
        again = session.get(Note, 1)
        assert again is not None and again.tags == {"a": 1}


def test_the_near_cache_is_bounded(engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis), near_cache_size=2)
    seed(engine, Note(id=1, title="1"), Note(id=2, title="2"), Note(id=3, title="3"))
    for pk in (1, 2, 3):
        warm(engine, stats, pk)
    near_hits, hits = stats.near_hits, stats.hits
    assert title(engine, 1) == "1"  # the least recently used went out
    assert (stats.near_hits, stats.hits) == (near_hits, hits + 1)


def test_only_near_models_use_memory_and_size_zero_turns_it_off(
    engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    with Session(engine) as session:
        session.add(Hero(id=1, name="h"))
        session.commit()
    for _ in range(20):
        with CachedSession(engine) as session:
            session.get(Hero, 1)
    assert stats.near_hits == 0 and stats.hits == 19
    assert tracking_clients(real_redis) == []  # no near model read: no tracking connection
    SQLModelCache.reset()
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis), near_cache_size=0)
    seed(engine)
    for _ in range(20):
        title(engine)
    assert SQLModelCache.stats().near_hits == 0
    assert tracking_clients(real_redis) == []


def test_near_settings_are_checked() -> None:
    with pytest.raises(ConfigurationError, match=r"CacheConfig\(near=\.\.\.\) must be True or False"):
        CacheConfig(near="yes")  # type: ignore[arg-type]
    for size in (-1, True, 1.5):
        with pytest.raises(ConfigurationError, match=r"near_cache_size"):
            SQLModelCache.configure(transport=RedisSyncTransport(redis.Redis()), near_cache_size=size)  # type: ignore[arg-type]


# When tracking may have missed a change -------------------------------------------------------


def test_a_lost_tracking_connection_drops_the_near_cache_until_it_is_back(
    engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    seed(engine)
    warm(engine, stats)
    [tracking] = tracking_clients(real_redis)
    real_redis.client_kill_filter(_id=tracking["id"])
    time.sleep(0.01)  # the connection's end reaches this process (what has reached it is applied)
    change_elsewhere(engine, real_redis, 1, "while untracked")  # no invalidation can reach us
    assert title(engine) == "while untracked"
    assert stats.near_invalidations >= 1
    warm(engine, stats)  # tracking is back by itself, and near hits with it
    until(lambda: len(tracking_clients(real_redis)) == 1, "tracking did not come back")
    change_elsewhere(engine, real_redis, 1, "tracked again")
    assert title(engine) == "tracked again"


def test_a_silent_server_serves_no_near_entry(engine: sa.Engine, stats: CacheStats) -> None:
    """A paused Redis holds back its invalidations, and a commit's eviction waits there; past
    a quarter of the bound without an answered ping, nothing is served from memory."""
    with redis_server() as server:
        client = redis.Redis(port=server.port)
        SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=0.1))
        seed(engine)
        warm(engine, stats)
        server.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(0.05)
            near_hits = stats.near_hits
            start = time.perf_counter()
            assert title(engine) == "first"  # from the database, within the bound
            assert time.perf_counter() - start < 0.5
            assert stats.near_hits == near_hits
        finally:
            server.process.send_signal(signal.SIGCONT)
        warm(engine, stats)
        client.close()


def test_a_stall_drops_every_near_entry(engine: sa.Engine, stats: CacheStats) -> None:
    """What waited in a paused Redis runs when it comes back, in an order between connections
    that nothing promises (a commit may have given up on its eviction meanwhile): the late
    answers to the tracking pings vouch for nothing, and every entry is dropped."""
    with redis_server() as server:
        client = redis.Redis(port=server.port)
        SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=0.1, failure_threshold=1000))
        seed(engine)
        warm(engine, stats)
        dropped = stats.near_invalidations
        server.process.send_signal(signal.SIGSTOP)
        try:
            time.sleep(0.1)  # the tracking thread's pings wait, unanswered
            assert title(engine) == "first"
        finally:
            server.process.send_signal(signal.SIGCONT)
        until(lambda: stats.near_invalidations > dropped, "the late answers were trusted: nothing was dropped")
        warm(engine, stats)  # and entries come back
        client.close()


# asyncio --------------------------------------------------------------------------------------


@pytest.fixture(params=["redis-server", "redis-cluster"])
def async_and_raw(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Any]]:
    """An asyncio client for the transport, and a blocking one to play another process."""
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

    if request.param == "redis-cluster":
        host, port = request.getfixturevalue("redis_cluster_proc").startup
        raw: Any = redis.cluster.RedisCluster(host=host, port=port)
        raw.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
        yield redis.asyncio.cluster.RedisCluster(host=host, port=port), raw
    else:
        server = request.getfixturevalue("redis_proc")
        raw = redis.Redis(port=server.port)
        raw.flushall()
        yield redis.asyncio.Redis(port=server.port), raw
    raw.close()


async def test_async_near_hits_and_invalidations(async_engine: Any, async_and_raw: tuple[Any, Any]) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    client, raw = async_and_raw
    await client.ping()  # the application's client, in use (a cluster client learns its layout)
    SQLModelCache.configure(transport=RedisAsyncTransport(client))
    async with AsyncSession(async_engine) as session:
        session.add(Note(id=1, title="first"))
        await session.commit()

    async def read() -> str | None:
        async with AsyncCachedSession(async_engine) as session:
            note = await session.get(Note, 1)
            return None if note is None else note.title

    async def until_near(expected: str) -> None:
        before, deadline = SQLModelCache.stats().near_hits, time.monotonic() + 5
        while SQLModelCache.stats().near_hits == before:
            assert await read() == expected
            assert time.monotonic() < deadline, "never served from the near cache"

    await until_near("first")
    for round_ in range(10):
        async with AsyncSession(async_engine) as session:
            note = await session.get(Note, 1)
            assert note is not None
            note.title = f"version {round_}"
            await session.commit()
        raw.delete(SQLModelCache.cache_key(Note, 1))  # another process's eviction
        assert await read() == f"version {round_}"
        await until_near(f"version {round_}")
    SQLModelCache.reset()
    await client.aclose()


def test_a_forked_child_keeps_nothing_of_its_parent(
    engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    """A worker forked after the first requests (gunicorn's preload) tracks for itself."""
    import os
    import warnings

    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    seed(engine)
    warm(engine, stats)
    change_elsewhere(engine, real_redis, 1, "changed")  # the parent has not read since
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            engine.dispose(close=False)
            if title(engine) == "changed":
                before = SQLModelCache.stats().near_hits
                deadline = time.monotonic() + 5
                while SQLModelCache.stats().near_hits == before and time.monotonic() < deadline:
                    title(engine)
                code = 0 if SQLModelCache.stats().near_hits > before else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert title(engine) == "changed"


class FenceCounting(RedisSyncTransport):
    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.fences: list[list[str]] = []

    def fence(self, keys: Any) -> None:
        self.fences.append(list(keys))
        super().fence(keys)


def test_a_commit_that_evicts_near_keys_returns_after_redis_sent_their_invalidations(
    engine: sa.Engine, any_real_redis: Any
) -> None:
    """Redis writes a commit's reply and the invalidations it causes in one pass, in no set
    order: one more round trip after the eviction makes the commit return only once that pass
    is over (for near models only; others pay nothing)."""
    transport = FenceCounting(any_real_redis)
    SQLModelCache.configure(transport=transport)
    seed(engine)
    with Session(engine) as session:
        session.add(Hero(id=1, name="h"))
        session.commit()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "changed"
        session.commit()
    assert transport.fences == []  # not a near model
    with CachedSession(engine) as session:
        note = session.get(Note, 1)
        assert note is not None
        note.title = "changed"
        session.commit()
    assert len(transport.fences) == 1 and SQLModelCache.cache_key(Note, 1) in transport.fences[0]
    SQLModelCache.evict(Note, 1)
    assert len(transport.fences) == 2


def test_an_open_breaker_drops_the_near_cache(engine: sa.Engine, stats: CacheStats) -> None:
    """While the breaker is open nothing of Redis's is trusted, its invalidations included:
    every near entry goes, and reads come from the database until Redis answers again."""
    seed(engine, Note(id=1, title="first", tags={}), Note(id=2, title="second", tags={}))
    with redis_server() as server:
        client = redis.Redis(port=server.port)
        SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=0.1, failure_threshold=1, cooldown=30))
        warm(engine, stats)
        server.process.send_signal(signal.SIGSTOP)
        try:
            assert title(engine, 2) == "second"  # its lookup times out: the breaker opens
        finally:
            server.process.send_signal(signal.SIGCONT)
        assert SQLModelCache.stats().breaker_state == "open"
        with Session(engine) as session:  # changed with no eviction at all: only the database knows
            note = session.get(Note, 1)
            assert note is not None
            note.title = "behind the cache's back"
            session.commit()
        near_hits = stats.near_hits
        assert title(engine) == "behind the cache's back"
        assert stats.near_hits == near_hits
        client.close()


def test_a_transaction_reads_its_own_writes_past_a_near_entry(
    engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    """A bulk UPDATE of this session's open transaction changes the row behind the near entry:
    the session's own get() reads it from the database, and the entry serves nobody after
    the commit."""
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    seed(engine)
    warm(engine, stats)
    near_hits = stats.near_hits
    with CachedSession(engine) as session:
        session.execute(sa.update(Note).where(Note.id == 1).values(title="own write"))  # type: ignore[arg-type]
        note = session.get(Note, 1)
        assert note is not None and note.title == "own write"
        assert stats.near_hits == near_hits
        session.commit()
    assert title(engine) == "own write"
