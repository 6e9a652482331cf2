"""A tour of sqlmodel-cache: misses, hits, and a write that is never served stale.

Runs on SQLite and an in-process fake Redis by default; set DATABASE_URL (e.g.
``postgresql+psycopg://user@localhost/db``) and REDIS_URL (``redis://localhost:6379/0``) to
use real servers::

    python examples/demo.py
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

import redis
from sqlalchemy import Engine
from sqlmodel import Field, Session, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

T = TypeVar("T")


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    secret_name: str = ""
    age: int | None = None


def redis_client() -> redis.Redis:
    url = os.environ.get("REDIS_URL")
    if url:
        return redis.Redis.from_url(url)
    import fakeredis

    return fakeredis.FakeRedis()


def timed(call: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1e6


def load(engine: Engine, pk: int) -> Hero | None:
    with CachedSession(engine) as session:
        return session.get(Hero, pk)


def main() -> None:
    engine = create_engine(os.environ.get("DATABASE_URL", "sqlite://"))
    SQLModel.metadata.drop_all(engine, tables=[Hero.__table__])  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(engine, tables=[Hero.__table__])  # type: ignore[attr-defined]
    client = redis_client()
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=300)
    where = "REDIS_URL" if os.environ.get("REDIS_URL") else "in-process fake Redis"
    print(f"database: {engine.url.render_as_string(hide_password=True)}   cache: {where}")

    with Session(engine) as session:
        session.add_all(
            [
                Hero(id=1, name="Deadpond", secret_name="Dive Wilson"),
                Hero(id=2, name="Spider-Boy", secret_name="Pedro Parqueador"),
                Hero(id=3, name="Rusty-Man", secret_name="Tommy Sharp", age=48),
            ]
        )
        session.commit()

    for pk in (1, 2, 3):
        hero, miss_us = timed(lambda pk=pk: load(engine, pk))
        _, hit_us = timed(lambda pk=pk: load(engine, pk))
        assert hero is not None
        print(f"get(Hero, {pk}) {hero.name:<11} miss {miss_us:8.1f} µs   hit {hit_us:8.1f} µs")

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.age = 31
        session.commit()  # the commit evicts Hero 1 before it returns
    after = load(engine, 1)
    assert after is not None and after.age == 31
    print(f"after commit:   get(Hero, 1).age == {after.age} (read-your-writes)")

    with CachedSession(engine) as session:
        session.delete(session.get(Hero, 2))
        session.commit()
    print(f"after delete:   get(Hero, 2) is {load(engine, 2)}")

    stats = SQLModelCache.stats()
    print(
        f"counters: hits={stats.hits} misses={stats.misses} fills={stats.fills} "
        f"invalidations={stats.invalidations} redis_errors={stats.redis_errors}"
    )
    SQLModelCache.reset()
    engine.dispose()


if __name__ == "__main__":
    main()
