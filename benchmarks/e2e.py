"""End to end: the FastAPI example app under uvicorn, on PostgreSQL, driven over loopback by wrk.

Three variants of ``examples/fastapi_app.py`` serve ``GET /products/{id}`` over random ids
of a table of realistic rows, each in its own uvicorn process (one worker, access log off):

* ``Session``: the sync routes on a plain ``Session`` (``CACHE=0``), psycopg;
* ``CachedSession``: the same routes on ``CachedSession``, psycopg and redis-py;
* ``AsyncCachedSession``: the async routes (``ASYNC=1``), asyncpg and ``redis.asyncio``.

Every variant is warmed up first (every row read once, then a short random run), so that
the cached variants measure hits. The measured runs are interleaved: each round runs every
variant in turn, in a rotating order, and the figures are the medians over rounds. Any
response that is not 2xx, and any socket error or timeout, fails the run; so does a cached
variant that missed in Redis or answered less than half its requests from it, or a plain
one that read it at all (Redis's own ``keyspace_hits`` and ``keyspace_misses``, counted
around each run; see `check_cache_use`). Usage::

    python -m benchmarks.e2e [--rounds N] [--duration S] [--concurrency N] [--rows N] [--quick] [--json PATH]

``benchmarks/bench.py --e2e`` runs the same phase after its own, on its servers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if not __package__:
    _here = Path(__file__).resolve().parent
    sys.path[:] = [str(_here.parent), *(entry for entry in sys.path if Path(entry).resolve() != _here)]

import redis

from benchmarks.common import BenchmarkError, progress
from benchmarks.loadgen import Load, run_wrk, wrk_binary, wrk_version

if TYPE_CHECKING:
    from tests.servers import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "e2e"
APP_MODULE = "examples.fastapi_app"
# The example app's environment for each variant; the URLs are added per run.
VARIANTS: dict[str, dict[str, str]] = {
    "Session": {"CACHE": "0"},
    "CachedSession": {},
    "AsyncCachedSession": {"ASYNC": "1"},
}
DRIVERS = {"Session": "psycopg", "CachedSession": "psycopg", "AsyncCachedSession": "asyncpg"}


@dataclass(frozen=True)
class E2ESettings:
    rounds: int
    duration_s: int
    warmup_s: int
    concurrency: int
    rows: int
    quick: bool = False


def e2e_settings(
    quick: bool,
    rounds: int | None = None,
    duration: int | None = None,
    concurrency: int | None = None,
    rows: int | None = None,
) -> E2ESettings:
    """The command line's options, with their defaults applied."""
    return E2ESettings(
        rounds=rounds or (1 if quick else 8),
        duration_s=duration or (1 if quick else 3),
        warmup_s=1 if quick else 2,
        # One worker saturates its CPU from about 4 connections on. With many more, the plain
        # Session's requests can hold all of AnyIO's 40 threads while they wait for
        # SQLAlchemy's pool (5 + 10 overflow), whose connections come back in the
        # dependencies' exits, which need a thread: at 64 the server answered nothing for
        # seconds. And the more connections, the longer a loaded event loop lags, until the
        # asyncio lookups meet their 100 ms bound and go to the database.
        concurrency=concurrency or 8,
        rows=rows or (100 if quick else 1000),
        quick=quick,
    )


@dataclass
class Variant:
    """One variant's uvicorn process and what its measured runs gave."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    loads: list[Load] = field(default_factory=list)
    round_hits: list[int] = field(default_factory=list)
    cache_misses: int = 0

    @property
    def requests(self) -> int:
        return sum(load.requests for load in self.loads)

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(f"the {self.name} app's uvicorn exited with code {self.process.returncode}")

    def summary(self) -> dict[str, Any]:
        loads = self.loads
        return {
            "rps": statistics.median(load.rps for load in loads),
            "p50_ms": statistics.median(load.p50_ms for load in loads),
            "p99_ms": statistics.median(load.p99_ms for load in loads),
            "requests": self.requests,
            "errors": sum(load.errors for load in loads),
            "mean_ms": statistics.median(load.mean_ms for load in loads),
            "max_ms": max(load.max_ms for load in loads),
            "round_rps": [load.rps for load in loads],
            "round_p50_ms": [load.p50_ms for load in loads],
            "round_p99_ms": [load.p99_ms for load in loads],
            "cache_hits": sum(self.round_hits),
            "cache_misses": self.cache_misses,
            # wrk counts the answers it read; a request in flight at its end read Redis uncounted.
            "hit_ratio": min(1.0, sum(self.round_hits) / self.requests),
            "round_hit_ratio": [min(1.0, h / load.requests) for h, load in zip(self.round_hits, loads, strict=True)],
            "driver": DRIVERS[self.name],
        }


def example_model() -> Any:
    """The example's ``Product`` model, from the module the servers import (by the same name)."""
    import importlib

    return importlib.import_module(APP_MODULE).Product


def create_database(postgres: PostgresServer, rows: int) -> str:
    """A database of its own holding the example's table with ``rows`` rows; its psycopg URL."""
    import psycopg
    from sqlmodel import Session, SQLModel, create_engine

    product = example_model()
    with psycopg.connect(
        host="127.0.0.1", port=postgres.port, user=postgres.user, dbname=postgres.database, autocommit=True
    ) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    url = postgres.url("psycopg").rsplit("/", 1)[0] + f"/{DATABASE}"
    engine = create_engine(url)
    try:
        SQLModel.metadata.create_all(engine, tables=[product.__table__])
        with Session(engine) as session:
            session.add_all(
                product(id=i, name=f"Product {i:05d}", price_cents=100 + (i * 7919) % 100_000, in_stock=i % 5 != 0)
                for i in range(1, rows + 1)
            )
            session.commit()
    finally:
        engine.dispose()
    return url


def start_app(name: str, database_url: str, redis_url: str) -> Variant:
    from tests.servers import free_port

    port = free_port()
    env = {
        **os.environ,
        **VARIANTS[name],
        "DATABASE_URL": database_url.replace("+psycopg", f"+{DRIVERS[name]}"),
        "REDIS_URL": redis_url,
    }
    command = [sys.executable, "-m", "uvicorn", "--factory", f"{APP_MODULE}:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-access-log"]
    command += ["--log-level", "warning"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    return Variant(name, port, process)


def wait_serving(variant: Variant, timeout: float = 60.0) -> None:
    """Until ``GET /products/1`` answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        variant.check_alive()
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", variant.port, timeout=5)
            try:
                connection.request("GET", "/products/1")
                if connection.getresponse().status == 200:
                    return
            finally:
                connection.close()
        if time.monotonic() > deadline:
            raise BenchmarkError(f"the {variant.name} app did not answer on port {variant.port} in {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def apps(database_url: str, redis_url: str) -> Iterator[list[Variant]]:
    """Every variant's server, started together and stopped (by pid) at the end."""
    variants: list[Variant] = []
    try:
        for name in VARIANTS:
            variants.append(start_app(name, database_url, redis_url))
        for variant in variants:
            wait_serving(variant)
        yield variants
    finally:
        for variant in variants:
            stop(variant.process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def keyspace(client: redis.Redis) -> tuple[int, int]:
    """Redis's hits and misses, once they stopped moving: when wrk stops, the server still
    answers the requests it had read (their lookups belong to the run that sent them)."""
    seen: tuple[int, int] | None = None
    deadline = time.monotonic() + 10
    while True:
        stats = client.info("stats")
        now = int(stats["keyspace_hits"]), int(stats["keyspace_misses"])
        if now == seen or time.monotonic() > deadline:
            return now
        seen = now
        time.sleep(0.1)


def checked(variant: Variant, load: Load, what: str) -> Load:
    variant.check_alive()
    if load.requests == 0 or load.errors:
        raise BenchmarkError(
            f"{variant.name} {what}: {load.requests} requests, {load.not_2xx} answers not 2xx, "
            f"{load.socket_errors} socket errors or timeouts"
        )
    return load


def warm_up(variant: Variant, settings: E2ESettings) -> None:
    """Every row read once (the cached variants fill their entries), then a random run."""
    seconds = 1
    while checked(variant, run_wrk(variant.port, settings.rows, seconds, 1, True), "warm-up").requests < settings.rows:
        seconds *= 2
    checked(variant, run_wrk(variant.port, settings.rows, settings.warmup_s, settings.concurrency), "warm-up")


def measure_round(variants: list[Variant], settings: E2ESettings, client: redis.Redis, index: int) -> None:
    """One measured run of every variant, the order turned by one variant a round; the warm-ups
    and the other variants' runs leave Redis's counters alone in between."""
    order = variants[index % len(variants) :] + variants[: index % len(variants)]
    for variant in order:
        before = keyspace(client)
        load = checked(variant, run_wrk(variant.port, settings.rows, settings.duration_s, settings.concurrency), "run")
        after = keyspace(client)
        hits, misses = after[0] - before[0], after[1] - before[1]
        variant.loads.append(load)
        variant.round_hits.append(hits)
        variant.cache_misses += misses


def check_cache_use(name: str, requests: int, hits: int, misses: int) -> None:
    """A plain variant never reads Redis; a cached one answers from it, mostly, over the run.

    Mostly: a lookup that waits longer than the transport's bound (100 ms by default) is
    served from the database, and five in a row open the circuit breaker for two seconds. On
    a loaded machine an event loop that stalls that long does so; such requests count as
    served (their time is in the figures) and show as ``hit_ratio`` below 1 (a breaker open
    for two seconds of a three-second round takes most of that round). Fewer hits than half
    the requests, or any miss (every row was cached by the warm-up), means the run measured
    something else than the cache, and fails.
    """
    if name == "Session":
        wrong = hits > 0 or misses > 0
    else:
        wrong = misses > 0 or hits < requests / 2
    if wrong:
        raise BenchmarkError(
            f"{name}: {requests} requests made {hits} Redis hits and {misses} misses; "
            + ("a plain Session should not read Redis" if name == "Session" else "they should have been hits")
        )


def run_e2e(settings: E2ESettings, redis_server: RedisServer, postgres: PostgresServer) -> dict[str, Any]:
    """The phase on running servers; its figures (the ``"e2e"`` key of the report)."""
    wrk_binary()  # fail before starting anything if it is missing
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    load_before = os.getloadavg()
    progress(f"e2e: loading {settings.rows} rows")
    database_url = create_database(postgres, settings.rows)
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
        with apps(database_url, redis_server.url) as variants:
            for variant in variants:
                progress(f"e2e: warming up {variant.name}")
                warm_up(variant, settings)
            for index in range(settings.rounds):
                progress(f"e2e: round {index + 1}/{settings.rounds}")
                measure_round(variants, settings, client, index)
            for variant in variants:
                check_cache_use(variant.name, variant.requests, sum(variant.round_hits), variant.cache_misses)
            return {
                "date": date,
                "concurrency": settings.concurrency,
                "duration_s": float(settings.duration_s),
                "variants": {variant.name: variant.summary() for variant in variants},
                "rounds": settings.rounds,
                "warmup_s": settings.warmup_s,
                "rows": settings.rows,
                "quick": settings.quick,
                # Other processes' CPU shows here: the machine's 1-minute load before and after.
                "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                "cpus": os.cpu_count(),
                "endpoint": "GET /products/{id}, ids uniformly random over the rows",
                "server": server_description(),
                "load_generator": f"wrk {wrk_version()}, 1 thread, {settings.concurrency} connections, closed loop",
                "what": (
                    "examples/fastapi_app.py under uvicorn on PostgreSQL; rps, p50 and p99 are the medians over rounds "
                    "of each round's figures (wrk's latency percentiles), requests and errors their sums"
                ),
            }
    finally:
        client.close()


def server_description() -> str:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return (
        f"uvicorn {version('uvicorn')} (uvloop {version('uvloop')}, httptools {version('httptools')}), "
        f"1 worker, access log off; fastapi {version('fastapi')}"
    )


def render(e2e: dict[str, Any]) -> list[str]:
    lines = [
        f"end to end ({e2e['server']}; {e2e['load_generator']}; {e2e['rounds']} round(s) of "
        f"{e2e['duration_s']:g} s each, medians over rounds):",
        f"  {'variant':<20}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'errors':>8}{'hit ratio':>11}",
    ]
    for name, v in e2e["variants"].items():
        lines.append(
            f"  {name:<20}{v['rps']:>9.0f}{v['p50_ms']:>9.2f}{v['p99_ms']:>9.2f}{v['requests']:>10}"
            f"{v['errors']:>8}{v['hit_ratio']:>11.3f}"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The FastAPI example app under load: plain, cached and async cached.")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 8; 1 with --quick)")
    parser.add_argument("--duration", type=int, help="seconds per variant per round (default 3; 1 with --quick)")
    parser.add_argument("--concurrency", type=int, help="wrk's open connections (default 8)")
    parser.add_argument("--rows", type=int, help="rows in the table (default 1000; 100 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a second per variant: a smoke run, not a measurement")
    parser.add_argument("--json", type=Path, help="where to write the figures, under the key 'e2e'")
    args = parser.parse_args(argv)
    for name in ("rounds", "duration", "concurrency", "rows"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    settings = e2e_settings(args.quick, args.rounds, args.duration, args.concurrency, args.rows)
    from tests.servers import postgres_server, redis_server

    with redis_server() as redis_proc, postgres_server() as postgres_proc:
        e2e = run_e2e(settings, redis_proc, postgres_proc)
    print("\n".join(render(e2e)))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"e2e": e2e}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
