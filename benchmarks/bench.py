"""Benchmark sqlmodel-cache against the performance targets of the specification.

One run starts its own redis-server and PostgreSQL on loopback ports, loads a table of
realistic rows and measures the latency of one operation, as the median of every sample
taken over several interleaved rounds (each round runs every case in turn, in a rotating
order, so drift affects all cases alike):

* ``floor``: raw redis-py ``GET`` plus ``msgpack.unpackb`` of a cached entry's bytes.
* ``rtt``: raw redis-py ``PING``, one Redis round trip.
* ``plain_get``: ``Session(engine).get()`` in this process, where the cached cases run too.
* ``plain_get_unimported`` / ``plain_get_configured``: the same in two child processes that
  differ only in that the second imports and configures the library (a fresh pair each round).
* ``hit`` / ``miss``: ``CachedSession(engine).get()``, the entry cached / evicted just before
  (the eviction is not timed).
* ``rmw_*``: a new session, ``get()``, change one column, ``commit()``.
* ``many_hit`` / ``many_miss``: ``CachedSession(engine).get_many()`` of 100 rows, all cached /
  all evicted just before (untimed), against ``hit_with_many`` (one cached ``get()``), and
  against ``plain_select_in`` (a plain ``SELECT ... WHERE id IN`` of the same 100 rows) and
  ``rtt_with_many``; these run fewer operations per round (``--many-ops``).
* ``async_*``: the same with ``AsyncCachedSession``, ``redis.asyncio`` and asyncpg, and the
  throughput of 50 concurrent tasks.
* ``cluster_floor`` / ``cluster_hit``: ``floor`` and ``hit`` again on a Redis Cluster of three
  masters (``redis.cluster.RedisCluster``), in a phase of their own after the others,
  interleaved with ``hit_with_cluster`` and ``floor_with_cluster`` (the single server's
  ``hit`` and ``floor`` once more; the library is configured with the hit's transport
  before each hit, untimed).

It also reports the Redis memory of one entry, and checks the cache counters around every
timed block, so that a "hit" that was not a hit fails the run. With ``--e2e`` it then runs
the end-to-end phase of ``benchmarks.e2e`` on the same servers (about 1.5 minutes; a few
seconds with ``--quick``): the FastAPI example under uvicorn and wrk. Usage::

    python benchmarks/bench.py [--rounds N] [--ops N] [--many-ops N] [--rows N] [--no-gc] [--quick] [--e2e]
                               [--json PATH]

This file parses the command line, starts the servers, runs the phases and writes the
report; the rest of the package holds the parts: ``servers`` (servers, CPU pinning, the
child processes), ``workload`` (the table and its rows), ``timing`` (interleaved timing and
the counters checks), ``cases_sync``, ``cases_async`` and ``cases_cluster`` (what each phase
measures), ``targets`` (the verdicts) and ``report`` (the JSON structure and the text).

The modules import each other, and the servers of ``tests.servers``, by absolute name
(``benchmarks.timing``), which needs the repository root on ``sys.path``. Run as a file,
Python puts this file's directory there instead: the lines before the imports below swap it
for the repository root, so that the modules are only ever imported as ``benchmarks.*`` and
none shadows a top-level module. The script therefore runs from any directory, as does
``python -m benchmarks.bench`` from the repository root, and so do the child processes it
starts (``--plain-worker``), which run this same file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if not __package__:
    _here = Path(__file__).resolve().parent
    sys.path[:] = [str(_here.parent), *(entry for entry in sys.path if Path(entry).resolve() != _here)]

from benchmarks.cases_async import run_async
from benchmarks.cases_cluster import run_cluster
from benchmarks.cases_herd import run_herd
from benchmarks.cases_sync import run_sync
from benchmarks.common import MANY, Settings
from benchmarks.e2e import e2e_settings, run_e2e
from benchmarks.report import CASE_NOTES, entry_memory, figures, render, settings_summary, versions
from benchmarks.servers import plain_worker, servers
from benchmarks.timing import Results
from benchmarks.workload import Workload

if TYPE_CHECKING:
    from tests.servers import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = Path("benchmarks") / "results" / "latest.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark sqlmodel-cache against its performance targets.")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 20; 2 with --quick)")
    parser.add_argument("--ops", type=int, help="timed operations per case per round (default 200; 20 with --quick)")
    parser.add_argument(
        "--many-ops", type=int, help=f"the same for the get_many() cases of {MANY} rows (default 50; 5 with --quick)"
    )
    parser.add_argument(
        "--rows", type=int, help=f"rows in the table (default 1000; {2 * MANY} with --quick; at least {2 * MANY})"
    )
    parser.add_argument("--quick", action="store_true", help="a few operations only: a smoke run, not a measurement")
    parser.add_argument("--no-gc", action="store_true", help="disable the garbage collector inside timed loops")
    parser.add_argument(
        "--e2e", action="store_true", help="then the FastAPI example under uvicorn and wrk (benchmarks.e2e)"
    )
    parser.add_argument("--json", type=Path, help=f"where to write every figure (default {DEFAULT_JSON})")
    parser.add_argument("--plain-worker", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--worker-redis", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("rounds", "ops", "many_ops", "rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.rows is not None and args.rows < 2 * MANY:
        parser.error(f"--rows must be at least {2 * MANY}: half the rows are read rows, and get_many() reads {MANY}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    ops = args.ops or (20 if args.quick else 200)
    many_ops = args.many_ops or (5 if args.quick else 50)
    return Settings(
        rounds=args.rounds or (2 if args.quick else 20),
        ops=ops,
        many_ops=many_ops,
        rows=args.rows or (2 * MANY if args.quick else 1000),
        warmup_ops=max(ops // 4, 5),
        many_warmup_ops=max(many_ops // 4, 2),
        per_task=2 if args.quick else 20,
        gc_off=args.no_gc,
    )


def measure(settings: Settings, redis_server: RedisServer, postgres: PostgresServer) -> dict[str, Any]:
    """Every phase in turn, on one table; the run's figures."""
    from sqlmodel_cache import SQLModelCache

    workload = Workload(settings, redis_server.port, postgres)
    results = Results(notes=list(CASE_NOTES))
    try:
        workload.load_table()
        workload.configure_sync()
        try:
            workload.fill_read_rows(workload.client)
            run_sync(workload, results)
        finally:
            SQLModelCache.reset()
        asyncio.run(run_async(workload, results))
        herd = run_herd(workload, settings.rounds)
        run_cluster(workload, results, redis_server.process.pid)
        memory = entry_memory(workload)
        found = versions(workload)
    finally:
        workload.close()
    return figures(results, memory, found, herd)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plain_worker:
        return plain_worker(args.plain_worker, args.worker_redis, args.no_gc)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    settings = settings_from(args)
    started = time.monotonic()
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    with servers() as (redis_server, postgres):
        measured = measure(settings, redis_server, postgres)
        if args.e2e:
            measured["e2e"] = run_e2e(e2e_settings(args.quick), redis_server, postgres)
    report = {
        "date": date,
        "command": shlex.join(["python", "benchmarks/bench.py", *sys.argv[1:]]),
        "settings": settings_summary(settings, args.quick),
        **measured,
        "elapsed_s": time.monotonic() - started,
    }
    print(render(report))
    path = args.json or ROOT / DEFAULT_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
