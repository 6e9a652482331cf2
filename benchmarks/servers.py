"""The processes a run measures against: the servers, their CPUs, and the child processes.

The children measure a plain ``Session.get`` with and without the library; each runs the
entry point in its ``--plain-worker`` mode, and so imports this module too: the servers'
launchers are imported only by the functions that start servers, and the library only by
the child that is to configure it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
from sqlmodel import Session, create_engine

from benchmarks.common import BenchmarkError
from benchmarks.timing import timed_block
from benchmarks.workload import define_model

if TYPE_CHECKING:
    from tests.servers import PostgresServer, RedisClusterServer, RedisServer

ENTRY = Path(__file__).resolve().parent / "bench.py"


@contextmanager
def servers() -> Iterator[tuple[RedisServer, PostgresServer]]:
    """A redis-server and a PostgreSQL for the whole run, stopped at its end."""
    from tests.servers import postgres_server, redis_server

    with redis_server() as redis_proc, postgres_server() as postgres_proc:
        yield redis_proc, postgres_proc


@contextmanager
def cluster_servers(masters: int) -> Iterator[RedisClusterServer]:
    """A Redis Cluster of ``masters`` masters, for the cluster phase only."""
    from tests.servers import redis_cluster

    with redis_cluster(masters) as cluster:
        yield cluster


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
        command = [sys.executable, str(ENTRY), "--plain-worker", url]
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
