"""Bounded waits, the circuit breaker and kept evictions, against real misbehaving peers."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache._runtime import KeptEvictions
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport, TransportError

from .faults import black_hole, slow_proxy
from .models import Hero
from .servers import RedisServer, free_port, redis_server

BOUND = 0.1  # the transports' default timeout
SLACK = 0.25  # scheduling noise on a loaded 2-core machine; the bound is what is asserted


def pending_evictions() -> bool:
    """Are evictions kept for a retry (keys, or a whole-prefix purge)?"""
    stats = SQLModelCache.stats()
    return stats.evictions_pending > 0 or stats.purge_pending


def seed(engine: sa.Engine, n: int = 3) -> None:
    with Session(engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, n + 1)])
        session.commit()


def timed_get(engine: sa.Engine, pk: int) -> tuple[Any, float]:
    start = time.perf_counter()
    with CachedSession(engine) as session:
        hero = session.get(Hero, pk)
        name = hero.name if hero is not None else None
    return name, time.perf_counter() - start


@pytest.fixture
def database_time(sqlite_engine: sa.Engine) -> float:
    """What a plain get costs here, so that the Redis wait can be isolated from it."""
    seed(sqlite_engine)
    start = time.perf_counter()
    for _ in range(20):
        with Session(sqlite_engine) as session:
            session.get(Hero, 1)
    return (time.perf_counter() - start) / 20


def test_black_holed_redis_costs_at_most_the_bound(
    sqlite_engine: sa.Engine, database_time: float, stats: CacheStats
) -> None:
    with black_hole() as port:
        client = redis.Redis(host="127.0.0.1", port=port)  # no timeouts of its own at all
        SQLModelCache.configure(transport=RedisSyncTransport(client, failure_threshold=1000))
        for pk in (1, 2, 3, 1, 2):
            name, elapsed = timed_get(sqlite_engine, pk)
            assert name == f"h{pk}"
            assert elapsed < database_time + BOUND + SLACK, elapsed
        with CachedSession(sqlite_engine) as session:
            hero = session.get(Hero, 1)
            assert hero is not None
            hero.name = "changed"
            session.commit()  # the eviction times out too, and is kept
        assert stats.redis_errors >= 6
        assert pending_evictions()


def test_slow_redis_beyond_the_bound_is_a_miss(
    sqlite_engine: sa.Engine, redis_proc: RedisServer, real_redis: redis.Redis, database_time: float
) -> None:
    with slow_proxy(redis_proc.port, delay=0.5) as port:
        SQLModelCache.configure(
            transport=RedisSyncTransport(redis.Redis(host="127.0.0.1", port=port), failure_threshold=1000)
        )
        for pk in (1, 2, 3):
            name, elapsed = timed_get(sqlite_engine, pk)
            assert name == f"h{pk}"
            assert elapsed < database_time + BOUND + SLACK


def test_slow_redis_within_the_bound_still_hits(
    sqlite_engine: sa.Engine, redis_proc: RedisServer, real_redis: redis.Redis, stats: CacheStats
) -> None:
    seed(sqlite_engine)
    with slow_proxy(redis_proc.port, delay=0.002) as port:
        client = redis.Redis(host="127.0.0.1", port=port)
        SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=0.5))
        assert timed_get(sqlite_engine, 1)[0] == "h1"
        assert timed_get(sqlite_engine, 1)[0] == "h1"
    assert stats.hits == 1


def test_breaker_opens_then_closes_by_itself(sqlite_engine: sa.Engine, stats: CacheStats) -> None:
    seed(sqlite_engine)
    port = free_port()
    transport = RedisSyncTransport(redis.Redis(host="127.0.0.1", port=port), failure_threshold=3, cooldown=0.5)
    SQLModelCache.configure(transport=transport)
    for _ in range(3):
        assert timed_get(sqlite_engine, 1)[0] == "h1"
    assert SQLModelCache.stats().breaker_state == "open"
    errors = stats.redis_errors
    for _ in range(10):
        assert timed_get(sqlite_engine, 1)[0] == "h1"
    assert stats.redis_errors == errors, "Redis was called while the circuit was open"
    assert stats.breaker_skips >= 10

    with redis_server(port):  # on the port the transport already points at
        time.sleep(0.6)  # the cool-down passes; the next lookup is the probe
        assert timed_get(sqlite_engine, 1)[0] == "h1"
        assert SQLModelCache.stats().breaker_state == "closed"
        assert timed_get(sqlite_engine, 1)[0] == "h1"
        assert stats.hits == 1, "the cache is used again without a restart"
    assert SQLModelCache.stats().breaker_trips == 1


def test_failed_eviction_is_kept_and_replayed_before_the_next_read(sqlite_engine: sa.Engine, stats: CacheStats) -> None:
    seed(sqlite_engine)
    with redis_server() as server:
        client = redis.Redis.from_url(server.url)
        SQLModelCache.configure(transport=RedisSyncTransport(client, failure_threshold=1000))
        timed_get(sqlite_engine, 1)  # fill
        stale = {key: client.get(key) for key in client.keys("*")}
        server.kill()
        with CachedSession(sqlite_engine) as session:
            hero = session.get(Hero, 1)
            assert hero is not None
            hero.name = "committed while Redis was down"
            session.commit()  # no exception reaches the caller
        assert stats.invalidations_failed == 1 and pending_evictions()
        assert timed_get(sqlite_engine, 1)[0] == "committed while Redis was down"
        server.restart()
        for key, value in stale.items():  # as if the server had kept the old entry
            client.set(key, value)  # type: ignore[arg-type]
        assert timed_get(sqlite_engine, 1)[0] == "committed while Redis was down"
        assert not pending_evictions()
        assert timed_get(sqlite_engine, 1)[0] == "committed while Redis was down"
        assert stats.hits >= 1, "the cache is used again without a restart"


def wait_until_evicted(client: redis.Redis, key: str) -> None:
    """The server, resumed, runs the eviction it was sent: the key goes within 2 s."""
    deadline = time.monotonic() + 2
    while client.exists(key):
        assert time.monotonic() < deadline, "the eviction never reached the paused server"
        time.sleep(0.01)


def test_an_eviction_sent_to_a_paused_server_after_a_timeout_still_runs_there() -> None:
    """A call that timed out keeps its connection, so the next command (an eviction) joins it in
    the paused server's queue and runs when the server comes back: on a new connection it
    would wait for a handshake the paused server never answers, and never be sent."""
    import signal

    with redis_server() as server:
        client = redis.Redis(port=server.port)
        client.set("victim", b"stale")
        transport = RedisSyncTransport(redis.Redis(port=server.port), failure_threshold=1000)
        transport.peek("other")  # connected
        server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(TransportError):
                transport.peek("other")  # times out: its reply is owed
            with pytest.raises(TransportError):
                transport.delete_many(["victim"])  # times out too, but was sent
        finally:
            server.process.send_signal(signal.SIGCONT)
        wait_until_evicted(client, "victim")  # with no further call of the transport's
        assert transport.peek("victim")[0] is None  # the owed replies read, the link in step
        client.close()


def test_an_eviction_on_a_connection_made_while_the_server_stalls_still_runs_there() -> None:
    """A process's first eviction (a writer that never read through the cache) connects while
    the server is paused: the kernel accepts the connection, and the eviction must be
    written behind the handshake at once, not after answers the paused server never gives;
    else the server comes back without it and other processes read the old row."""
    import signal

    with redis_server() as server:
        client = redis.Redis(port=server.port)
        client.set("victim", b"stale")
        transport = RedisSyncTransport(redis.Redis(port=server.port), failure_threshold=1000)
        server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(TransportError):
                transport.delete_many(["victim"])  # the first call of this transport
        finally:
            server.process.send_signal(signal.SIGCONT)
        wait_until_evicted(client, "victim")  # with no further call of the transport's
        # The server lifetime asked on connecting is learnt from the owed answer.
        reply, lifetime = transport.peek("victim")
        assert reply is None and lifetime is not None
        client.close()


@pytest.mark.parametrize("prefix", ["sqlmodelcache", "app:cache", "we[ir]d*pre?fix"])
def test_too_many_kept_evictions_bypass_the_cache_until_purged(
    sqlite_engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, prefix: str
) -> None:
    seed(sqlite_engine, 6)
    monkeypatch.setattr(KeptEvictions, "limit", 3)
    # The application's own keys beside ours: what a looser prefix test or an unescaped
    # pattern would also match.
    neighbours = [b"unrelated:key", prefix.encode() + b"x:other", b"wid-preZfix:key"]
    if ":" in prefix:
        neighbours.append(prefix.split(":", maxsplit=1)[0].encode() + b":data")
    with redis_server() as server:
        client = redis.Redis.from_url(server.url)
        SQLModelCache.configure(transport=RedisSyncTransport(client, failure_threshold=1000), key_prefix=prefix)
        for pk in range(1, 7):
            timed_get(sqlite_engine, pk)
        stale = {key: client.get(key) for key in client.keys("*")}
        server.kill()
        with CachedSession(sqlite_engine) as session:
            for pk in range(1, 7):
                hero = session.get(Hero, pk)
                assert hero is not None
                hero.name = f"new{pk}"
            session.commit()
        assert any("could not be sent" in r.message for r in caplog.records if r.levelname == "ERROR")
        server.restart()
        for key, value in stale.items():
            client.set(key, value)  # type: ignore[arg-type]
        for neighbour in neighbours:  # a shared Redis: the application's own keys
            client.set(neighbour, b"kept")
        for pk in range(1, 7):
            assert timed_get(sqlite_engine, pk)[0] == f"new{pk}"
        assert not pending_evictions()
        for neighbour in neighbours:
            assert client.get(neighbour) == b"kept", f"the purge touched {neighbour!r}, outside {prefix}:"


async def test_async_black_hole_and_breaker(async_engine: AsyncEngine, stats: CacheStats) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in (1, 2)])
        await session.commit()
    with black_hole() as port:
        client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        SQLModelCache.configure(transport=RedisAsyncTransport(client, failure_threshold=2, cooldown=30))
        for pk in (1, 2, 1, 2):
            start = time.perf_counter()
            async with AsyncCachedSession(async_engine) as session:
                hero = await session.get(Hero, pk)
                assert hero is not None and hero.name == f"h{pk}"
            assert time.perf_counter() - start < BOUND + SLACK + 0.2
        assert SQLModelCache.stats().breaker_state == "open"
        assert stats.breaker_skips >= 2
        await client.aclose()


async def test_async_eviction_failure_is_kept_and_replayed(async_engine: AsyncEngine) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(async_engine) as session:
        session.add(Hero(id=1, name="old"))
        await session.commit()
    with redis_server() as server:
        client = redis.asyncio.Redis.from_url(server.url)
        SQLModelCache.configure(transport=RedisAsyncTransport(client, failure_threshold=1000))
        async with AsyncCachedSession(async_engine) as session:
            await session.get(Hero, 1)
        stale = {key: await client.get(key) for key in await client.keys("*")}
        server.kill()
        async with AsyncCachedSession(async_engine) as session:
            hero = await session.get(Hero, 1)
            assert hero is not None
            hero.name = "new"
            await session.commit()
        assert pending_evictions()
        server.restart()
        for key, value in stale.items():
            await client.set(key, value)
        async with AsyncCachedSession(async_engine) as session:
            assert (await session.get(Hero, 1)).name == "new"  # type: ignore[union-attr]
        assert not pending_evictions()
        await client.aclose()


async def _seed_async(engine: AsyncEngine) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    async with AsyncSession(engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in (1, 2)])
        await session.commit()


async def _timed_async_get(engine: AsyncEngine, pk: int) -> tuple[Any, float]:
    start = time.perf_counter()
    async with AsyncCachedSession(engine) as session:
        hero = await session.get(Hero, pk)
        name = hero.name if hero is not None else None
    return name, time.perf_counter() - start


async def test_async_nothing_listening(async_engine: AsyncEngine, stats: CacheStats) -> None:
    await _seed_async(async_engine)
    client = redis.asyncio.Redis(host="127.0.0.1", port=free_port())
    SQLModelCache.configure(transport=RedisAsyncTransport(client, failure_threshold=1000))
    for pk in (1, 2, 1):
        name, elapsed = await _timed_async_get(async_engine, pk)
        assert name == f"h{pk}"
        assert elapsed < BOUND + SLACK + 0.2
    async with AsyncCachedSession(async_engine) as session:
        hero = await session.get(Hero, 1)
        assert hero is not None
        hero.name = "x"
        await session.commit()  # nothing raises; the eviction is kept
    assert stats.redis_errors >= 4 and pending_evictions()
    await client.aclose()


async def test_async_slow_redis_beyond_and_within_the_bound(
    async_engine: AsyncEngine, redis_proc: RedisServer, real_redis: redis.Redis, stats: CacheStats
) -> None:
    await _seed_async(async_engine)
    with slow_proxy(redis_proc.port, delay=0.5) as port:
        client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        SQLModelCache.configure(transport=RedisAsyncTransport(client, failure_threshold=1000))
        for pk in (1, 2):
            name, elapsed = await _timed_async_get(async_engine, pk)
            assert name == f"h{pk}"
            assert elapsed < BOUND + SLACK + 0.2
        await client.aclose()
    SQLModelCache.reset()
    real_redis.flushall()
    with slow_proxy(redis_proc.port, delay=0.002) as port:
        client = redis.asyncio.Redis(host="127.0.0.1", port=port)
        SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=0.5))
        assert (await _timed_async_get(async_engine, 1))[0] == "h1"
        assert (await _timed_async_get(async_engine, 1))[0] == "h1"
        assert SQLModelCache.stats().hits == 1
        await client.aclose()


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xfe not msgpack", b"\x93\x01", b"\x92\xc4\x04abcd\x01", b"\x91\xa3str", b"\xc1", b""],
    ids=["bytes", "truncated", "foreign-fingerprint", "wrong-shape", "reserved-byte", "empty"],
)
async def test_async_garbage_at_the_key_is_a_miss(async_engine: AsyncEngine, async_cache: Any, garbage: bytes) -> None:
    await _seed_async(async_engine)
    await async_cache.set(SQLModelCache.cache_key(Hero, 1), garbage)
    name, _ = await _timed_async_get(async_engine, 1)
    assert name == "h1"
    stats = SQLModelCache.stats()
    assert stats.corrupt_entries == 1
    assert stats.hits == 0


def test_fill_survives_a_flushed_script_cache(
    sqlite_engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    """A restarted or SCRIPT FLUSHed server has forgotten the fill script: it is loaded again."""
    seed(sqlite_engine, 2)
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    assert timed_get(sqlite_engine, 1)[0] == "h1"
    real_redis.script_flush()
    assert timed_get(sqlite_engine, 2)[0] == "h2"
    assert stats.fills == 2 and stats.redis_errors == 0


def test_each_thread_uses_its_own_connection(
    sqlite_engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats
) -> None:
    import threading

    seed(sqlite_engine, 3)
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(200):
                for pk in (1, 2, 3):
                    assert timed_get(sqlite_engine, pk)[0] == f"h{pk}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert stats.redis_errors == 0 and stats.corrupt_entries == 0
    assert stats.hits >= 8 * 600 * 0.9  # the counters are not locked: an increment may be lost


async def test_async_fill_survives_a_flushed_script_cache(
    async_engine: AsyncEngine, async_real_redis: Any, stats: CacheStats
) -> None:
    await _seed_async(async_engine)
    SQLModelCache.configure(transport=RedisAsyncTransport(async_real_redis))
    assert (await _timed_async_get(async_engine, 1))[0] == "h1"
    await async_real_redis.script_flush()
    assert (await _timed_async_get(async_engine, 2))[0] == "h2"
    assert stats.fills == 2 and stats.redis_errors == 0


@pytest.mark.parametrize("flavour", ["sync", "asyncio", "asyncio-sentinel"])
async def test_nothing_listening_fails_at_once_with_its_cause(
    sqlite_engine: sa.Engine, async_engine: AsyncEngine, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The application's client may retry with backoff; the transport does not: a refused
    connection is a miss at once, and the WARNING names the refusal, not a bare timeout."""
    import redis.asyncio.sentinel

    port = free_port()
    transport: Any
    if flavour == "sync":
        seed(sqlite_engine)
        transport = RedisSyncTransport(redis.Redis(port=port), failure_threshold=1000)
    elif flavour == "asyncio":
        await _seed_async(async_engine)
        transport = RedisAsyncTransport(redis.asyncio.Redis(port=port), failure_threshold=1000)
    else:
        await _seed_async(async_engine)
        sentinel = redis.asyncio.sentinel.Sentinel([("127.0.0.1", port)], socket_timeout=0.05)
        transport = RedisAsyncTransport(sentinel.master_for("mymaster"), failure_threshold=1000)
    SQLModelCache.configure(transport=transport)
    with caplog.at_level(logging.WARNING, logger="sqlmodel_cache"):
        for pk in (1, 2, 1):
            if flavour == "sync":
                name, elapsed = timed_get(sqlite_engine, pk)
            else:
                name, elapsed = await _timed_async_get(async_engine, pk)
            assert name == f"h{pk}"
            assert elapsed < BOUND / 2, f"{elapsed:.3f} s: a retry loop ate the bound"
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    expected = "no sentinel names a master" if flavour == "asyncio-sentinel" else "connect"
    assert warnings and all(expected in message.lower() for message in warnings), warnings
    assert not any("timeout" in message.lower() for message in warnings), warnings


def test_after_a_failure_only_calls_begun_after_the_next_answer_vouch_for_what_redis_holds() -> None:
    """A stalled server runs what waited on all its connections when it comes back, in an order
    between them that nothing promises: a read sent before the first answer that followed the
    failure may run before another process's eviction that waited there too."""
    from sqlmodel_cache.transport._breaker import CircuitBreaker

    breaker = CircuitBreaker(failure_threshold=5, cooldown=2.0)
    before = time.monotonic()
    assert breaker.answered(before)  # nothing failed: every answer vouches
    breaker.failure()
    assert not breaker.answered(before)  # the first answer after the failure
    assert not breaker.answered(before)  # sent before that answer came
    assert breaker.answered(time.monotonic())  # sent after it


def test_a_read_answered_first_after_a_timeout_is_not_served(stats: CacheStats) -> None:
    import signal

    with redis_server() as server:
        client = redis.Redis(port=server.port)
        client.set("key", b"value")
        transport = RedisSyncTransport(redis.Redis(port=server.port), failure_threshold=1000)
        assert transport.peek("key")[1] is not None  # a lifetime vouches for it
        server.process.send_signal(signal.SIGSTOP)
        try:
            with pytest.raises(TransportError):
                transport.peek("key")
        finally:
            server.process.send_signal(signal.SIGCONT)
        value, lifetime = transport.peek("key")
        assert value == b"value" and lifetime is None  # read, but no reader may serve it
        assert transport.peek("key")[1] is not None
        client.close()


async def test_async_eviction_sent_to_a_paused_server_after_a_timeout_runs_before_other_reads(
    async_engine: AsyncEngine,
) -> None:
    """An asyncio call cut by its bound keeps its connection (out of the application's pool), so
    the commit's eviction joins the paused server's queue on it, and runs as soon as the server
    is back, before the reads another process sends then: on a new connection it would wait for
    a handshake the paused server never answers, and never be sent."""
    import signal

    await _seed_async(async_engine)
    with redis_server() as server:
        client = redis.asyncio.Redis(port=server.port)
        other_process = redis.Redis(port=server.port)
        try:
            transport = RedisAsyncTransport(client, failure_threshold=1000)
            SQLModelCache.configure(transport=transport)
            assert (await _timed_async_get(async_engine, 1))[0] == "h1"  # filled
            key = SQLModelCache.cache_key(Hero, 1)
            assert other_process.exists(key)
            server.process.send_signal(signal.SIGSTOP)
            try:
                assert (await _timed_async_get(async_engine, 2))[0] == "h2"  # timed out: from the database
                async with AsyncCachedSession(async_engine) as session:
                    hero = await session.get(Hero, 1)
                    assert hero is not None
                    hero.name = "changed"
                    await session.commit()  # its eviction times out too, and is kept
                assert pending_evictions()
                kept = [c for by_node in transport._owing.values() for _, c in by_node.values()]
                assert len(kept) == 1, "the cut exchanges' connection is kept"
                pool = client.connection_pool
                assert kept[0] not in pool._available_connections, "it owes replies: not the application's"
            finally:
                server.process.send_signal(signal.SIGCONT)
            assert not other_process.exists(key), "another process was served the stale row"
            assert await client.set("own", b"mine") and await client.get("own") == b"mine"
            assert (await _timed_async_get(async_engine, 1))[0] == "changed"
            assert not any(transport._owing.values()), "in step again: back to the pool"
            assert await client.get("own") == b"mine"
        finally:
            other_process.close()
            await client.aclose()


async def test_async_python_parser_connection_cut_by_the_bound_is_dropped(async_engine: AsyncEngine) -> None:
    """The Python parser may lose a reply half read when its read is cut: such a connection is
    closed, as before, never kept for the next exchange."""
    import signal

    from redis._parsers import _AsyncRESP2Parser

    await _seed_async(async_engine)
    with redis_server() as server:
        pool = redis.asyncio.ConnectionPool(port=server.port, parser_class=_AsyncRESP2Parser)
        client = redis.asyncio.Redis.from_pool(pool)  # closed with the client
        try:
            transport = RedisAsyncTransport(client, failure_threshold=1000)
            SQLModelCache.configure(transport=transport)
            assert (await _timed_async_get(async_engine, 1))[0] == "h1"
            server.process.send_signal(signal.SIGSTOP)
            try:
                assert (await _timed_async_get(async_engine, 1))[0] == "h1"  # timed out
            finally:
                server.process.send_signal(signal.SIGCONT)
            assert not any(transport._owing.values())
            assert all(connection._writer is None for connection in pool._available_connections)
            assert await client.set("own", b"mine") and await client.get("own") == b"mine"
            assert (await _timed_async_get(async_engine, 1))[0] == "h1"
        finally:
            await client.aclose()


async def test_async_connection_owing_too_many_replies_is_dropped(
    async_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that is not coming back would make every call read ever more owed replies
    first: past a bound the connection is closed, and the next call starts afresh."""
    import signal

    monkeypatch.setattr("sqlmodel_cache.transport._borrowed.MAX_OWED", 1)
    await _seed_async(async_engine)
    with redis_server() as server:
        client = redis.asyncio.Redis(port=server.port)
        try:
            transport = RedisAsyncTransport(client, failure_threshold=1000)
            SQLModelCache.configure(transport=transport)
            assert (await _timed_async_get(async_engine, 1))[0] == "h1"
            server.process.send_signal(signal.SIGSTOP)
            try:
                assert (await _timed_async_get(async_engine, 1))[0] == "h1"  # owes 1: kept
                assert any(transport._owing.values())
                assert (await _timed_async_get(async_engine, 2))[0] == "h2"  # owes 2: dropped
                assert not any(transport._owing.values())
            finally:
                server.process.send_signal(signal.SIGCONT)
            assert all(connection._writer is None for connection in client.connection_pool._available_connections)
            assert (await _timed_async_get(async_engine, 1))[0] == "h1"
            assert await client.set("own", b"mine") and await client.get("own") == b"mine"
        finally:
            await client.aclose()


async def test_async_server_lifetime_is_asked_again_after_its_question_was_cut() -> None:
    """A connection's server lifetime is learnt once per connection; a question cut by the
    bound is owed like any reply, and asked again by the next call on the kept connection."""
    import signal

    with redis_server() as server:
        client = redis.asyncio.Redis(port=server.port)
        try:
            await client.set("key", b"value")  # the application's connection, connected, back in its pool
            transport = RedisAsyncTransport(client, failure_threshold=1000)
            server.process.send_signal(signal.SIGSTOP)
            try:
                with pytest.raises(TransportError):
                    await transport.peek("key")  # cut while asking the lifetime
                [(_, kept)] = [entry for by_node in transport._owing.values() for entry in by_node.values()]
                assert kept._sqlmodel_cache_link.epoch is None and kept._sqlmodel_cache_link.owed == 1
            finally:
                server.process.send_signal(signal.SIGCONT)
            await transport.peek("key")  # the first answer after a failure vouches for nothing
            value, lifetime = await transport.peek("key")
            run_id = (await client.info("server"))["run_id"]
            assert value == b"value" and lifetime == bytes.fromhex(run_id[:16])
            assert not any(transport._owing.values())
        finally:
            await client.aclose()
