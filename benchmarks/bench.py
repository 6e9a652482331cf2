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
timed block, so that a "hit" that was not a hit fails the run. Usage::

    python benchmarks/bench.py [--rounds N] [--ops N] [--many-ops N] [--rows N] [--no-gc] [--quick] [--json PATH]

Run from the repository root as a script; it puts the root on ``sys.path`` so that its
modules (the ``benchmarks`` package) and the test suite's server launchers import alike.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shlex
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.async_phase import run_async  # noqa: E402
from benchmarks.cluster_phase import run_cluster  # noqa: E402
from benchmarks.common import CONCURRENCY, DEFAULT_JSON, MANY, Settings  # noqa: E402
from benchmarks.report import case_table, cluster_summary, many_note, render, targets  # noqa: E402
from benchmarks.state import Run  # noqa: E402
from benchmarks.sync_phase import run_sync  # noqa: E402
from benchmarks.workers import plain_worker  # noqa: E402


def measure(bench: Run) -> dict[str, Any]:
    """Every phase in turn, then the report's figures."""
    from sqlmodel_cache import SQLModelCache

    try:
        bench.load_table()
        bench.configure_sync()
        try:
            bench.fill_read_rows(bench.client)
            run_sync(bench)
        finally:
            SQLModelCache.reset()
        asyncio.run(run_async(bench))
        run_cluster(bench)
        memory = bench.memory()
        versions = bench.versions()
    finally:
        bench.engine.dispose()
        bench.client.close()
    cluster = cluster_summary(bench)
    bench.notes.append(many_note(bench))
    return {
        "versions": versions,
        "cases": case_table(bench),
        "throughput": {name: rate.summary() for name, rate in bench.rates.items()},
        "throughput_ratio_hit_to_floor": bench.rates["async_hit_x50"].median / bench.rates["async_floor_x50"].median,
        "memory": memory,
        "targets": targets(bench),
        "cluster": cluster,
        "notes": bench.notes,
    }


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


@contextmanager
def servers() -> Iterator[tuple[Any, Any]]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.servers import postgres_server, redis_server

    with redis_server() as redis_proc, postgres_server() as postgres_proc:
        yield redis_proc, postgres_proc


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.plain_worker:
        return plain_worker(args.plain_worker, args.worker_redis, args.no_gc)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    settings = settings_from(args)
    started = time.monotonic()
    date = dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()
    with servers() as (redis_proc, postgres_proc):
        report = measure(Run(settings, redis_proc.port, postgres_proc, redis_proc.process.pid))
    report = {
        "date": date,
        "command": shlex.join(["python", "benchmarks/bench.py", *sys.argv[1:]]),
        "settings": {
            "rounds": settings.rounds,
            "ops": settings.ops,
            "many_ops": settings.many_ops,
            "many_rows": MANY,
            "rows": settings.rows,
            "warmup_ops": settings.warmup_ops,
            "many_warmup_ops": settings.many_warmup_ops,
            "concurrency": CONCURRENCY,
            "ops_per_task": settings.per_task,
            "gc": "disabled in timed loops" if settings.gc_off else "enabled",
            "quick": args.quick,
        },
        **report,
        "elapsed_s": time.monotonic() - started,
    }
    print(render(report))
    path = args.json or ROOT / DEFAULT_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
