"""Read-your-writes across processes under load, on the real PostgreSQL and redis-server.

Writers bump random rows' version and, once ``commit()`` has returned, acknowledge it in
shared memory. Readers read the acknowledged version first, then ``get()`` the row: a
version older than the acknowledged one would be a stale read. The run lasts about 30 s
per TTL setting in CI (``STRESS_SECONDS`` overrides).
"""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from . import stress
from .models import Versioned
from .servers import PostgresServer, RedisServer

ROWS = 20
WRITERS = 2
READERS = 3


def seconds() -> float:
    default = 30.0 if os.environ.get("CI") else 8.0
    return float(os.environ.get("STRESS_SECONDS", default))


@pytest.mark.parametrize("ttl", [5, 3600], ids=["short-ttl", "invalidation-only"])
def test_no_stale_read_across_processes(
    postgres_engine: sa.Engine,
    postgres_proc: PostgresServer,
    redis_proc: RedisServer,
    real_redis: Any,
    ttl: int,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with Session(postgres_engine) as session:
        session.add_all([Versioned(id=i, version=0) for i in range(ROWS)])
        session.commit()
    context = multiprocessing.get_context("spawn")
    acked = context.Array("q", ROWS)
    duration = seconds()
    args = (postgres_proc.url("psycopg"), redis_proc.url, ttl, ROWS, duration, acked)
    results = context.Queue()
    roles = ["writer"] * WRITERS + ["reader"] * READERS
    processes = [
        context.Process(target=stress.run, args=(role, results, *args, seed)) for seed, role in enumerate(roles)
    ]
    for process in processes:
        process.start()
    reports = [results.get(timeout=duration + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    errors = [report for _, report in reports if "error" in report]
    assert errors == []
    written = [report for role, report in reports if role == "writer"]
    read = [report for role, report in reports if role == "reader"]

    writes = sum(w["writes"] for w in written)
    reads = sum(r["reads"] for r in read)
    hits = sum(r["hits"] for r in read)
    lookups = hits + sum(r["misses"] for r in read)
    violations = [v for r in read for v in r["violations"]]
    with capsys.disabled():
        print(
            f"\nstress ttl={ttl}s {duration:.0f}s: {writes} commits, {reads} reads, "
            f"hit ratio {hits / max(lookups, 1):.1%}, violations {len(violations)}"
        )
    assert writes > 0 and reads > 0
    assert hits > 0, "the cache was never used"
    assert violations == [], violations[:10]
