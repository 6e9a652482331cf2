"""The migration guide's examples, run as written (with ``CachedSession`` where it says
``Session``), against the real redis-server and every database backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import Session, select

from sqlmodel_cache import CacheConfig, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .conftest import SQLCounter
from .models import Hero, NoTTL
from .servers import RedisServer

PREFIX = b"sqlmodelcache:"


# --- the guide's test fixtures, as written (a local server instead of testcontainers) -----


@pytest.fixture(autouse=True)
def reset_cache() -> Iterator[None]:
    """Ensure every test starts with a clean cache configuration."""
    yield
    SQLModelCache.reset()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    # In CI, REDIS_URL may be set by a managed Redis service.
    # Locally, fall back to the redis-server the test fixtures start.
    if url := os.environ.get("REDIS_URL"):
        return url
    server: RedisServer = request.getfixturevalue("redis_proc")
    return server.url


@pytest.fixture
def configured_cache(redis_url: str) -> Iterator[None]:
    client = redis.Redis.from_url(redis_url)
    SQLModelCache.configure(
        transport=RedisSyncTransport(client),
        default_ttl=60,
    )
    yield
    SQLModelCache.reset()
    client.close()


# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def plain_script(redis_proc: RedisServer, real_redis: redis.Redis) -> Iterator[redis.Redis]:
    """The guide's plain-script configuration; yields a separate client for inspection."""
    client = redis.Redis.from_url(redis_proc.url)
    SQLModelCache.configure(
        transport=RedisSyncTransport(client),
        default_ttl=300,  # 5 minutes
    )
    yield real_redis
    SQLModelCache.reset()
    client.close()


def add(engine: sa.Engine, *rows: Any) -> None:
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()


def cache_keys(r: redis.Redis) -> list[bytes]:
    return sorted(r.scan_iter(match=PREFIX + b"*"))


def commands_processed(r: redis.Redis) -> int:
    """Commands the server has run, not counting this INFO call itself."""
    return int(r.info("stats")["total_commands_processed"])


class RedisCommandCounter:
    """Counts commands other clients send to the server between two calls."""

    def __init__(self, r: redis.Redis) -> None:
        self.r = r
        self.start = commands_processed(r)

    def since_start(self) -> int:
        # The INFO that took the start reading is counted by the later one.
        return commands_processed(self.r) - self.start - 1


# --- Step 2: configure at start-up (plain script) --------------------------------------------


def test_plain_script_configuration_caches_gets(
    engine: sa.Engine, plain_script: redis.Redis, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    add(engine, Hero(id=1, name="Deadpond"), NoTTL(id=1, name="no ttl of its own"))
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "Deadpond"  # type: ignore[union-attr]
        assert session.get(NoTTL, 1).name == "no ttl of its own"  # type: ignore[union-attr]
    assert stats.fills == 2

    # Hero has CacheConfig(ttl=600); NoTTL falls back to default_ttl=300.
    (hero_key,) = plain_script.keys("sqlmodelcache:hero:*")
    (nottl_key,) = plain_script.keys("sqlmodelcache:nottl:*")
    assert 590_000 < plain_script.pttl(hero_key) <= 600_000
    assert 290_000 < plain_script.pttl(nottl_key) <= 300_000

    sql_counter.reset()
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "Deadpond"  # type: ignore[union-attr]
        assert session.get(NoTTL, 1).name == "no ttl of its own"  # type: ignore[union-attr]
    assert sql_counter.statements == []
    assert stats.hits == 2


# --- Step 3: opt models in -------------------------------------------------------------------


def test_hero_is_opted_in_as_in_the_guide() -> None:
    assert Hero.__cache_config__ == CacheConfig(ttl=600)  # type: ignore[attr-defined]
    columns = Hero.__table__.columns  # type: ignore[attr-defined]
    assert columns["id"].primary_key
    assert "name" in columns


def test_opted_in_get_is_transparently_cached(
    engine: sa.Engine, plain_script: redis.Redis, sql_counter: SQLCounter
) -> None:
    """No code change beyond the session swap: the same calls, the same answers."""
    add(engine, Hero(id=1, name="Rusty-Man"))
    answers = []
    for _ in range(3):
        with CachedSession(engine) as session:
            hero = session.get(Hero, 1)
            assert hero is not None
            answers.append((hero.id, hero.name, hero.secret_name, hero.age, hero.team_id))
            assert session.get(Hero, 2) is None
    assert answers == [(1, "Rusty-Man", "", None, None)] * 3
    # One SELECT for the row, then hits; the missing row is looked up each time.
    assert len([s for s in sql_counter.selects if "hero" in s.lower()]) == 1 + 3


# --- Testing with sqlmodel-cache: the guide's fixtures ---------------------------------------


def test_configured_cache_fixture(engine: sa.Engine, configured_cache: None, redis_url: str) -> None:
    inspector = redis.Redis.from_url(redis_url)
    try:
        stale = cache_keys(inspector)
        if stale:
            inspector.delete(*stale)
        assert SQLModelCache.is_configured()
        add(engine, Hero(id=1, name="fixture"), NoTTL(id=1, name="default"))
        with CachedSession(engine) as session:
            assert session.get(Hero, 1).name == "fixture"  # type: ignore[union-attr]
            assert session.get(NoTTL, 1).name == "default"  # type: ignore[union-attr]
        (nottl_key,) = inspector.keys("sqlmodelcache:nottl:*")
        assert 50_000 < inspector.pttl(nottl_key) <= 60_000  # the fixture's default_ttl=60
        assert len(inspector.keys("sqlmodelcache:hero:*")) == 1
    finally:
        leftovers = cache_keys(inspector)
        if leftovers:
            inspector.delete(*leftovers)
        inspector.close()


GUIDE_CONFTEST = '''
import pytest
from sqlmodel_cache import SQLModelCache

@pytest.fixture(autouse=True)
def reset_cache():
    """Ensure every test starts with a clean cache configuration."""
    yield
    SQLModelCache.reset()
'''

GUIDE_TESTS = """
import os
import redis
from sqlmodel_cache import SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


def configure():
    SQLModelCache.configure(
        transport=RedisSyncTransport(redis.Redis.from_url(os.environ["REDIS_URL"])),
        default_ttl=60,
    )


def test_first():
    configure()
    assert SQLModelCache.is_configured()


def test_second():
    configure()
    assert SQLModelCache.is_configured()
"""


def _run_suite(directory: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(directory)],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_autouse_reset_fixture_lets_every_test_configure(tmp_path: Path, redis_proc: RedisServer) -> None:
    """The guide's conftest fixture, in a suite of its own: without it the second test fails
    with the error the troubleshooting section describes."""
    with_fixture = tmp_path / "with_fixture"
    without_fixture = tmp_path / "without_fixture"
    for directory in (with_fixture, without_fixture):
        directory.mkdir()
        (directory / "test_guide.py").write_text(textwrap.dedent(GUIDE_TESTS))
    (with_fixture / "conftest.py").write_text(textwrap.dedent(GUIDE_CONFTEST))

    result = _run_suite(with_fixture, redis_proc.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout

    result = _run_suite(without_fixture, redis_proc.url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "ConfigurationError: SQLModelCache is already configured" in result.stdout


# --- Selectively bypassing the cache ---------------------------------------------------------


def test_cache_false_reads_and_writes_nothing(
    engine: sa.Engine, plain_script: redis.Redis, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    add(engine, Hero(id=1, name="db"))

    # Nothing cached yet: the bypassing get writes nothing (no fill, no lease).
    counter = RedisCommandCounter(plain_script)
    sql_counter.reset()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1, execution_options={"cache": False})
        assert hero is not None and hero.name == "db"
    assert counter.since_start() == 0
    assert cache_keys(plain_script) == []
    assert len(sql_counter.selects) == 1

    # A cached entry exists and the row changed behind the cache's back: the bypassing
    # get does not read the entry (it returns the database's answer) and leaves it alone.
    counter = RedisCommandCounter(plain_script)
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    assert counter.since_start() >= 2  # the counter sees a normal get: lookup, then fill
    (key,) = cache_keys(plain_script)
    entry = plain_script.get(key)
    with Session(engine) as session:
        session.get(Hero, 1).name = "changed in the database"  # type: ignore[union-attr]
        session.commit()
    before = stats.copy()
    counter = RedisCommandCounter(plain_script)
    sql_counter.reset()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1, execution_options={"cache": False})
        assert hero is not None and hero.name == "changed in the database"
    assert counter.since_start() == 0
    assert len(sql_counter.selects) == 1
    assert stats == before
    assert cache_keys(plain_script) == [key]
    assert plain_script.get(key) == entry


def test_cache_ttl_per_call(engine: sa.Engine, plain_script: redis.Redis, sql_counter: SQLCounter) -> None:
    add(engine, Hero(id=1, name="short-lived"))
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1, execution_options={"cache_ttl": 60})
        assert hero is not None and hero.name == "short-lived"
    (key,) = cache_keys(plain_script)
    assert 55_000 < plain_script.pttl(key) <= 60_000  # not the model's 600 s

    sql_counter.reset()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1, execution_options={"cache_ttl": 60})
        assert hero is not None and hero.name == "short-lived"
    assert sql_counter.statements == []  # served from the cache


def test_guide_bypass_example_verbatim(engine: sa.Engine, plain_script: redis.Redis) -> None:
    add(engine, Hero(id=1, name="Deadpond"))
    with CachedSession(engine) as session:
        # Always goes to the database; never reads or writes the cache
        hero = session.get(Hero, 1, execution_options={"cache": False})
        assert hero is not None
        assert cache_keys(plain_script) == []

        # Caches this result for 60 seconds instead of the model's configured TTL
        session.expunge_all()  # (within one session, the identity map would answer first)
        hero = session.get(Hero, 1, execution_options={"cache_ttl": 60})
        assert hero is not None and hero.name == "Deadpond"
    (key,) = cache_keys(plain_script)
    assert 55_000 < plain_script.pttl(key) <= 60_000


# --- What's cached, what isn't -----------------------------------------------------------------


def test_queries_pass_through_without_touching_redis(
    engine: sa.Engine, plain_script: redis.Redis, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    add(engine, Hero(id=1, name="a"), Hero(id=2, name="b"))
    before = stats.copy()
    counter = RedisCommandCounter(plain_script)
    sql_counter.reset()
    with CachedSession(engine) as session:
        heroes = session.exec(select(Hero).order_by(Hero.id)).all()  # type: ignore[arg-type]
        assert [h.name for h in heroes] == ["a", "b"]
        filtered = session.exec(select(Hero).where(Hero.name == "b")).all()
        assert [h.id for h in filtered] == [2]
        # Rows the query loaded are in the identity map: get() answers from there.
        assert session.get(Hero, 1) is heroes[0]
    assert counter.since_start() == 0
    assert cache_keys(plain_script) == []
    assert stats == before
    assert len(sql_counter.selects) == 2


def test_writes_are_never_cached_and_invalidate(
    engine: sa.Engine, plain_script: redis.Redis, stats: CacheStats
) -> None:
    with CachedSession(engine) as session:
        session.add(Hero(id=1, name="inserted"))
        session.commit()
    assert cache_keys(plain_script) == []  # INSERT writes nothing to the cache

    with CachedSession(engine) as session:
        session.get(Hero, 1)
    assert len(cache_keys(plain_script)) == 1

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "updated"
        session.commit()
    assert cache_keys(plain_script) == []  # UPDATE evicted the entry
    assert stats.invalidations >= 1

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "updated"
        session.delete(hero)
        session.commit()
    assert cache_keys(plain_script) == []  # DELETE evicted the refilled entry
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is None
