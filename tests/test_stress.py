"""Read-your-writes across processes under load, on the real PostgreSQL and redis-server.

Writers bump random rows' version and, once ``commit()`` has returned, acknowledge it in
shared memory. Readers read the acknowledged version first, then ``get()`` the row: a
version older than the acknowledged one would be a stale read. The run lasts about 20 s
per TTL setting in CI (``STRESS_SECONDS`` overrides).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from . import chaos, stress
from .models import Versioned
from .servers import PostgresServer, RedisServer

ROWS = 20
WRITERS = 2
READERS = 3


def seconds() -> float:
    default = 20.0 if os.environ.get("CI") else 8.0
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
    duration = seconds()
    report = stress.orchestrate(
        postgres_proc.url("psycopg"), redis_proc.url, ttl, ROWS, duration, writers=WRITERS, readers=READERS
    )
    lookups = report["hits"] + report["misses"]
    with capsys.disabled():
        print(
            f"\nstress ttl={ttl}s {duration:.0f}s: {report['commits']} commits, {report['reads']} reads, "
            f"hit ratio {report['hits'] / max(lookups, 1):.1%}, violations {len(report['violations'])}, "
            f"p99 get {report['p99_ms']:.1f} ms"
        )
    assert report["commits"] > 0 and report["reads"] > 0
    assert report["hits"] > 0, "the cache was never used"
    assert report["exceptions"] == [], report["exceptions"][:3]
    assert report["violations"] == [], report["violations"][:10]


@pytest.mark.parametrize("fault", ["none", "tracking-killed"])
def test_no_stale_near_read_across_processes(
    postgres_engine: sa.Engine,
    postgres_proc: PostgresServer,
    redis_proc: RedisServer,
    real_redis: Any,
    fault: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same with the near cache on: readers serve rows from process memory, and never one
    older than an acknowledged commit, also while their tracking connections are killed."""
    import random

    with Session(postgres_engine) as session:
        session.add_all([Versioned(id=i, version=0) for i in range(ROWS)])
        session.commit()
    duration = seconds()
    killer = chaos.kill_tracking(redis_proc, random.Random(fault)) if fault != "none" else _idle
    with chaos.chaos(killer) as events:
        report = stress.orchestrate(
            postgres_proc.url("psycopg"), redis_proc.url, 3600, ROWS, duration, WRITERS, READERS, near=True
        )
    with capsys.disabled():
        print(
            f"\nstress near ({fault}) {duration:.0f}s: {report['commits']} commits, {report['reads']} reads, "
            f"near hits {report['near_hits']}, Redis hits {report['hits']}, misses {report['misses']}, "
            f"violations {len(report['violations'])}, p99 get {report['p99_ms']:.1f} ms, {len(events)} chaos events"
        )
    assert report["commits"] > 0 and report["reads"] > 0
    assert report["near_hits"] > 0, "the near cache was never used"
    assert report["exceptions"] == [], report["exceptions"][:3]
    assert report["violations"] == [], report["violations"][:10]
    if fault != "none":
        assert any("killed" in what and not what.startswith("killed 0") for _, what in events), events


def _idle(stop: Any, log: Any) -> None:
    stop.wait()
