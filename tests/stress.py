"""Worker processes for the multi-process stress test (importable, so spawn can run them)."""

from __future__ import annotations

import random
import time
from typing import Any

import redis
import sqlalchemy as sa

from sqlmodel_cache import CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .models import Versioned


def _setup(database_url: str, redis_url: str, ttl: int) -> sa.Engine:
    SQLModelCache.configure(
        transport=RedisSyncTransport(redis.Redis.from_url(redis_url, socket_timeout=2)), default_ttl=ttl
    )
    return sa.create_engine(database_url, pool_size=2)


def writer(
    database_url: str, redis_url: str, ttl: int, rows: int, seconds: float, acked: Any, seed: int
) -> dict[str, int]:
    """Bump random rows' versions; after each commit returns, acknowledge the version."""
    engine = _setup(database_url, redis_url, ttl)
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    writes = 0
    while time.monotonic() < deadline:
        pk = rng.randrange(rows)
        with CachedSession(engine) as session:
            row = session.get(Versioned, pk, with_for_update=True)
            assert row is not None
            row.version += 1
            version = row.version
            session.commit()
        with acked.get_lock():
            acked[pk] = max(acked[pk], version)
        writes += 1
    engine.dispose()
    return {"writes": writes}


def reader(
    database_url: str, redis_url: str, ttl: int, rows: int, seconds: float, acked: Any, seed: int
) -> dict[str, Any]:
    """Read the acknowledged version first, then get(): anything older is a violation."""
    engine = _setup(database_url, redis_url, ttl)
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    reads = 0
    violations: list[tuple[int, int, int]] = []
    while time.monotonic() < deadline:
        pk = rng.randrange(rows)
        floor = acked[pk]
        with CachedSession(engine) as session:
            row = session.get(Versioned, pk)
            assert row is not None
            if row.version < floor:
                violations.append((pk, row.version, floor))
        reads += 1
    stats = SQLModelCache.stats()
    engine.dispose()
    return {"reads": reads, "violations": violations, "hits": stats.hits, "misses": stats.misses}


def run(role: str, results: Any, *args: Any) -> None:
    """Process entry point: run ``role`` and report its result (or its failure) on ``results``."""
    try:
        results.put((role, {"writer": writer, "reader": reader}[role](*args)))
    except BaseException as exc:
        results.put((role, {"error": repr(exc)}))
