"""Worker processes for the multi-process stress tests (importable, so spawn can run them).

Writers bump random rows' versions and acknowledge each version once ``commit()`` has
returned; readers read the acknowledged version first, then ``get()`` the row: an older
version is a stale read. A failure of an operation is counted, never hidden: the library
must raise nothing whatever Redis does.
"""

from __future__ import annotations

import random
import time
import traceback
from typing import Any

import redis
import redis.sentinel
import sqlalchemy as sa

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .models import Versioned


def redis_client(redis_url: str) -> redis.Redis:
    """A client for ``redis://...``, or for ``sentinel://host:port/service`` (its master)."""
    if redis_url.startswith("sentinel://"):
        address, service = redis_url.removeprefix("sentinel://").split("/")
        host, port = address.split(":")
        return redis.sentinel.Sentinel([(host, int(port))], socket_timeout=0.5).master_for(service, socket_timeout=2)
    return redis.Redis.from_url(redis_url, socket_timeout=2)


def _setup(database_url: str, redis_url: str, ttl: int, near: bool) -> sa.Engine:
    if near:  # before the model's first use, in this fresh process
        Versioned.__cache_config__ = CacheConfig(near=True)  # type: ignore[attr-defined]
    SQLModelCache.configure(transport=RedisSyncTransport(redis_client(redis_url)), default_ttl=ttl)
    return sa.create_engine(database_url, pool_size=2)


def writer(
    database_url: str, redis_url: str, ttl: int, near: bool, rows: int, seconds: float, acked: Any, seed: int
) -> dict[str, Any]:
    """Bump random rows' versions; after each commit returns, acknowledge the version."""
    engine = _setup(database_url, redis_url, ttl, near)
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    writes, failures = 0, []
    while time.monotonic() < deadline:
        pk = rng.randrange(rows)
        try:
            with CachedSession(engine) as session:
                row = session.get(Versioned, pk, with_for_update=True)
                assert row is not None
                row.version += 1
                version = row.version
                session.commit()
        except Exception:
            failures.append(traceback.format_exc(limit=3))
            continue
        with acked.get_lock():
            acked[pk] = max(acked[pk], version)
        writes += 1
    engine.dispose()
    return {"writes": writes, "exceptions": failures}


def reader(
    database_url: str, redis_url: str, ttl: int, near: bool, rows: int, seconds: float, acked: Any, seed: int
) -> dict[str, Any]:
    """Read the acknowledged version first, then get(): anything older is a violation."""
    engine = _setup(database_url, redis_url, ttl, near)
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    reads = 0
    violations: list[tuple[int, int, int, str]] = []  # key, version read, version acknowledged, from where
    failures: list[str] = []
    latencies: list[float] = []
    while time.monotonic() < deadline:
        pk = rng.randrange(rows)
        floor = acked[pk]
        start = time.perf_counter()
        counted = SQLModelCache.stats()
        try:
            with CachedSession(engine) as session:
                row = session.get(Versioned, pk)
                assert row is not None
                if row.version < floor:
                    violations.append((pk, row.version, floor, _source(counted, SQLModelCache.stats())))
        except Exception:
            failures.append(traceback.format_exc(limit=3))
            continue
        latencies.append(time.perf_counter() - start)
        reads += 1
    stats = SQLModelCache.stats()
    engine.dispose()
    return {
        "reads": reads,
        "violations": violations,
        "exceptions": failures,
        "hits": stats.hits,
        "near_hits": stats.near_hits,
        "misses": stats.misses,
        "latencies": latencies,
    }


def _source(before: Any, after: Any) -> str:
    """Where a read's row came from, by the counters it moved (one thread per reader process)."""
    if after.near_hits > before.near_hits:
        return "near cache"
    if after.hits > before.hits:
        return "redis"
    return "database"


def run(role: str, results: Any, *args: Any) -> None:
    """Process entry point: run ``role`` and report its result (or its failure) on ``results``."""
    try:
        results.put((role, {"writer": writer, "reader": reader}[role](*args)))
    except BaseException as exc:
        results.put((role, {"error": repr(exc)}))


def orchestrate(
    database_url: str,
    redis_url: str,
    ttl: int,
    rows: int,
    seconds: float,
    writers: int,
    readers: int,
    near: bool = False,
) -> dict[str, Any]:
    """Run ``writers`` and ``readers`` processes for ``seconds`` over ``rows`` seeded rows (the
    table must hold them, version 0), with the model's near cache on if ``near``; their
    reports summed: reads, commits, violations, exceptions, hits, near hits, misses, and the
    p99 of get()."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    acked = context.Array("q", rows)
    args = (database_url, redis_url, ttl, near, rows, seconds, acked)
    results = context.Queue()
    roles = ["writer"] * writers + ["reader"] * readers
    processes = [context.Process(target=run, args=(role, results, *args, seed)) for seed, role in enumerate(roles)]
    for process in processes:
        process.start()
    reports = [results.get(timeout=seconds + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    crashed = [report["error"] for _, report in reports if "error" in report]
    assert crashed == [], crashed
    written = [report for role, report in reports if role == "writer"]
    read = [report for role, report in reports if role == "reader"]
    latencies = sorted(latency for r in read for latency in r["latencies"])
    return {
        "commits": sum(w["writes"] for w in written),
        "reads": sum(r["reads"] for r in read),
        "hits": sum(r["hits"] for r in read),
        "near_hits": sum(r["near_hits"] for r in read),
        "misses": sum(r["misses"] for r in read),
        "violations": [v for r in read for v in r["violations"]],
        "exceptions": [e for report in (*written, *read) for e in report["exceptions"]],
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan"),
    }
