"""The fault matrix: the multi-process stress workload (writers acknowledge committed
versions, readers must never see an older one) while a chaos driver does one kind of fault
over and over: crash and restart from the RDB snapshot, pause the server past the bound,
fail over through Sentinel, kill the client connections.

Per scenario: reads, commits, violations (0), exceptions (0) and the p99 of ``get()``. It
lasts ``FAULT_SECONDS`` per scenario (30 s with ``CI`` set, 10 s otherwise).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from . import chaos, stress
from .models import Versioned
from .servers import PostgresServer, persistent_redis, redis_server, sentinel_deployment

ROWS = 1000  # many rows, so that entries a crash brings back outlive the breakers cool-down
NEAR_ROWS = 50  # few, so that near readers read rows again between their changes
WRITERS = 2
READERS = 3
# A get() waits at most the bound (100 ms) per Redis call plus the database's own time; the
# rest is a loaded 2-CPU machine running six processes and the servers.
P99_LIMIT_MS = 1000.0


def seconds() -> float:
    return float(os.environ.get("FAULT_SECONDS") or (30.0 if os.environ.get("CI") else 10.0))


@contextmanager
def crash_and_restart(rng: random.Random) -> Iterator[tuple[str, chaos.Scenario]]:
    with persistent_redis() as server:
        yield server.url, chaos.kill9_restart(server, rng)


@contextmanager
def pause(rng: random.Random) -> Iterator[tuple[str, chaos.Scenario]]:
    with redis_server() as server:
        yield server.url, chaos.pause(server.process, rng)


@contextmanager
def sentinel_failover(rng: random.Random) -> Iterator[tuple[str, chaos.Scenario]]:
    with sentinel_deployment() as deployment:
        host, port = deployment.sentinels[0]
        yield f"sentinel://{host}:{port}/{deployment.name}", chaos.sentinel_failover(deployment, rng)


@contextmanager
def client_kill(rng: random.Random) -> Iterator[tuple[str, chaos.Scenario]]:
    with redis_server() as server:
        yield server.url, chaos.client_kill(server, rng)


SCENARIOS: dict[str, Callable[[random.Random], AbstractContextManager[tuple[str, chaos.Scenario]]]] = {
    "kill9-restart-from-rdb": crash_and_restart,
    "sigstop-past-the-bound": pause,
    "sentinel-failover": sentinel_failover,
    "client-kill": client_kill,
}


# The near cache's readers under the faults it must notice: a server paused past the bound
# (its invalidations held back), and its tracking connections killed with the others.
CASES = [(scenario, False) for scenario in SCENARIOS] + [
    ("sigstop-past-the-bound", True),
    ("client-kill", True),
]


@pytest.mark.parametrize(("scenario", "near"), CASES, ids=[f"{s}{'-near' if n else ''}" for s, n in CASES])
def test_no_stale_read_and_no_exception_under_faults(
    postgres_engine: sa.Engine,
    postgres_proc: PostgresServer,
    scenario: str,
    near: bool,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = NEAR_ROWS if near else ROWS
    with Session(postgres_engine) as session:
        session.add_all([Versioned(id=i, version=0) for i in range(rows)])
        session.commit()
    duration = seconds()
    with SCENARIOS[scenario](random.Random(scenario)) as (redis_url, fault), chaos.chaos(fault) as events:
        report: dict[str, Any] = stress.orchestrate(
            postgres_proc.url("psycopg"), redis_url, 3600, rows, duration, WRITERS, READERS, near=near
        )
    lookups = report["hits"] + report["misses"]
    summary = (
        f"fault matrix {scenario}{' (near)' if near else ''} {duration:.0f}s: {len(events)} chaos events, "
        f"{report['commits']} commits, {report['reads']} reads, hit ratio {report['hits'] / max(lookups, 1):.1%}, "
        f"near hits {report['near_hits']}, "
        f"violations {len(report['violations'])}, exceptions {len(report['exceptions'])}, "
        f"p99 get {report['p99_ms']:.1f} ms"
    )
    with capsys.disabled():
        print(f"\n{summary}")
    # Each failure names the run it failed in: a CI log may keep only the summary line.
    assert events, f"the chaos driver did nothing; {summary}"
    assert report["commits"] > 0 and report["reads"] > 0, summary
    assert report["violations"] == [], f"{summary}; {report['violations'][:5]}"
    assert report["exceptions"] == [], f"{summary}; {report['exceptions'][:2]}"
    assert report["p99_ms"] < P99_LIMIT_MS, summary
    if near:
        assert report["near_hits"] > 0, f"the near cache was never used; {summary}"
