"""Fixtures: real servers started on loopback ports, an in-process fake for fast unit tests.

With ``CI`` set, a server that cannot be started fails the test run instead of skipping.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import fakeredis
import hypothesis
import pytest
import redis
import redis.cluster
import sqlalchemy as sa
from sqlmodel import SQLModel

from sqlmodel_cache import CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .servers import (
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    ServerUnavailable,
    postgres_server,
    redis_cluster,
    redis_server,
)

# CI explores the same examples on every run (a red run is a real regression, never a new
# random draw) and does not time examples on a loaded machine; local runs keep exploring.
hypothesis.settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis.settings.load_profile("ci")


def _unavailable(error: Exception) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and a required server is unavailable: {error}", pytrace=False)
    pytest.skip(str(error))


@pytest.fixture(autouse=True)
def _reset_cache() -> Iterator[None]:
    """Every test starts unconfigured with zeroed counters, as the migration guide advises."""
    yield
    SQLModelCache.reset(drop_pending_evictions=True)


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisServer]:
    try:
        with redis_server() as server:
            yield server
    except ServerUnavailable as error:
        _unavailable(error)


@pytest.fixture(scope="session")
def postgres_proc() -> Iterator[PostgresServer]:
    try:
        with postgres_server() as server:
            yield server
    except ServerUnavailable as error:
        _unavailable(error)


@pytest.fixture
def real_redis(redis_proc: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_proc.url, socket_timeout=2)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def redis_cluster_proc() -> Iterator[RedisClusterServer]:
    try:
        with redis_cluster() as cluster:
            yield cluster
    except ServerUnavailable as error:
        _unavailable(error)


class TestClusterClient(redis.cluster.RedisCluster):
    """A cluster client whose KEYS looks at every master, as tests expect of one server."""

    def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
        found = super().keys(pattern, target_nodes=self.PRIMARIES, **kwargs)
        if isinstance(found, dict):
            return [key for keys in found.values() for key in keys]
        return found


@pytest.fixture
def real_cluster(redis_cluster_proc: RedisClusterServer) -> Iterator[redis.cluster.RedisCluster]:
    host, port = redis_cluster_proc.startup
    client = TestClusterClient(host=host, port=port, socket_timeout=2)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(params=["redis-server", "redis-cluster"])
def any_real_redis(request: pytest.FixtureRequest) -> Any:
    """The real single server and the real three-master cluster in turn."""
    return request.getfixturevalue("real_redis" if request.param == "redis-server" else "real_cluster")


@pytest.fixture
def fake_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(version=(7, 0))


def _create_tables(engine: sa.Engine) -> None:
    SQLModel.metadata.drop_all(engine)
    SQLModel.metadata.create_all(engine)


@pytest.fixture
def sqlite_engine(tmp_path: Any) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    _create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def _postgres_engine(postgres_proc: PostgresServer) -> Iterator[sa.Engine]:
    engine = sa.create_engine(postgres_proc.url("psycopg"))
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_engine(_postgres_engine: sa.Engine) -> sa.Engine:
    _create_tables(_postgres_engine)
    # Pooled connections keep prepared statements that name the dropped enum types.
    _postgres_engine.dispose()
    return _postgres_engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest) -> sa.Engine:
    """Each database backend in turn: SQLite in a file, and the real PostgreSQL."""
    name = "sqlite_engine" if request.param == "sqlite" else "postgres_engine"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(params=["returning", "pre-select"])
def dml_engine(request: pytest.FixtureRequest, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """The backend with RETURNING, and the same backend made to select matched keys first."""
    if request.param == "pre-select":
        monkeypatch.setattr(engine.dialect, "update_returning", False)
        monkeypatch.setattr(engine.dialect, "delete_returning", False)
    return engine


@pytest.fixture(params=["fakeredis", "redis-server", "redis-cluster"])
def any_redis(request: pytest.FixtureRequest) -> redis.Redis:
    """The in-process fake, the real server and the real cluster in turn."""
    name = {"fakeredis": "fake_redis", "redis-server": "real_redis", "redis-cluster": "real_cluster"}[request.param]
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def cache(real_redis: redis.Redis) -> redis.Redis:
    """The library configured against the real redis-server; yields the raw client."""
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis), default_ttl=60)
    return real_redis


@pytest.fixture
def fake_cache(fake_redis: fakeredis.FakeRedis) -> fakeredis.FakeRedis:
    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis), default_ttl=60)
    return fake_redis


class LiveStats:
    """`SQLModelCache.stats()` read afresh at every attribute: the counters as they are now."""

    def __getattr__(self, name: str) -> Any:
        return getattr(SQLModelCache.stats(), name)

    def copy(self) -> CacheStats:
        return SQLModelCache.stats()

    def __eq__(self, other: object) -> bool:
        return SQLModelCache.stats() == other

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def stats() -> Any:
    return LiveStats()


class SQLCounter:
    """Counts the SQL statements an engine runs (a test-only listener on one engine)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    @property
    def selects(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith("SELECT")]

    def reset(self) -> None:
        self.statements.clear()


@pytest.fixture
def sql_counter(engine: sa.Engine) -> Iterator[SQLCounter]:
    counter = SQLCounter(engine)
    sa.event.listen(engine, "before_cursor_execute", counter)
    yield counter
    sa.event.remove(engine, "before_cursor_execute", counter)


@pytest.fixture(params=["sqlite", "postgresql"])
def async_database_url(request: pytest.FixtureRequest) -> str:
    """Each async backend in turn: aiosqlite on a file, and asyncpg on the real PostgreSQL."""
    if request.param == "sqlite":
        sync_engine: sa.Engine = request.getfixturevalue("sqlite_engine")
        return f"sqlite+aiosqlite:///{sync_engine.url.database}"
    request.getfixturevalue("postgres_engine")  # creates the tables
    server: PostgresServer = request.getfixturevalue("postgres_proc")
    return server.url("asyncpg")


@pytest.fixture
async def async_engine(async_database_url: str) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(async_database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def async_real_redis(redis_proc: RedisServer) -> Any:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_proc.url, socket_timeout=2)
    await client.flushall()
    yield client
    await client.aclose()


@pytest.fixture(params=["fakeredis", "redis-server", "redis-cluster"])
def async_redis_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "fakeredis":
        return None
    if request.param == "redis-cluster":
        cluster: RedisClusterServer = request.getfixturevalue("redis_cluster_proc")
        host, port = cluster.startup
        return f"redis+cluster://{host}:{port}"
    server: RedisServer = request.getfixturevalue("redis_proc")
    return server.url


@pytest.fixture
async def async_redis(async_redis_url: str | None) -> Any:
    """The asyncio clients: in-process fake, real server and real cluster in turn, configured."""
    import redis.asyncio
    import redis.asyncio.cluster

    from sqlmodel_cache.transport import RedisAsyncTransport

    client: Any
    if async_redis_url is None:
        client = fakeredis.FakeAsyncRedis(version=(7, 0))
    elif async_redis_url.startswith("redis+cluster://"):
        host, port = async_redis_url.removeprefix("redis+cluster://").split(":")

        class TestAsyncClusterClient(redis.asyncio.cluster.RedisCluster):
            async def keys(self, pattern: Any = "*", **kwargs: Any) -> Any:
                found = await super().keys(pattern, target_nodes=self.PRIMARIES, **kwargs)
                if isinstance(found, dict):
                    return [key for keys in found.values() for key in keys]
                return found

        client = TestAsyncClusterClient(host=host, port=int(port), socket_timeout=2)
        await client.flushall()
    else:
        client = redis.asyncio.Redis.from_url(async_redis_url, socket_timeout=2)
        await client.flushall()
    SQLModelCache.configure(transport=RedisAsyncTransport(client), default_ttl=60)
    yield client
    await client.aclose()


@pytest.fixture
async def async_cache(async_real_redis: Any) -> Any:
    """The library configured with the asyncio transport on the real redis-server."""
    from sqlmodel_cache.transport import RedisAsyncTransport

    SQLModelCache.configure(transport=RedisAsyncTransport(async_real_redis), default_ttl=60)
    return async_real_redis
