"""A shared, locked-down Redis: the library works under the least-privilege ACL user that
README.rst gives (keys ``~<key_prefix>:*`` only, no admin, KEYS or FLUSH commands), and over
TLS with AUTH.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from redis.exceptions import NoPermissionError
from sqlalchemy import update
from sqlmodel import Session

from sqlmodel_cache import AsyncCachedSession, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache._runtime import KeptEvictions
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

from .conftest import _unavailable
from .models import Hero, Note
from .servers import RedisServer, ServerUnavailable, TlsRedis, redis_server, tls_redis

README = Path(__file__).resolve().parent.parent / "README.rst"
PASSWORD = "a-test-password"


def readme_acl_line(prefix: str) -> list[str]:
    """The ACL line README.rst gives, for ``prefix`` and this test's password, as arguments."""
    lines = [line.strip() for line in README.read_text().splitlines() if line.strip().startswith("ACL SETUSER")]
    assert len(lines) == 1, "README.rst gives exactly one ACL line"
    line = lines[0].replace("~sqlmodelcache:*", f"~{prefix}:*").replace(">change-this-password", f">{PASSWORD}")
    return shlex.split(line)[1:]  # without "ACL": the client sends ("ACL", "SETUSER", ...)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def restricted_client(server: RedisServer, prefix: str, **kwargs: Any) -> redis.Redis:
    with redis.Redis(port=server.port) as admin:
        admin.execute_command("ACL", *readme_acl_line(prefix))
        admin.set("the-application:own-key", b"private")
    return redis.Redis(port=server.port, username="sqlmodelcache", password=PASSWORD, **kwargs)


def workload(engine: sa.Engine) -> None:
    """Fills, hits, get_many, evictions by flush and by bulk statement, explicit eviction."""
    with Session(engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, 6)])
        session.commit()
    for _ in range(2):
        with CachedSession(engine) as session:
            assert session.get(Hero, 1) is not None
            assert session.get(Hero, 404) is None
            assert len([h for h in session.get_many(Hero, [2, 3, 4, 999]) if h]) == 3
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "renamed"
        session.execute(update(Hero).where(Hero.id == 2).values(name="bulk"))
        session.commit()
    SQLModelCache.evict(Hero, 3)
    with CachedSession(engine) as session:
        assert [h.name for h in session.get_many(Hero, [1, 2, 3]) if h] == ["renamed", "bulk", "h3"]


@pytest.mark.parametrize("prefix", ["sqlmodelcache", "app:cache"])
def test_the_readme_acl_user_is_enough(
    sqlite_engine: sa.Engine, server: RedisServer, stats: CacheStats, prefix: str
) -> None:
    client = restricted_client(server, prefix)
    with pytest.raises(NoPermissionError):  # the user really is restricted to the prefix
        client.get("the-application:own-key")
    SQLModelCache.configure(transport=RedisSyncTransport(client), key_prefix=prefix)
    workload(sqlite_engine)
    assert stats.redis_errors == 0 and stats.hits > 0 and stats.fills > 0 and stats.invalidations > 0
    with redis.Redis(port=server.port) as admin:
        assert all(
            key.startswith(f"{prefix}:".encode()) for key in admin.keys("*") if key != b"the-application:own-key"
        )
    client.close()


def test_the_recovery_purge_runs_under_the_acl_user(
    sqlite_engine: sa.Engine, server: RedisServer, stats: CacheStats, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the kept-eviction limit the library SCANs and UNLINKs its own prefix: allowed, and
    it leaves the application's keys alone."""
    monkeypatch.setattr(KeptEvictions, "limit", 1)
    client = restricted_client(server, "app:cache")
    transport = RedisSyncTransport(client, failure_threshold=1000)
    SQLModelCache.configure(transport=transport, key_prefix="app:cache")
    workload(sqlite_engine)
    with redis.Redis(port=server.port) as admin:
        admin.set("app:data", b"the application's")
        admin.execute_command("ACL", "SETUSER", "sqlmodelcache", "off")  # evictions now fail
        admin.execute_command("CLIENT", "KILL", "USER", "sqlmodelcache")
        with CachedSession(sqlite_engine) as session:
            for pk in (4, 5):
                hero = session.get(Hero, pk)
                assert hero is not None
                hero.name = "while refused"
            session.commit()
        assert SQLModelCache.stats().purge_pending
        admin.execute_command("ACL", "SETUSER", "sqlmodelcache", "on")
        with CachedSession(sqlite_engine) as session:
            assert session.get(Hero, 4).name == "while refused"  # type: ignore[union-attr]
        assert not SQLModelCache.stats().purge_pending
        assert admin.get("app:data") == b"the application's"
        assert admin.get("the-application:own-key") == b"private"
    client.close()


async def test_the_readme_acl_user_is_enough_for_asyncio(
    async_engine: Any, server: RedisServer, stats: CacheStats
) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    restricted_client(server, "sqlmodelcache").close()
    client = redis.asyncio.Redis(port=server.port, username="sqlmodelcache", password=PASSWORD)
    SQLModelCache.configure(transport=RedisAsyncTransport(client))
    async with AsyncSession(async_engine) as session:
        session.add_all([Hero(id=i, name=f"h{i}") for i in range(1, 4)])
        await session.commit()
    for _ in range(2):
        async with AsyncCachedSession(async_engine) as session:
            assert len([h for h in await session.get_many(Hero, [1, 2, 3, 4]) if h]) == 3
            hero = await session.get(Hero, 1)
            assert hero is not None
            hero.name = hero.name + "!"
            await session.commit()
    assert stats.redis_errors == 0 and stats.hits > 0 and stats.invalidations == 2
    await client.aclose()


@pytest.fixture
def tls_server() -> Iterator[TlsRedis]:
    try:
        with tls_redis() as server:
            yield server
    except ServerUnavailable as error:
        _unavailable(error)


def test_tls_with_auth(sqlite_engine: sa.Engine, tls_server: TlsRedis, stats: CacheStats) -> None:
    with pytest.raises(redis.ConnectionError):  # no plain-text port, and no way in without TLS
        redis.Redis(port=tls_server.port, password=tls_server.password, socket_timeout=1).ping()
    client = redis.Redis.from_url(tls_server.url, ssl_ca_certs=str(tls_server.ca_path))
    SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=1.0))
    workload(sqlite_engine)
    assert stats.redis_errors == 0 and stats.hits > 0
    client.close()


async def test_tls_with_auth_for_asyncio(async_engine: Any, tls_server: TlsRedis, stats: CacheStats) -> None:
    from sqlmodel.ext.asyncio.session import AsyncSession

    client = redis.asyncio.Redis.from_url(tls_server.url, ssl_ca_certs=str(tls_server.ca_path))
    SQLModelCache.configure(transport=RedisAsyncTransport(client, timeout=1.0))
    async with AsyncSession(async_engine) as session:
        session.add(Hero(id=1, name="h1"))
        await session.commit()
    for _ in range(2):
        async with AsyncCachedSession(async_engine) as session:
            assert (await session.get(Hero, 1)).name == "h1"  # type: ignore[union-attr]
    assert stats.redis_errors == 0 and stats.hits == 1
    await client.aclose()


def _near_reads(engine: sa.Engine, new_title: str, client: Any) -> None:
    """Near hits come, and a change by "another process" is seen at once."""
    with Session(engine) as session:
        session.add(Note(id=1, title="first"))
        session.commit()
    deadline = time.monotonic() + 5
    while SQLModelCache.stats().near_hits == 0:
        with CachedSession(engine) as session:
            assert session.get(Note, 1).title == "first"  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "never served from the near cache"
    with Session(engine) as session:
        note = session.get(Note, 1)
        assert note is not None
        note.title = new_title
        session.commit()
    client.delete(SQLModelCache.cache_key(Note, 1))
    with CachedSession(engine) as session:
        assert session.get(Note, 1).title == new_title  # type: ignore[union-attr]


@pytest.mark.parametrize("prefix", ["sqlmodelcache", "app:cache"])
def test_the_near_cache_under_the_readme_acl_user(
    sqlite_engine: sa.Engine, server: RedisServer, stats: CacheStats, prefix: str
) -> None:
    client = restricted_client(server, prefix)
    SQLModelCache.configure(transport=RedisSyncTransport(client), key_prefix=prefix)
    _near_reads(sqlite_engine, "changed", client)
    assert stats.redis_errors == 0
    client.close()


def test_the_near_cache_over_tls(sqlite_engine: sa.Engine, tls_server: TlsRedis, stats: CacheStats) -> None:
    client = redis.Redis.from_url(tls_server.url, ssl_ca_certs=str(tls_server.ca_path))
    SQLModelCache.configure(transport=RedisSyncTransport(client, timeout=1.0))
    _near_reads(sqlite_engine, "changed", client)
    assert stats.redis_errors == 0
    client.close()
