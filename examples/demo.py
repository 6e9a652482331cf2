"""A tour of sqlmodel-cache: misses, hits, and a write that is never served stale,
first with ``CachedSession``, then with ``AsyncCachedSession``.

Runs on SQLite and an in-process fake Redis by default; set DATABASE_URL (e.g.
``postgresql+psycopg://user@localhost/db``) and REDIS_URL (``redis://localhost:6379/0``) to
use real servers::

    python examples/demo.py

For FastAPI, see ``examples/fastapi_app.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import redis
import redis.asyncio
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel import Field, Session, SQLModel, create_engine

from sqlmodel_cache import AsyncCachedSession, CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

T = TypeVar("T")


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    secret_name: str = ""
    age: int | None = None


def redis_clients() -> tuple[redis.Redis, Any]:
    """A sync and an asyncio client of the same Redis (an in-process fake without REDIS_URL)."""
    url = os.environ.get("REDIS_URL")
    if url:
        return redis.Redis.from_url(url), redis.asyncio.Redis.from_url(url)
    import fakeredis

    # The fake answers no INFO, so the cache cannot tie entries to a server lifetime and says
    # so once; a process-local fake has no restart or failover to guard against.
    logging.getLogger("sqlmodel_cache").setLevel(logging.ERROR)
    server = fakeredis.FakeServer()
    return fakeredis.FakeRedis(server=server), fakeredis.FakeAsyncRedis(server=server)


def timed(call: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - start) * 1e6


def load(engine: Engine, pk: int) -> Hero | None:
    with CachedSession(engine) as session:
        return session.get(Hero, pk)


async def atimed(call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
    start = time.perf_counter()
    result = await call()
    return result, (time.perf_counter() - start) * 1e6


async def aload(engine: AsyncEngine, pk: int) -> Hero | None:
    async with AsyncCachedSession(engine) as session:
        return await session.get(Hero, pk)


async def async_tour(database_url: str, client: Any) -> None:
    """The same tour with AsyncCachedSession and the asyncio Redis client."""
    SQLModelCache.reset()
    SQLModelCache.configure(transport=RedisAsyncTransport(client), default_ttl=300)
    engine = create_async_engine(database_url.replace("sqlite://", "sqlite+aiosqlite://", 1))
    for pk in (1, 3):
        hero, first_us = await atimed(partial(aload, engine, pk))
        _, hit_us = await atimed(partial(aload, engine, pk))
        assert hero is not None
        print(f"async get(Hero, {pk}) {hero.name:<11} first {first_us:8.1f} µs   hit {hit_us:8.1f} µs")
    async with AsyncCachedSession(engine) as session:
        hero = await session.get(Hero, 3)
        assert hero is not None
        hero.age = 49
        await session.commit()
    after = await aload(engine, 3)
    assert after is not None and after.age == 49
    print(f"async commit:   get(Hero, 3).age == {after.age} (read-your-writes)")
    await client.aclose()
    await engine.dispose()


def main() -> None:
    scratch = tempfile.TemporaryDirectory()
    database_url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path(scratch.name) / 'demo.db'}"
    engine = create_engine(database_url)
    SQLModel.metadata.drop_all(engine, tables=[Hero.__table__])  # type: ignore[attr-defined]
    SQLModel.metadata.create_all(engine, tables=[Hero.__table__])  # type: ignore[attr-defined]
    client, async_client = redis_clients()
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
        hero, miss_us = timed(partial(load, engine, pk))
        _, hit_us = timed(partial(load, engine, pk))
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
    asyncio.run(async_tour(database_url, async_client))
    SQLModelCache.reset()
    engine.dispose()
    scratch.cleanup()


if __name__ == "__main__":
    main()
