"""Every code sample of the documentation (``docs_src``) runs, as printed.

Samples are discovered, so a new one cannot go untested: a script runs on SQLite and an
in-process fake Redis, and again against the real PostgreSQL and redis-server of the
fixtures; a FastAPI app is driven over HTTP the same two ways; a pytest module (the
"testing your app" page) runs under pytest; a transport builder (the deploying page) is
called and its transport serves a hit from the server kind it names.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import redis.cluster
import sqlalchemy as sa
from sqlmodel import Session

from sqlmodel_cache import CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

from .conftest import _unavailable
from .models import Hero
from .servers import (
    PostgresServer,
    RedisClusterServer,
    RedisServer,
    SentinelDeployment,
    ServerUnavailable,
    TlsRedis,
    sentinel_deployment,
    tls_redis,
)

ROOT = Path(__file__).resolve().parent.parent
DOCS_SRC = ROOT / "docs_src"
RUNNER = Path(__file__).resolve().parent / "docs_src_runner.py"

# What each script prints when it works (a script with no entry must still exit cleanly).
EXPECTED_OUTPUT: dict[str, list[str]] = {
    "tutorial/plain.py": ["name='Deadpond'", "after commit: age 31", "hits=1 misses=2 fills=2"],
    "what_is_cached/options.py": ["after uncached reads: 0 fills", "ttl <= 60: True", "hits=1 misses=1 fills=1"],
    "guarantees/outside_writes.py": ["after bulk update: 30", "raw SQL, not evicted: 48", "after evict(): 49"],
    "failures/fail_open.py": ["served from the database: 8 reads", "breaker=open trips=1", "redis_errors >= 5: True"],
    "hot_paths/negative.py": ["first: None", "second: None", "after insert: Found at last", "negative_hits: 1"],
    "hot_paths/get_by.py": ["old email: None", "new email: ada id 1", "key: email:ada%40example.org"],
    "hot_paths/get_many.py": [
        "first: ['Rusty-Man', 'Deadpond', None, 'Spider-Boy']",
        "second: ['Rusty-Man', 'Deadpond', 'Spider-Boy']",
        "hits=3 misses=4 fills=3",
    ],
    "hot_paths/near.py": ["read 5 times: France", "after commit: République française"],
    "hot_paths/single_flight.py": ["readers served: 16 of 16"],
    "migrating/after.py": ["hero: Deadpond hits: 1"],
}


def round_trip(transport: RedisSyncTransport, engine: sa.Engine) -> None:
    """A fill, then a hit through ``transport``: the builder's client reaches its server.

    A few reads are allowed for the hit: on a loaded machine a new connection's handshake
    (TLS, a Sentinel's answer) may outlast the transport's bound, and that read is a miss.
    """
    client: Any = transport.client
    if isinstance(client, redis.cluster.RedisCluster):  # shared by the tests: Hero 1 may be cached there
        client.flushall(target_nodes=redis.cluster.RedisCluster.PRIMARIES)
    else:
        client.flushall()
    SQLModelCache.configure(transport=transport)
    with Session(engine) as session:
        session.add(Hero(id=1, name="Deadpond"))
        session.commit()
    for _ in range(10):
        with CachedSession(engine) as session:
            hero = session.get(Hero, 1)
            assert hero is not None and hero.name == "Deadpond"
        if SQLModelCache.stats().hits:
            break
    stats = SQLModelCache.stats()
    assert stats.fills >= 1 and stats.hits >= 1, stats


def check_sentinel(module: dict[str, Any], request: pytest.FixtureRequest) -> None:
    build, build_async = module["sentinel_transport"], module["async_sentinel_transport"]
    assert callable(build) and callable(build_async)
    assert isinstance(build_async(), RedisAsyncTransport)  # the documented addresses: no I/O yet

    def check(deployment: SentinelDeployment) -> None:
        round_trip(build(deployment.sentinels, deployment.name), request.getfixturevalue("sqlite_engine"))

    try:
        with sentinel_deployment() as deployment:
            check(deployment)
    except ServerUnavailable as error:
        _unavailable(error)


def check_cluster(module: dict[str, Any], request: pytest.FixtureRequest) -> None:
    build, build_async = module["cluster_transport"], module["async_cluster_transport"]
    assert callable(build) and callable(build_async)
    cluster: RedisClusterServer = request.getfixturevalue("redis_cluster_proc")
    assert isinstance(build_async(*cluster.startup), RedisAsyncTransport)
    round_trip(build(*cluster.startup), request.getfixturevalue("sqlite_engine"))


def check_tls(module: dict[str, Any], request: pytest.FixtureRequest) -> None:
    build = module["tls_transport"]
    assert callable(build)

    def check(server: TlsRedis) -> None:
        round_trip(build(server.url, str(server.ca_path)), request.getfixturevalue("sqlite_engine"))

    try:
        with tls_redis() as server:
            check(server)
    except ServerUnavailable as error:
        _unavailable(error)


# Samples that build a transport for a deployment: each is called against that deployment.
BUILDERS: dict[str, Callable[[dict[str, Any], pytest.FixtureRequest], None]] = {
    "deploying/sentinel.py": check_sentinel,
    "deploying/cluster.py": check_cluster,
    "deploying/tls.py": check_tls,
}


def sample_name(path: Path) -> str:
    return path.relative_to(DOCS_SRC).as_posix()


# Pages whose samples a test module of their own runs (it names each sample's file).
RUN_BY_OWN_MODULE = {"metrics": ROOT / "tests" / "test_docs_src_metrics.py"}


def kind_of(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    owner = RUN_BY_OWN_MODULE.get(path.parent.name)
    if owner is not None and f'"{path.name}"' in owner.read_text(encoding="utf-8"):
        return "own module"
    if sample_name(path) in BUILDERS:
        return "builder"
    if path.name.startswith("test_"):
        return "pytest"
    if re.search(r"^app = FastAPI\(", text, re.MULTILINE):
        return "http"
    if 'if __name__ == "__main__":' in text:
        return "script"
    return "unknown"


# Every sample, docs_src/metrics/ included when it is there.
SAMPLES = sorted(path for path in DOCS_SRC.rglob("*.py") if path.name != "__init__.py")
RUNS = [
    pytest.param(path, backend, id=f"{sample_name(path)}-{backend}")
    for path in SAMPLES
    if kind_of(path) != "own module"
    for backend in (("fake", "servers") if kind_of(path) in ("script", "http") else ("once",))
]


def test_every_sample_is_run_by_some_test() -> None:
    assert len(SAMPLES) >= 15, SAMPLES
    unknown = [sample_name(path) for path in SAMPLES if kind_of(path) == "unknown"]
    assert not unknown, f"no test knows how to run {unknown}: give them a __main__ block, an app or a builder check"
    stale = set(EXPECTED_OUTPUT) - {sample_name(path) for path in SAMPLES}
    assert not stale, f"expected output for samples that do not exist: {stale}"


def test_every_sample_is_shown_in_a_page() -> None:
    pages = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "docs").rglob("*.md"))
    included = set(re.findall(r'--8<-- "docs_src/([^"]+)"', pages))
    missing = {sample_name(path) for path in SAMPLES} - included
    assert not missing, f"samples no page includes: {sorted(missing)}"


def fresh_database(server: PostgresServer, name: str) -> str:
    """An empty database for one sample, so each sample's tables start from nothing."""
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user=server.user, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def run(mode: str, path: Path, cwd: Path, env: dict[str, str], *extra: str) -> str:
    result = subprocess.run(
        [sys.executable, str(RUNNER), mode, str(path), *extra],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**env, "PYTHONWARNINGS": "error", "PYTHONPATH": str(ROOT)},
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"{sample_name(path)} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


@pytest.mark.parametrize(("path", "backend"), RUNS)
def test_sample(path: Path, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    name, kind = sample_name(path), kind_of(path)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ASYNC_DATABASE_URL", "REDIS_URL")}
    if kind == "builder":
        BUILDERS[name](runpy.run_path(str(path)), request)
        return
    if kind == "pytest":
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**env, "PYTHONPATH": str(ROOT)},
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r"\b\d+ passed\b", result.stdout) and "skipped" not in result.stdout, result.stdout
        return
    extra: tuple[str, ...] = ()
    if backend == "fake":
        extra = ("--fake-redis",)
    else:
        redis_server: RedisServer = request.getfixturevalue("redis_proc")
        postgres: PostgresServer = request.getfixturevalue("postgres_proc")
        with redis.Redis.from_url(redis_server.url) as client:
            client.flushall()
        database = fresh_database(postgres, "docs_" + re.sub(r"\W", "_", name.removesuffix(".py")))
        base = postgres.url("psycopg").rsplit("/", 1)[0]
        env["DATABASE_URL"] = f"{base}/{database}"
        env["ASYNC_DATABASE_URL"] = f"{base.replace('+psycopg', '+asyncpg')}/{database}"
        env["REDIS_URL"] = redis_server.url
    out = run("http" if kind == "http" else "script", path, tmp_path, env, *extra)
    for line in EXPECTED_OUTPUT.get(name, []):
        assert line in out, f"{name} did not print {line!r}:\n{out}"
    if kind == "http":
        assert "hits=" in out
