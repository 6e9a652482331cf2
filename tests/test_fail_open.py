"""Fail-open: Redis down, returning garbage, or restarted never breaks a get() or a commit(),
and never makes the cache serve a row that a commit changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlmodel import Session

from sqlmodel_cache import CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .conftest import SQLCounter
from .models import Hero, Team
from .servers import RedisServer, free_port, redis_server


def add(engine: sa.Engine, *rows: Any) -> None:
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()


def db_name(engine: sa.Engine, pk: int) -> str | None:
    with Session(engine) as session:
        hero = session.get(Hero, pk)
        return None if hero is None else hero.name


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sqlmodel_cache" and r.levelno == logging.WARNING]


# How long a test waits for the cache to come back by itself after Redis does.
RECOVERY_S = 15.0


def unreachable_client(**options: Any) -> redis.Redis:
    """A client for a loopback port nothing listens on."""
    return redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2, **options)


# --- (a) Redis unreachable ---------------------------------------------------------------------


@pytest.fixture
def unreachable() -> Iterator[redis.Redis]:
    client = unreachable_client()
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    yield client
    client.close()


@pytest.fixture
def unreachable_fast() -> Iterator[redis.Redis]:
    """The same, without the client's own retries, so a test can afford many failing calls."""
    client = unreachable_client(retry=Retry(NoBackoff(), 0))
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    yield client
    client.close()


def test_unreachable_redis_get_returns_the_row_and_warns_once(
    engine: sa.Engine, unreachable: redis.Redis, stats: CacheStats, caplog: pytest.LogCaptureFixture
) -> None:
    add(engine, Hero(id=1, name="from the database"))
    caplog.set_level(logging.DEBUG, logger="sqlmodel_cache")

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "from the database"
    failures = warnings_of(caplog)
    assert len(failures) == 1, [r.getMessage() for r in failures]
    assert "Redis" in failures[0].getMessage()
    assert stats.redis_errors == 1 and stats.misses == 1 and stats.hits == 0 and stats.fills == 0


def test_unreachable_redis_commit_succeeds(
    engine: sa.Engine, unreachable_fast: redis.Redis, stats: CacheStats, caplog: pytest.LogCaptureFixture
) -> None:
    add(engine, Hero(id=1, name="before"), Hero(id=2, name="doomed"))
    caplog.set_level(logging.DEBUG, logger="sqlmodel_cache")

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "committed while Redis was down"
        session.delete(session.get(Hero, 2))
        session.add(Hero(id=3, name="inserted while Redis was down"))
        session.commit()
    assert db_name(engine, 1) == "committed while Redis was down"
    assert db_name(engine, 2) is None
    assert db_name(engine, 3) == "inserted while Redis was down"
    assert stats.invalidations_failed == 1
    messages = [r.getMessage() for r in warnings_of(caplog)]
    assert any("eviction" in m for m in messages), messages

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "committed while Redis was down"
        assert session.get(Hero, 2) is None
        other = session.get(Hero, 3)
        assert other is not None and other.name == "inserted while Redis was down"
        assert session.get(Hero, 4) is None
    assert stats.hits == 0


def test_warnings_are_rate_limited_per_operation(
    sqlite_engine: sa.Engine, unreachable_fast: redis.Redis, stats: CacheStats, caplog: pytest.LogCaptureFixture
) -> None:
    add(sqlite_engine, Hero(id=1, name="a"), Hero(id=2, name="b"))
    caplog.set_level(logging.DEBUG, logger="sqlmodel_cache")
    for _ in range(5):
        with CachedSession(sqlite_engine) as session:
            assert session.get(Hero, 1).name == "a"  # type: ignore[union-attr]
            assert session.get(Hero, 2).name == "b"  # type: ignore[union-attr]
    assert stats.redis_errors + stats.breaker_skips == 10  # failed calls, then calls the breaker spared
    lookup_warnings = [r for r in warnings_of(caplog) if r.getMessage().startswith("Redis lookup")]
    assert len(lookup_warnings) == 1
    assert len(warnings_of(caplog)) <= 2  # at most one more, if Redis is given up on for a while
    # The repeats are still logged, below WARNING.
    repeats = [r for r in caplog.records if r.name == "sqlmodel_cache" and r.levelno == logging.DEBUG]
    assert len(repeats) >= 9


def test_unreachable_redis_costs_a_bounded_wait(sqlite_engine: sa.Engine, unreachable: redis.Redis) -> None:
    """Each call waits at most a bounded time: a refused connection must not cost seconds."""
    add(sqlite_engine, Hero(id=1, name="a"))
    with CachedSession(sqlite_engine) as session:
        started = time.monotonic()
        hero = session.get(Hero, 1)
        elapsed = time.monotonic() - started
    assert hero is not None and hero.name == "a"
    assert elapsed < 1.0, f"a get() with Redis unreachable took {elapsed:.2f} s"


# --- (b) garbage at the real key ---------------------------------------------------------------


def _with_other_fingerprint(entry: bytes) -> bytes:
    values = msgpack.unpackb(entry, raw=False)
    fingerprint = values[0]
    assert isinstance(fingerprint, bytes) and fingerprint
    values[0] = bytes(b ^ 0xFF for b in fingerprint)
    values[values.index("one")] = "stale"
    return msgpack.packb(values, use_bin_type=True)  # type: ignore[no-any-return]


def _with_extra_column(entry: bytes) -> bytes:
    values = msgpack.unpackb(entry, raw=False)
    values[values.index("one")] = "stale"
    return msgpack.packb([*values, "extra"], use_bin_type=True)  # type: ignore[no-any-return]


def _with_bad_extension(entry: bytes) -> bytes:
    values = msgpack.unpackb(entry, raw=False)
    values[values.index("one")] = msgpack.ExtType(5, b"not a datetime")
    return msgpack.packb(values, use_bin_type=True)  # type: ignore[no-any-return]


BAD_VALUES = {
    "garbage": lambda e: b"definitely not msgpack",
    "invalid msgpack byte": lambda e: b"\xc1\xc1\xc1",
    "truncated by one byte": lambda e: e["hero1"][:-1],
    "truncated to half": lambda e: e["hero1"][: len(e["hero1"]) // 2],
    "entry of another pk": lambda e: e["hero2"],
    "entry of another model": lambda e: e["team1"],
    "wrong fingerprint": lambda e: _with_other_fingerprint(e["hero1"]),
    "extra column": lambda e: _with_extra_column(e["hero1"]),
    "not a list": lambda e: msgpack.packb({"id": 1, "name": "stale"}),
    "empty list": lambda e: msgpack.packb([]),
    "unknown extension type": lambda e: msgpack.packb([msgpack.ExtType(99, b"stale")]),
    "undecodable extension": lambda e: _with_bad_extension(e["hero1"]),
}


@pytest.mark.parametrize("kind", list(BAD_VALUES))
def test_bad_entry_at_the_key_is_a_miss(
    engine: sa.Engine, cache: redis.Redis, stats: CacheStats, sql_counter: SQLCounter, kind: str
) -> None:
    add(engine, Team(id=1, name="team"))
    add(engine, Hero(id=1, name="one", secret_name="s1"), Hero(id=2, name="two", secret_name="s2"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
        session.get(Hero, 2)
        session.get(Team, 1)
    (hero1_key,) = cache.keys("sqlmodelcache:hero:*:1")
    (hero2_key,) = cache.keys("sqlmodelcache:hero:*:2")
    (team1_key,) = cache.keys("sqlmodelcache:team:*:1")
    entries = {"hero1": cache.get(hero1_key), "hero2": cache.get(hero2_key), "team1": cache.get(team1_key)}
    assert all(entries.values())

    bad = BAD_VALUES[kind](entries)
    assert bad != entries["hero1"]
    cache.set(hero1_key, bad, px=60_000)
    before = stats.copy()
    sql_counter.reset()

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        assert (hero.id, hero.name, hero.secret_name) == (1, "one", "s1")
    assert len(sql_counter.selects) == 1  # read from the database
    assert stats.corrupt_entries == before.corrupt_entries + 1
    assert stats.hits == before.hits
    assert stats.misses == before.misses + 1


def test_key_of_the_wrong_redis_type_is_a_miss(
    engine: sa.Engine, cache: redis.Redis, stats: CacheStats, caplog: pytest.LogCaptureFixture
) -> None:
    add(engine, Hero(id=1, name="one"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    (key,) = cache.keys("sqlmodelcache:hero:*:1")
    cache.delete(key)
    cache.hset(key, "not", "a string")

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "one"
        hero.name = "changed"
        session.commit()  # the eviction removes the foreign value
    assert stats.redis_errors >= 1
    assert len(warnings_of(caplog)) >= 1
    assert cache.exists(key) == 0
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "changed"  # type: ignore[union-attr]
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "changed"  # type: ignore[union-attr]
    assert stats.hits == 1


# --- (c) redis-server killed and restarted -----------------------------------------------------


@pytest.fixture
def private_redis(redis_proc: RedisServer) -> Iterator[RedisServer]:
    """A server of this test's own, so killing it leaves the shared one alone."""
    with redis_server() as server:
        yield server


def test_redis_killed_mid_sequence(engine: sa.Engine, private_redis: RedisServer, stats: CacheStats) -> None:
    client = redis.Redis.from_url(
        private_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1)
    )
    inspector = redis.Redis.from_url(private_redis.url, socket_timeout=2)
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    try:
        add(engine, Hero(id=1, name="before"), Hero(id=2, name="doomed"), Hero(id=3, name="untouched"))
        for _ in range(2):
            with CachedSession(engine) as session:
                for pk in (1, 2, 3):
                    assert session.get(Hero, pk) is not None
        assert stats.fills == 3 and stats.hits == 3
        (key1,) = inspector.keys("sqlmodelcache:hero:*:1")
        (key2,) = inspector.keys("sqlmodelcache:hero:*:2")
        stale1, stale2 = inspector.get(key1), inspector.get(key2)
        assert stale1 and b"before" in stale1 and stale2 and b"doomed" in stale2

        private_redis.kill()

        # Reads and writes while Redis is down: the database answers, nothing raises.
        with CachedSession(engine) as session:
            assert session.get(Hero, 3).name == "untouched"  # type: ignore[union-attr]
            hero = session.get(Hero, 1)
            assert hero is not None and hero.name == "before"
            hero.name = "after"
            session.delete(session.get(Hero, 2))
            session.add(Hero(id=4, name="new"))
            session.commit()
        assert stats.invalidations_failed == 1
        with CachedSession(engine) as session:
            assert session.get(Hero, 1).name == "after"  # type: ignore[union-attr]
            assert session.get(Hero, 2) is None
            assert session.get(Hero, 4).name == "new"  # type: ignore[union-attr]
        assert db_name(engine, 1) == "after" and db_name(engine, 2) is None

        private_redis.restart()
        # The restarted server is empty: put the stale entries back, byte for byte, as if
        # they had survived. Only the retried eviction can keep them from being served.
        inspector.set(key1, stale1, px=600_000)
        inspector.set(key2, stale2, px=600_000)

        # Whether the first retry goes through at once or after a cool-down, no read ever
        # serves the stale entries, and the eviction is sent by itself.
        deadline = time.monotonic() + RECOVERY_S
        while True:
            with CachedSession(engine) as session:
                hero = session.get(Hero, 1)
                assert hero is not None and hero.name == "after"
                assert session.get(Hero, 2) is None
            if inspector.get(key1) != stale1:
                break
            assert time.monotonic() < deadline, "the eviction that failed was never sent"
            time.sleep(0.05)
        assert inspector.get(key2) != stale2

        # The cache is in use again, without reconfiguring.
        deadline = time.monotonic() + RECOVERY_S
        hits = stats.hits
        while stats.hits == hits:
            with CachedSession(engine) as session:
                assert session.get(Hero, 1).name == "after"  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the cache was not used again after Redis came back"
            time.sleep(0.05)
        hits = stats.hits
        for _ in range(2):
            with CachedSession(engine) as session:
                assert session.get(Hero, 3).name == "untouched"  # type: ignore[union-attr]
                assert session.get(Hero, 4).name == "new"  # type: ignore[union-attr]
        assert stats.hits == hits + 2
    finally:
        client.close()
        inspector.close()
