"""How an application tests its own code with the cache: an in-process fake Redis, a fresh
configuration per test, the counters, and the cache switched off."""

from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from sqlalchemy import Engine
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)

    id: int | None = Field(default=None, primary_key=True)
    name: str


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'test.db'}")
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add(Hero(id=1, name="Deadpond"))
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def cache() -> Iterator[fakeredis.FakeRedis]:
    """A fresh fake Redis and configuration per test; reset() zeroes the counters too."""
    client = fakeredis.FakeRedis()
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    yield client
    SQLModelCache.reset(drop_pending_evictions=True)


def test_second_read_is_a_hit(engine: Engine) -> None:
    for _ in range(2):
        with CachedSession(engine) as session:
            assert session.get(Hero, 1) is not None
    stats = SQLModelCache.stats()
    assert (stats.misses, stats.hits) == (1, 1)


def test_rename_is_read_back(engine: Engine, cache: fakeredis.FakeRedis) -> None:
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "Dive Wilson"
        session.commit()
    assert not cache.exists(SQLModelCache.cache_key(Hero, 1))  # evicted by the commit
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "Dive Wilson"


def test_with_the_cache_off(engine: Engine) -> None:
    SQLModelCache.reset()
    SQLModelCache.configure(transport=RedisSyncTransport(fakeredis.FakeRedis()), enabled=False)
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is not None  # straight to the database
    assert SQLModelCache.stats().hits == SQLModelCache.stats().misses == 0
