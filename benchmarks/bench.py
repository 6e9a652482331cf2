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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import importlib.metadata
import json
import os
import platform
import random
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import redis
import redis.cluster
from sqlalchemy import Engine, text
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, create_engine, select

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = Path("benchmarks") / "results" / "latest.json"
TABLE = "bench_row"
FLOOR_PREFIX = "bench:floor:"
CONCURRENCY = 50
# Rows per get_many() call; the read rows must hold this many.
MANY = 100
CLUSTER_MASTERS = 3
# Targets from the specification.
HIT_LIMIT = 1.5
MISS_MARGIN = 1.15
MANY_HIT_LIMIT = 3.0
MANY_MISS_RTTS = 3
# "No slower" and "the same" are judged with these tolerances for run-to-run noise.
RMW_TOLERANCE = 0.03
PLAIN_TOLERANCE = 0.05
MANY_MISS_TOLERANCE = 0.03
# The cluster's hit is compared with the single server's, interleaved in one phase.
CLUSTER_TOLERANCE = 0.05

SyncOp = Callable[[int], object]
SyncBlock = Callable[[list[int]], list[int]]
AsyncOp = Callable[[int], Awaitable[object]]
AsyncBlock = Callable[[list[int]], Awaitable[list[int]]]


class BenchmarkError(RuntimeError):
    """The benchmark did not measure what it claims (e.g. a "hit" that was not a hit)."""


@dataclass(frozen=True)
class Settings:
    rounds: int
    ops: int
    many_ops: int
    rows: int
    warmup_ops: int
    many_warmup_ops: int
    per_task: int
    gc_off: bool


# --- the model -------------------------------------------------------------------------


def define_model(cache_config: object | None) -> Any:
    """The benchmark table in a registry of its own; ``cache_config=None`` leaves it uncached."""

    class BenchBase(SQLModel, registry=registry()):
        pass

    class BenchRow(BenchBase, table=True):
        __tablename__ = TABLE
        __cache_config__ = cache_config

        id: int | None = Field(default=None, primary_key=True)
        name: str
        email: str
        score: int
        rating: float
        active: bool
        created_at: dt.datetime
        note: str | None = None

    return BenchRow


def make_rows(model: Any, count: int) -> list[Any]:
    rng = random.Random(20240601)
    start = dt.datetime(2024, 1, 1, 9, 30, tzinfo=dt.timezone.utc)
    words = ["priority", "wholesale", "returning", "trial", "referral", "enterprise"]
    return [
        model(
            id=i,
            name=f"Customer {i:05d}",
            email=f"customer{i}@example.com",
            score=rng.randrange(10_000),
            rating=round(rng.uniform(0, 5), 3),
            active=i % 3 != 0,
            created_at=start + dt.timedelta(minutes=37 * i, microseconds=i),
            note=None if i % 4 == 0 else f"{rng.choice(words)} account since {2000 + i % 24}",
        )
        for i in range(1, count + 1)
    ]


# --- timing ----------------------------------------------------------------------------


@contextmanager
def redis_on_its_own_cpu(pids: Sequence[int]) -> Iterator[bool]:
    """Every redis-server in ``pids`` on the last CPU, this process on the others, for a while.

    For comparing round trips to different servers: unpinned, the kernel's choice of which
    server process wakes next to this one (and which on an idle CPU) weighs more than the
    code; measured here, a cluster node's round trip came out anywhere from 0.3x to 1x the
    single server's from one run to the next. Pinned, each round trip wakes its server alike.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    setaffinity = getattr(os, "sched_setaffinity", None)
    cpus = sorted(getaffinity(0)) if getaffinity is not None else []
    if setaffinity is None or getaffinity is None or len(cpus) < 2:
        yield False
        return
    saved = {pid: getaffinity(pid) for pid in [0, *pids]}
    setaffinity(0, set(cpus[:-1]))
    for pid in pids:
        setaffinity(pid, {cpus[-1]})
    try:
        yield True
    finally:
        for pid, mask in saved.items():
            with contextlib.suppress(OSError):  # a server may have exited
                setaffinity(pid, mask)


SyncGroup = Callable[[list[list[int]]], list[list[int]]]
AsyncGroup = Callable[[list[list[int]]], Awaitable[list[list[int]]]]


def interleaved(steps: Sequence[tuple[SyncOp, SyncOp | None]], gc_off: bool) -> SyncGroup:
    """Time several cases operation by operation, in turn (a, b, c, a, b, c, ...).

    Cases compared by a ratio run interleaved so that they meet the same machine state:
    on a virtual machine an idle core wakes slowly, and a block of one case after a block
    of another would measure the machine's state as much as the code. The order turns by
    one case per operation, so that no case always follows the same other case (what ran
    just before, and which server it woke, moves a round trip by 10 % and more).
    """

    def group(pk_lists: list[list[int]]) -> list[list[int]]:
        clock = time.perf_counter_ns
        samples: list[list[int]] = [[] for _ in steps]
        if len(pk_lists[0]) > 1:  # a one-operation request (interleaved children) must stay cheap
            gc.collect()
        if gc_off:
            gc.disable()
        try:
            for index, pks in enumerate(zip(*pk_lists, strict=True)):
                for case in rotated(range(len(steps)), index):
                    op, prepare = steps[case]
                    if prepare is not None:
                        prepare(pks[case])
                    start = clock()
                    op(pks[case])
                    samples[case].append(clock() - start)
        finally:
            gc.enable()
        return samples

    return group


def async_interleaved(steps: Sequence[tuple[AsyncOp, AsyncOp | None]], gc_off: bool) -> AsyncGroup:
    async def group(pk_lists: list[list[int]]) -> list[list[int]]:
        clock = time.perf_counter_ns
        samples: list[list[int]] = [[] for _ in steps]
        gc.collect()
        if gc_off:
            gc.disable()
        try:
            for index, pks in enumerate(zip(*pk_lists, strict=True)):
                for case in rotated(range(len(steps)), index):
                    op, prepare = steps[case]
                    if prepare is not None:
                        await prepare(pks[case])
                    start = clock()
                    await op(pks[case])
                    samples[case].append(clock() - start)
        finally:
            gc.enable()
        return samples

    return group


def timed_block(op: SyncOp, prepare: SyncOp | None, gc_off: bool) -> SyncBlock:
    """Time ``op(pk)`` once per primary key; ``prepare(pk)`` runs before each, untimed."""
    group = interleaved([(op, prepare)], gc_off)
    return lambda pks: group([pks])[0]


def async_timed_block(op: AsyncOp, prepare: AsyncOp | None, gc_off: bool) -> AsyncBlock:
    group = async_interleaved([(op, prepare)], gc_off)

    async def block(pks: list[int]) -> list[int]:
        return (await group([pks]))[0]

    return block


async def concurrent_rate(op: AsyncOp, pks: list[int], tasks: int, gc_off: bool) -> float:
    """Operations per second of ``tasks`` tasks sharing ``pks`` on one event loop."""

    async def worker(chunk: list[int]) -> None:
        for pk in chunk:
            await op(pk)

    chunks = [pks[i::tasks] for i in range(tasks)]
    gc.collect()
    if gc_off:
        gc.disable()
    try:
        start = time.perf_counter_ns()
        await asyncio.gather(*(worker(chunk) for chunk in chunks))
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
    return len(pks) / (elapsed / 1e9)


@dataclass
class Series:
    """One case's samples (nanoseconds per operation), and the primary keys it cycles through."""

    name: str
    what: str
    pool: list[int]
    samples: list[int] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    cursor: int = 0

    def next_pks(self, count: int) -> list[int]:
        pks = [self.pool[(self.cursor + i) % len(self.pool)] for i in range(count)]
        self.cursor += count
        return pks

    def record(self, samples: list[int]) -> None:
        self.samples.extend(samples)
        self.round_medians.append(statistics.median(samples))

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples) / 1000

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.samples)
        return {
            "what": self.what,
            "median_us": self.median_us,
            "mean_us": statistics.fmean(ordered) / 1000,
            "min_us": ordered[0] / 1000,
            "p90_us": ordered[int(0.9 * (len(ordered) - 1))] / 1000,
            "samples": len(ordered),
            "round_medians_us": [m / 1000 for m in self.round_medians],
        }


@dataclass
class Rate:
    """One throughput case: operations per second, one figure per round."""

    name: str
    what: str
    pool: list[int]
    rounds: list[float] = field(default_factory=list)
    cursor: int = 0

    def next_pks(self, count: int) -> list[int]:
        pks = [self.pool[(self.cursor + i) % len(self.pool)] for i in range(count)]
        self.cursor += count
        return pks

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    def summary(self) -> dict[str, Any]:
        return {"what": self.what, "median_ops_per_s": self.median, "rounds_ops_per_s": self.rounds}


@dataclass(frozen=True)
class CaseGroup:
    """Cases timed together, interleaved; the operations each runs per round and to warm up."""

    members: list[Series]
    run: SyncGroup
    ops: int
    warmup_ops: int

    def run_round(self) -> None:
        samples = self.run([series.next_pks(self.ops) for series in self.members])
        for series, taken in zip(self.members, samples, strict=True):
            series.record(taken)


def rotated(items: Sequence[Any], round_index: int) -> list[Any]:
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- plain Session.get in child processes, with and without the library -----------------


def plain_worker(url: str, redis_url: str | None, gc_off: bool) -> int:
    """Child mode: answer ``{"pks": [...]}`` lines with the timed ``Session.get`` samples.

    With ``redis_url`` the child imports and configures sqlmodel-cache and opts the model
    in; without it, it never imports the library. Both children run the same code
    otherwise, so their difference is the library's.
    """
    engine = create_engine(url)
    if redis_url is None:
        model = define_model(None)
    else:
        from sqlmodel_cache import CacheConfig, SQLModelCache
        from sqlmodel_cache.transport import RedisSyncTransport

        SQLModelCache.configure(transport=RedisSyncTransport(redis.Redis.from_url(redis_url)))
        model = define_model(CacheConfig(ttl=3600))

    def get(pk: int) -> None:
        with Session(engine) as session:
            session.get(model, pk)

    block = timed_block(get, None, gc_off)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "pks" not in request:
            break
        print(json.dumps({"samples": block(request["pks"])}), flush=True)
    print(json.dumps({"imported_sqlmodel_cache": "sqlmodel_cache" in sys.modules}), flush=True)
    engine.dispose()
    return 0


class PlainWorker:
    """The parent's handle on a child that measures ``Session.get``; it idles between blocks."""

    def __init__(self, url: str, redis_url: str | None, gc_off: bool) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--plain-worker", url]
        if redis_url is not None:
            command += ["--worker-redis", redis_url]
        if gc_off:
            command.append("--no-gc")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self) -> None:
        self._receive()

    def _receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchmarkError(f"a plain_get child process exited with code {self.process.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def run(self, pks: list[int]) -> list[int]:
        self._send({"pks": pks})
        samples: list[int] = self._receive()["samples"]
        return samples

    def finish(self) -> bool:
        """Stop the child; whether sqlmodel_cache was imported there."""
        self._send({"quit": True})
        imported = bool(self._receive()["imported_sqlmodel_cache"])
        self._close_pipes()
        self.process.wait(timeout=30)
        return imported

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self._close_pipes()
        self.process.wait()

    def _close_pipes(self) -> None:
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()


class ChildPair:
    """Two children, without and with the library, replaced by a fresh pair every round.

    Two identical processes can differ by several per cent (which CPU they land on, their
    memory layout); a fresh pair per round turns that into noise that the median over
    rounds absorbs, instead of a bias.
    """

    def __init__(self, url: str, redis_url: str, gc_off: bool) -> None:
        self.url, self.redis_url, self.gc_off = url, redis_url, gc_off
        self.workers: tuple[PlainWorker, PlainWorker] | None = None

    def start(self, warmup_pks: list[int]) -> None:
        self.workers = (
            PlainWorker(self.url, None, self.gc_off),
            PlainWorker(self.url, self.redis_url, self.gc_off),
        )
        for worker in self.workers:
            worker.ready()
            worker.run(warmup_pks)

    def stop(self) -> None:
        workers, self.workers = self._current(), None
        if workers[0].finish() or not workers[1].finish():
            raise BenchmarkError("a plain_get child process did not run with the library as intended")

    def kill(self) -> None:
        if self.workers is not None:
            for worker in self.workers:
                worker.kill()
            self.workers = None

    def _current(self) -> tuple[PlainWorker, PlainWorker]:
        if self.workers is None:
            raise BenchmarkError("the child processes are not running")
        return self.workers

    def run_interleaved(self, pk_lists: list[list[int]]) -> list[list[int]]:
        """One operation in each child in turn, as `interleaved` does within this process."""
        unimported, configured = self._current()
        samples: list[list[int]] = [[], []]
        for first, second in zip(*pk_lists, strict=True):
            samples[0] += unimported.run([first])
            samples[1] += configured.run([second])
        return samples


# --- the benchmark ---------------------------------------------------------------------


def expecting(block: SyncBlock, **per_op: int) -> SyncBlock:
    """``block``, failing the run unless the cache counters moved by ``per_op`` per operation."""
    from sqlmodel_cache import SQLModelCache

    def checked(pks: list[int]) -> list[int]:
        before = SQLModelCache.stats()
        samples = block(pks)
        check_counters(before, SQLModelCache.stats(), per_op, len(pks))
        return samples

    return checked


def expecting_group(group: SyncGroup, **per_op: int) -> SyncGroup:
    """As `expecting`, for interleaved cases of which one moves the counters."""
    from sqlmodel_cache import SQLModelCache

    def checked(pk_lists: list[list[int]]) -> list[list[int]]:
        before = SQLModelCache.stats()
        samples = group(pk_lists)
        check_counters(before, SQLModelCache.stats(), per_op, len(pk_lists[0]))
        return samples

    return checked


def async_expecting_group(group: AsyncGroup, **per_op: int) -> AsyncGroup:
    from sqlmodel_cache import SQLModelCache

    async def checked(pk_lists: list[list[int]]) -> list[list[int]]:
        before = SQLModelCache.stats()
        samples = await group(pk_lists)
        check_counters(before, SQLModelCache.stats(), per_op, len(pk_lists[0]))
        return samples

    return checked


def async_expecting(block: AsyncBlock, **per_op: int) -> AsyncBlock:
    from sqlmodel_cache import SQLModelCache

    async def checked(pks: list[int]) -> list[int]:
        before = SQLModelCache.stats()
        samples = await block(pks)
        check_counters(before, SQLModelCache.stats(), per_op, len(pks))
        return samples

    return checked


def check_counters(before: Any, after: Any, per_op: dict[str, int], ops: int) -> None:
    for name, each in per_op.items():
        moved = getattr(after, name) - getattr(before, name)
        if moved != each * ops:
            raise BenchmarkError(f"expected {name} to grow by {each * ops} over {ops} operations, got {moved}")
    if after.redis_errors != before.redis_errors:
        raise BenchmarkError("Redis errors during a timed block: the figures would be meaningless")


class Benchmark:
    """One run: the table, the cases, the rounds, and the report's figures."""

    def __init__(self, settings: Settings, redis_port: int, postgres: Any, redis_pid: int | None = None) -> None:
        from sqlmodel_cache import CacheConfig

        self.settings = settings
        self.redis_port = redis_port
        self.redis_pid = redis_pid
        self.postgres = postgres
        self.model = define_model(CacheConfig(ttl=3600))
        self.engine: Engine = create_engine(postgres.url("psycopg"))
        self.client = redis.Redis(host="127.0.0.1", port=redis_port)
        pks = list(range(1, settings.rows + 1))
        random.Random(7).shuffle(pks)
        tenth = max(len(pks) // 10, 1)
        # Disjoint rows per kind of case, so that no case changes what another one finds.
        self.read_pks = pks[: 5 * tenth]
        self.miss_pks = pks[5 * tenth : 7 * tenth]
        self.rmw_plain_pks = pks[7 * tenth : 8 * tenth]
        self.rmw_cached_pks = pks[8 * tenth : 9 * tenth]
        self.rmw_cold_pks = pks[9 * tenth :]
        # get_many() batches: MANY distinct read rows each, a window that moves one row per batch.
        count = len(self.read_pks)
        if count < MANY:
            raise BenchmarkError(f"get_many() needs {MANY} read rows, the table gives {count}")
        self.many_batches = [[self.read_pks[(start + i) % count] for i in range(MANY)] for start in range(count)]
        self.library_keys: dict[int, bytes] = {}
        self.floor_keys: dict[int, bytes] = {}
        self.series: dict[str, Series] = {}
        self.rates: dict[str, Rate] = {}
        self.notes: list[str] = [
            "x floor / x plain: ratios to floor and plain_get (async: async_floor, async_plain_get; "
            "cluster: cluster_floor, plain_get), all measured in this process",
            "plain_get_unimported and plain_get_configured ran in two child processes, identical "
            "except that the second imported and configured sqlmodel-cache (a fresh pair each round)",
            "targets: the median over rounds of the ratio within each round ('rounds' is its range)",
            f"many_*: one get_many() of {MANY} distinct read rows in a new session; hit_with_many and "
            "rtt_with_many are hit and rtt again, interleaved with the get_many() cases; many_floor is "
            "the raw MGET and msgpack.unpackb of the same entries",
        ]

    # setup

    def load_table(self) -> None:
        metadata = self.model.metadata
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        with Session(self.engine) as session:
            session.add_all(make_rows(self.model, self.settings.rows))
            session.commit()
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {TABLE}"))

    def configure_sync(self) -> None:
        from sqlmodel_cache import SQLModelCache
        from sqlmodel_cache.transport import RedisSyncTransport

        SQLModelCache.configure(transport=RedisSyncTransport(self.client))

    def fill_read_rows(self, client: redis.Redis | redis.cluster.RedisCluster) -> None:
        """Cache every row the read cases use and copy each entry's bytes to a floor key.

        ``client`` is on the server the configured transport uses; the keys are found on the
        single server (the first call), and have the same names on the cluster.
        """
        from sqlmodel_cache import CachedSession, SQLModelCache

        before = SQLModelCache.stats()
        for pk in self.read_pks:
            with CachedSession(self.engine) as session:
                session.get(self.model, pk)
        check_counters(before, SQLModelCache.stats(), {"fills": 1}, len(self.read_pks))
        if not self.library_keys:
            for key in self.client.scan_iter(match=f"*:{TABLE}:*", count=1000):
                self.library_keys[int(key.rsplit(b":", 1)[1])] = key
        for pk in self.read_pks:
            floor_key = f"{FLOOR_PREFIX}{pk}".encode()
            value = client.get(self.library_keys[pk])
            if not isinstance(value, bytes):
                raise BenchmarkError(f"row {pk} was filled but its entry is not in Redis")
            client.set(floor_key, value)
            self.floor_keys[pk] = floor_key

    # sync cases

    def sync_cases(self, children: ChildPair) -> list[CaseGroup]:
        from sqlmodel_cache import CachedSession, SQLModelCache

        settings, engine, model, client = self.settings, self.engine, self.model, self.client
        gc_off, unpackb, floor_keys, batches = settings.gc_off, msgpack.unpackb, self.floor_keys, self.many_batches
        redis_get: Callable[[bytes], bytes] = client.get  # type: ignore[assignment]

        def floor(pk: int) -> None:
            unpackb(redis_get(floor_keys[pk]))

        def rtt(pk: int) -> None:
            client.ping()

        def plain_get(pk: int) -> None:
            with Session(engine) as session:
                session.get(model, pk)

        def cached_get(pk: int) -> None:
            with CachedSession(engine) as session:
                session.get(model, pk)

        def evict(pk: int) -> None:
            SQLModelCache.evict(model, pk)

        # The get_many() cases take the index of a batch of MANY primary keys.
        def cached_get_many(index: int) -> None:
            with CachedSession(engine) as session:
                session.get_many(model, batches[index])

        floor_batches: list[list[bytes]] = []
        redis_mget: Callable[[list[bytes]], list[bytes]] = client.mget  # type: ignore[assignment]

        def many_floor(index: int) -> None:
            if not floor_batches:  # the floor keys exist once the read rows are cached
                floor_batches.extend([floor_keys[pk] for pk in batch] for batch in batches)
            for raw in redis_mget(floor_batches[index]):
                unpackb(raw)

        def evict_many(index: int) -> None:
            SQLModelCache.evict(model, *batches[index])

        def plain_select_in(index: int) -> None:
            with Session(engine) as session:
                session.exec(select(model).where(model.id.in_(batches[index]))).all()

        def rmw(session_class: type[Session]) -> SyncOp:
            def op(pk: int) -> None:
                with session_class(engine) as session:
                    row: Any = session.get(model, pk)
                    row.score += 1
                    session.commit()

            return op

        def block(op: SyncOp, prepare: SyncOp | None = None) -> SyncBlock:
            return timed_block(op, prepare, gc_off)

        def alone(run: SyncBlock) -> SyncGroup:
            return lambda pk_lists: [run(pk_lists[0])]

        # Cases compared by a target run interleaved, operation by operation.
        groups: list[tuple[list[tuple[str, str, list[int]]], SyncGroup]] = [
            (
                [
                    ("floor", "raw GET + msgpack.unpackb", self.read_pks),
                    ("rtt", "raw PING", self.read_pks),
                    ("hit", "CachedSession.get, cached", self.read_pks),
                ],
                expecting_group(
                    interleaved([(floor, None), (rtt, None), (cached_get, None)], gc_off), hits=1, misses=0
                ),
            ),
            (
                [
                    ("plain_get", "Session.get, here (as hit/miss)", self.read_pks),
                    ("miss", "CachedSession.get, evicted", self.miss_pks),
                ],
                expecting_group(
                    interleaved([(plain_get, None), (cached_get, evict)], gc_off), hits=0, misses=1, fills=1
                ),
            ),
            (
                [
                    ("plain_get_unimported", "Session.get, child, library never imported", self.read_pks),
                    ("plain_get_configured", "Session.get, child, library configured", self.read_pks),
                ],
                children.run_interleaved,
            ),
            (
                [
                    ("rmw_plain", "Session get+change+commit", self.rmw_plain_pks),
                    ("rmw_cached", "CachedSession get+change+commit, row cached", self.rmw_cached_pks),
                ],
                expecting_group(
                    interleaved([(rmw(Session), None), (rmw(CachedSession), cached_get)], gc_off),
                    hits=1,
                    misses=1,
                    fills=1,
                    invalidations=1,
                ),
            ),
            (
                [("rmw_cached_miss", "CachedSession get+change+commit, row evicted", self.rmw_cold_pks)],
                alone(expecting(block(rmw(CachedSession), evict), hits=0, misses=1, fills=1, invalidations=2)),
            ),
        ]
        # get_many() of MANY rows costs a few single reads: these groups run fewer operations.
        batch_indexes = list(range(len(batches)))
        many_groups: list[tuple[list[tuple[str, str, list[int]]], SyncGroup]] = [
            (
                [
                    ("many_hit", f"CachedSession.get_many, {MANY} rows cached", batch_indexes),
                    ("hit_with_many", "CachedSession.get, cached (as many_hit)", self.read_pks),
                    ("many_floor", f"raw MGET of {MANY} entries + msgpack.unpackb each", batch_indexes),
                ],
                expecting_group(
                    interleaved([(cached_get_many, None), (cached_get, None), (many_floor, None)], gc_off),
                    hits=MANY + 1,
                    misses=0,
                ),
            ),
            (
                [
                    ("many_miss", f"CachedSession.get_many, {MANY} rows evicted", batch_indexes),
                    ("plain_select_in", f"Session SELECT ... IN, {MANY} rows", batch_indexes),
                    ("rtt_with_many", "raw PING (as many_miss)", self.read_pks),
                ],
                expecting_group(
                    interleaved([(cached_get_many, evict_many), (plain_select_in, None), (rtt, None)], gc_off),
                    hits=0,
                    misses=MANY,
                    fills=MANY,
                ),
            ),
        ]
        result = []
        for kind, ops, warmup_ops in (
            (groups, settings.ops, settings.warmup_ops),
            (many_groups, settings.many_ops, settings.many_warmup_ops),
        ):
            for cases, run in kind:
                members = []
                for name, what, pool in cases:
                    self.series[name] = Series(name, what, pool)
                    members.append(self.series[name])
                result.append(CaseGroup(members, run, ops, warmup_ops))
        return result

    def run_sync(self) -> None:
        settings = self.settings
        children = ChildPair(self.postgres.url("psycopg"), f"redis://127.0.0.1:{self.redis_port}/0", settings.gc_off)
        cases = self.sync_cases(children)
        warmup_pks = self.read_pks[: settings.warmup_ops]
        try:
            progress(
                f"sync: warm-up, then {settings.rounds} rounds of {settings.ops} operations per case"
                f" ({settings.many_ops} per get_many case)"
            )
            children.start(warmup_pks)
            for group in cases:
                group.run([series.next_pks(group.warmup_ops) for series in group.members])
            children.stop()
            for round_index in range(settings.rounds):
                children.start(warmup_pks)
                for group in rotated(cases, round_index):
                    group.run_round()
                children.stop()
                progress(f"  sync round {round_index + 1}/{settings.rounds} done")
        finally:
            children.kill()

    # async cases

    async def run_async(self) -> None:
        import redis.asyncio
        from sqlalchemy.ext.asyncio import create_async_engine
        from sqlmodel.ext.asyncio.session import AsyncSession

        from sqlmodel_cache import AsyncCachedSession, SQLModelCache
        from sqlmodel_cache.transport import RedisAsyncTransport

        settings, model, floor_keys = self.settings, self.model, self.floor_keys
        SQLModelCache.reset()
        client = redis.asyncio.Redis(host="127.0.0.1", port=self.redis_port)
        SQLModelCache.configure(transport=RedisAsyncTransport(client))
        engine = create_async_engine(self.postgres.url("asyncpg"))
        unpackb = msgpack.unpackb
        redis_get: Callable[[bytes], Awaitable[bytes]] = client.get  # type: ignore[assignment]

        async def floor(pk: int) -> None:
            unpackb(await redis_get(floor_keys[pk]))

        async def rtt(pk: int) -> None:
            await client.ping()

        async def plain_get(pk: int) -> None:
            async with AsyncSession(engine) as session:
                await session.get(model, pk)

        async def cached_get(pk: int) -> None:
            async with AsyncCachedSession(engine) as session:
                await session.get(model, pk)

        async def evict(pk: int) -> None:
            await SQLModelCache.aevict(model, pk)

        def block(op: AsyncOp, prepare: AsyncOp | None = None) -> AsyncBlock:
            return async_timed_block(op, prepare, settings.gc_off)

        timed: list[tuple[list[tuple[str, str, list[int]]], AsyncGroup]] = [
            (
                [
                    ("async_floor", "raw asyncio GET + msgpack.unpackb", self.read_pks),
                    ("async_rtt", "raw asyncio PING", self.read_pks),
                    ("async_hit", "AsyncCachedSession.get, cached", self.read_pks),
                ],
                async_expecting_group(
                    async_interleaved([(floor, None), (rtt, None), (cached_get, None)], settings.gc_off),
                    hits=1,
                    misses=0,
                ),
            ),
            (
                [
                    ("async_plain_get", "AsyncSession.get (asyncpg)", self.read_pks),
                    ("async_miss", "AsyncCachedSession.get, evicted", self.miss_pks),
                ],
                async_expecting_group(
                    async_interleaved([(plain_get, None), (cached_get, evict)], settings.gc_off),
                    hits=0,
                    misses=1,
                    fills=1,
                ),
            ),
        ]
        per_round = CONCURRENCY * settings.per_task
        gc_off = settings.gc_off

        def rate(op: AsyncOp) -> Callable[[list[int]], Awaitable[float]]:
            return lambda pks: concurrent_rate(op, pks, CONCURRENCY, gc_off)

        rates: list[tuple[str, str, Callable[[list[int]], Awaitable[float]]]] = [
            ("async_floor_x50", f"{CONCURRENCY} tasks: raw asyncio GET + unpackb", rate(floor)),
            ("async_hit_x50", f"{CONCURRENCY} tasks: AsyncCachedSession.get hits", rate(cached_get)),
        ]
        steps: list[Callable[[], Awaitable[None]]] = []
        for cases, run in timed:
            members = []
            for name, what, pool in cases:
                members.append(Series(name, what, pool))
                self.series[name] = members[-1]
            steps.append(self._group_step(members, run))
        for name, what, measure in rates:
            meter = self.rates[name] = Rate(name, what, self.read_pks)
            steps.append(self._rate_step(meter, measure, per_round))
        try:
            progress(f"async: warm-up, then {settings.rounds} rounds")
            for cases, run in timed:
                await run([pool[: settings.warmup_ops] for _, _, pool in cases])
            for _, _, measure in rates:
                await measure(self.read_pks[:per_round])
            for round_index in range(settings.rounds):
                for step in rotated(steps, round_index):
                    await step()
                progress(f"  async round {round_index + 1}/{settings.rounds} done")
        finally:
            await engine.dispose()
            SQLModelCache.reset()
            await client.aclose()

    def _group_step(self, members: list[Series], run: AsyncGroup) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            samples = await run([series.next_pks(self.settings.ops) for series in members])
            for series, taken in zip(members, samples, strict=True):
                series.record(taken)

        return step

    def _rate_step(
        self, meter: Rate, measure: Callable[[list[int]], Awaitable[float]], count: int
    ) -> Callable[[], Awaitable[None]]:
        async def step() -> None:
            meter.rounds.append(await measure(meter.next_pks(count)))

        return step

    # cluster cases

    def run_cluster(self) -> None:
        """``floor`` and ``hit`` again on a Redis Cluster (sync only), interleaved with the same on
        the single server, then the configuration reset.

        Both hits run operation by operation in turn: before each, untimed, the library is
        configured with that hit's transport (two transports kept open across the switches,
        so that neither pays for a new connection).
        """
        from sqlmodel_cache import CachedSession, SQLModelCache
        from sqlmodel_cache.transport import RedisSyncTransport
        from tests.servers import redis_cluster

        class KeptOpen(RedisSyncTransport):
            """A transport that outlives `SQLModelCache.reset()`: closed at the end of the phase."""

            def close(self) -> None:
                pass

            def close_now(self) -> None:
                super().close()

        settings, engine, model, floor_keys = self.settings, self.engine, self.model, self.floor_keys
        progress(f"cluster: starting {CLUSTER_MASTERS} masters")
        with redis_cluster(CLUSTER_MASTERS) as cluster:
            host, port = cluster.startup
            client = redis.cluster.RedisCluster(host=host, port=port)
            on_cluster, on_single = KeptOpen(client), KeptOpen(self.client)

            # reset() zeroes the counters: each switch banks them first.
            moved = {"hits": 0, "misses": 0, "redis_errors": 0}

            def bank() -> None:
                stats = SQLModelCache.stats()
                for name in moved:
                    moved[name] += getattr(stats, name)

            def use(transport: RedisSyncTransport) -> SyncOp:
                def configure(pk: int) -> None:
                    bank()
                    SQLModelCache.reset()
                    SQLModelCache.configure(transport=transport)

                return configure

            def checked(run: SyncGroup) -> SyncGroup:
                def group(pk_lists: list[list[int]]) -> list[list[int]]:
                    use(on_cluster)(0)
                    moved.update(dict.fromkeys(moved, 0))
                    samples = run(pk_lists)
                    bank()
                    expected = {"hits": 2 * len(pk_lists[0]), "misses": 0, "redis_errors": 0}
                    if moved != expected:
                        raise BenchmarkError(f"expected the counters to move by {expected}, got {moved}")
                    return samples

                return group

            SQLModelCache.reset()
            SQLModelCache.configure(transport=on_cluster)
            pids = [node.process.pid for node in cluster.nodes]
            try:
                self.fill_read_rows(client)
                unpackb = msgpack.unpackb
                cluster_get: Callable[[bytes], bytes] = client.get  # type: ignore[assignment]
                single_get: Callable[[bytes], bytes] = self.client.get  # type: ignore[assignment]

                def floor(pk: int) -> None:
                    unpackb(cluster_get(floor_keys[pk]))

                def single_floor(pk: int) -> None:
                    unpackb(single_get(floor_keys[pk]))

                def cached_get(pk: int) -> None:
                    with CachedSession(engine) as session:
                        session.get(model, pk)

                members = []
                for name, what in (
                    ("cluster_floor", "raw cluster GET + msgpack.unpackb"),
                    ("cluster_hit", "CachedSession.get, cached, on the cluster"),
                    ("hit_with_cluster", "CachedSession.get, cached, single server (as cluster_*)"),
                    ("floor_with_cluster", "raw GET + msgpack.unpackb, single server (as cluster_*)"),
                ):
                    self.series[name] = Series(name, what, self.read_pks)
                    members.append(self.series[name])
                steps = [
                    (floor, None),
                    (cached_get, use(on_cluster)),
                    (cached_get, use(on_single)),
                    (single_floor, None),
                ]
                group = CaseGroup(
                    members,
                    checked(interleaved(steps, settings.gc_off)),
                    settings.ops,
                    settings.warmup_ops,
                )
                progress(f"cluster: warm-up, then {settings.rounds} rounds")
                with redis_on_its_own_cpu([*pids, *([self.redis_pid] if self.redis_pid else [])]) as pinned:
                    group.run([series.next_pks(group.warmup_ops) for series in members])
                    for round_index in range(settings.rounds):
                        group.run_round()
                        progress(f"  cluster round {round_index + 1}/{settings.rounds} done")
                self.notes.append(
                    "cluster phase: every redis-server on one CPU and this process on another"
                    if pinned
                    else "cluster phase: processes not pinned to CPUs (fewer than 2 CPUs, or no sched_setaffinity)"
                )
            finally:
                SQLModelCache.reset()
                on_cluster.close_now()
                on_single.close_now()
                client.close()

    # memory

    def memory(self) -> dict[str, Any]:
        sample = self.read_pks[:50]
        usage, entry, keys, floor_usage, row = [], [], [], [], []
        for pk in sample:
            key = self.library_keys[pk]
            value = self.client.get(key)
            assert isinstance(value, bytes)
            usage.append(int(self.client.memory_usage(key, samples=0) or 0))
            floor_usage.append(int(self.client.memory_usage(self.floor_keys[pk], samples=0) or 0))
            entry.append(len(value))
            keys.append(len(key))
            with Session(self.engine) as session:
                instance = session.get(self.model, pk)
                values = [getattr(instance, column.name) for column in self.model.__table__.columns]
            row.append(len(msgpack.packb(values, default=lambda v: v.isoformat())))
        median = statistics.median
        return {
            "entry_memory_usage_bytes": median(usage),
            "entry_value_bytes": median(entry),
            "entry_key_bytes": median(keys),
            "plain_row_msgpack_bytes": median(row),
            "overhead_bytes": median(u - v - k for u, v, k in zip(usage, entry, keys, strict=True)),
            "ratio_to_value_plus_key": median(u / (v + k) for u, v, k in zip(usage, entry, keys, strict=True)),
            "floor_copy_memory_usage_bytes": median(floor_usage),
            "sampled_keys": len(sample),
        }

    # versions

    def versions(self) -> dict[str, str]:
        def package(name: str) -> str:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                return "not installed"

        with self.engine.connect() as conn:
            postgres = str(conn.execute(text("SHOW server_version")).scalar())
        return {
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "sqlmodel-cache": package("sqlmodel-cache"),
            "sqlalchemy": package("sqlalchemy"),
            "sqlmodel": package("sqlmodel"),
            "redis-py": package("redis"),
            "hiredis": package("hiredis"),
            "msgpack": package("msgpack"),
            "psycopg": package("psycopg"),
            "asyncpg": package("asyncpg"),
            "redis-server": str(self.client.info("server")["redis_version"]),
            "postgresql": postgres,
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs",
        }

    # the whole run

    def run(self) -> dict[str, Any]:
        from sqlmodel_cache import SQLModelCache

        try:
            self.load_table()
            self.configure_sync()
            try:
                self.fill_read_rows(self.client)
                self.run_sync()
            finally:
                SQLModelCache.reset()
            asyncio.run(self.run_async())
            self.run_cluster()
            memory = self.memory()
            versions = self.versions()
        finally:
            self.engine.dispose()
            self.client.close()
        cluster = self.cluster_summary()
        self.notes.append(self.many_note())
        return {
            "versions": versions,
            "cases": self.case_table(),
            "throughput": {name: rate.summary() for name, rate in self.rates.items()},
            "throughput_ratio_hit_to_floor": self.rates["async_hit_x50"].median / self.rates["async_floor_x50"].median,
            "memory": memory,
            "targets": self.targets(),
            "cluster": cluster,
            "notes": self.notes,
        }

    def case_table(self) -> dict[str, dict[str, Any]]:
        table = {}
        for name, series in self.series.items():
            phase = next((p for p in ("async_", "cluster_") if name.startswith(p)), "")
            summary = series.summary()
            summary["ratio_to_floor"] = series.median_us / self.series[f"{phase}floor"].median_us
            plain = "async_plain_get" if phase == "async_" else "plain_get"
            summary["ratio_to_plain"] = series.median_us / self.series[plain].median_us
            table[name] = summary
        return table

    def ratio(
        self, numerator: str, denominator: str, rtt: str | None = None, rtts: int = 2
    ) -> tuple[list[float], float]:
        """The ratio within each round, and the ratio of the medians over all samples.

        With ``rtt``, the denominator is ``denominator + rtts x rtt``.
        """
        top, bottom = self.series[numerator], self.series[denominator]
        extra = self.series[rtt] if rtt is not None else None
        pooled = bottom.median_us + (rtts * extra.median_us if extra is not None else 0.0)
        per_round = [
            t / (b + (rtts * extra.round_medians[i] if extra is not None else 0.0))
            for i, (t, b) in enumerate(zip(top.round_medians, bottom.round_medians, strict=True))
        ]
        return per_round, top.median_us / pooled

    def targets(self) -> list[dict[str, Any]]:
        ratio = self.ratio
        targets = []
        for prefix, label in (("", ""), ("async_", "async ")):
            targets.append(
                target(f"{label}hit <= {HIT_LIMIT} x floor", *ratio(f"{prefix}hit", f"{prefix}floor"), HIT_LIMIT)
            )
            targets.append(
                target(
                    f"{label}miss <= (plain_get + 2 rtt) x {MISS_MARGIN}",
                    *ratio(f"{prefix}miss", f"{prefix}plain_get", rtt=f"{prefix}rtt"),
                    MISS_MARGIN,
                )
            )
        targets.append(
            target("rmw_cached <= rmw_plain", *ratio("rmw_cached", "rmw_plain"), 1.0, tolerance=RMW_TOLERANCE)
        )
        targets.append(
            target(
                "plain_get_configured ~ plain_get_unimported",
                *ratio("plain_get_configured", "plain_get_unimported"),
                1.0,
                tolerance=PLAIN_TOLERANCE,
                two_sided=True,
            )
        )
        targets.append(
            target(f"many_hit <= {MANY_HIT_LIMIT:g} x hit", *ratio("many_hit", "hit_with_many"), MANY_HIT_LIMIT)
        )
        targets.append(
            target(
                f"many_miss <= plain_select_in + {MANY_MISS_RTTS} rtt",
                *ratio("many_miss", "plain_select_in", rtt="rtt_with_many", rtts=MANY_MISS_RTTS),
                1.0,
                tolerance=MANY_MISS_TOLERANCE,
            )
        )
        targets.append(
            target(
                "cluster_hit <= hit (single server)",
                *ratio("cluster_hit", "hit_with_cluster"),
                1.0,
                tolerance=CLUSTER_TOLERANCE,
            )
        )
        return targets

    def many_note(self) -> str:
        """What one more cached row costs get_many(), against what the raw read of it costs."""
        per_row = (self.series["many_hit"].median_us - self.series["hit_with_many"].median_us) / (MANY - 1)
        floor_per_row = (self.series["many_floor"].median_us - self.series["floor"].median_us) / (MANY - 1)
        many_to_floor = statistics.median(self.ratio("many_hit", "many_floor")[0])
        return (
            f"get_many() of cached rows: {per_row:.1f} µs a row beyond one hit (the raw MGET + unpack: "
            f"{floor_per_row:.1f} µs a row beyond one GET + unpack); many_hit / many_floor {many_to_floor:.2f}"
        )

    def cluster_summary(self) -> dict[str, float]:
        """The cluster's hit against its own floor, and against the single server's, in one phase."""
        in_cluster = statistics.median(self.ratio("cluster_hit", "cluster_floor")[0])
        single = statistics.median(self.ratio("hit_with_cluster", "floor_with_cluster")[0])
        client = statistics.median(self.ratio("cluster_floor", "floor_with_cluster")[0])
        to_single = statistics.median(self.ratio("cluster_hit", "hit_with_cluster")[0])
        self.notes.append(
            f"cluster ({CLUSTER_MASTERS} masters, its own phase after the others, every case interleaved):"
            f" cluster_hit / hit_with_cluster {to_single:.2f}; cluster_hit / cluster_floor {in_cluster:.2f} vs"
            f" hit_with_cluster / floor_with_cluster {single:.2f}; the cluster client alone: cluster_floor /"
            f" floor_with_cluster {client:.2f}"
        )
        return {
            "masters": CLUSTER_MASTERS,
            "hit_to_floor": in_cluster,
            "single_server_hit_to_floor": single,
            "floor_to_single_server_floor": client,
            "hit_to_single_server_hit": to_single,
        }


def target(
    name: str,
    per_round: list[float],
    of_medians: float,
    limit: float,
    tolerance: float = 0.0,
    two_sided: bool = False,
) -> dict[str, Any]:
    """A verdict on the median of the per-round ratios: cases of one round ran close in time."""
    measured = statistics.median(per_round)
    if two_sided:
        verdict = "PASS" if abs(measured - limit) <= tolerance else "FAIL"
    elif measured <= limit:
        verdict = "PASS"
    elif measured <= limit + tolerance:
        verdict = f"PASS (within the +{tolerance:.0%} noise tolerance)"
    else:
        verdict = "FAIL"
    return {
        "target": name,
        "measured": measured,
        "per_round": per_round,
        "ratio_of_medians": of_medians,
        "limit": limit,
        "tolerance": tolerance,
        "two_sided": two_sided,
        "verdict": verdict,
    }


# --- output ----------------------------------------------------------------------------


def render(report: dict[str, Any]) -> str:
    lines = [
        f"sqlmodel-cache benchmark, {report['date']}",
        f"command: {report['command']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "settings: "
        + ", ".join(f"{k}={v}" for k, v in report["settings"].items())
        + " (median of all samples; 'rounds' is the spread of the per-round medians)",
        "",
        f"{'case':<22}{'median µs':>11}{'rounds µs':>17}{'x floor':>9}{'x plain':>9}  what",
    ]
    for name, case in report["cases"].items():
        low, high = min(case["round_medians_us"]), max(case["round_medians_us"])
        lines.append(
            f"{name:<22}{case['median_us']:>11.1f}{f'{low:.1f}-{high:.1f}':>17}"
            f"{case['ratio_to_floor']:>9.2f}{case['ratio_to_plain']:>9.2f}  {case['what']}"
        )
    lines += ["", f"{'target':<44}{'measured':>9}{'rounds':>13}{'limit':>10}  verdict"]
    for t in report["targets"]:
        spread = f"{min(t['per_round']):.2f}-{max(t['per_round']):.2f}"
        limit = f"{t['limit']:.2f}" + (f"±{t['tolerance']:.0%}" if t["two_sided"] else "")
        lines.append(f"{t['target']:<44}{t['measured']:>8.2f}x{spread:>13}{limit:>10}  {t['verdict']}")
    lines += ["", "throughput (median over rounds):"]
    for name, rate in report["throughput"].items():
        lines.append(f"  {name:<20}{rate['median_ops_per_s']:>10.0f} ops/s  {rate['what']}")
    lines.append(f"  hit / floor throughput: {report['throughput_ratio_hit_to_floor']:.2f}")
    mem = report["memory"]
    lines += [
        "",
        f"memory per entry (median of {mem['sampled_keys']} keys): MEMORY USAGE {mem['entry_memory_usage_bytes']} B"
        f" vs value {mem['entry_value_bytes']} B + key {mem['entry_key_bytes']} B"
        f" = {mem['ratio_to_value_plus_key']:.2f}x (overhead {mem['overhead_bytes']} B);"
        f" a plain msgpack array of the row is {mem['plain_row_msgpack_bytes']} B",
        "",
        *(f"note: {note}" for note in report["notes"]),
        f"elapsed: {report['elapsed_s']:.1f} s",
    ]
    return "\n".join(lines)


# --- entry point -----------------------------------------------------------------------


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
        report = Benchmark(settings, redis_proc.port, postgres_proc, redis_proc.process.pid).run()
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
