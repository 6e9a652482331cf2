"""The herd phase: 32 threads miss one cold row at once, behind a barrier.

Per herd: how many SELECTs of the row it cost, and each reader's latency; for a plain
``Session``, for ``CachedSession`` as configured (single flight: readers that find another's
lease wait for its fill) and for ``CachedSession`` with ``lease_wait=0`` (each reads the
database itself, as before single flight).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from benchmarks.common import BenchmarkError, progress
from benchmarks.workload import TABLE, Workload

HERD = 32
VARIANTS = {
    "plain": "Session.get, no cache",
    "single_flight": "CachedSession.get, the row just evicted (lease_wait=0.1, the default)",
    "no_wait": "CachedSession.get, the row just evicted, lease_wait=0",
}


class Selects:
    """The SELECTs of the benchmark table an engine runs, while entered."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine, self.count, self.lock = engine, 0, threading.Lock()

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and TABLE in statement:
            with self.lock:
                self.count += 1

    def __enter__(self) -> Selects:
        sa.event.listen(self.engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self)


def one_herd(workload: Workload, session_class: type[Session]) -> tuple[int, list[float]]:
    """``HERD`` threads behind a barrier, each a new session's get() of the herd row: the
    SELECTs it cost and each reader's latency in µs."""
    engine, model, pk = workload.engine, workload.model, workload.herd_pk
    barrier = threading.Barrier(HERD)
    took: list[float] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            barrier.wait()
            start = time.perf_counter_ns()
            with session_class(engine) as session:
                if session.get(model, pk) is None:
                    raise BenchmarkError("the herd row is missing")
            took.append((time.perf_counter_ns() - start) / 1000)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=read) for _ in range(HERD)]
    with Selects(engine) as selects:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    if failures:
        raise BenchmarkError(f"a herd reader failed: {failures[0]!r}")
    return selects.count, took


def run_herd(workload: Workload, rounds: int) -> dict[str, Any]:
    """``rounds`` herds per variant, the variants in turn each round; the row evicted before each."""
    from sqlmodel_cache import CachedSession, SQLModelCache
    from sqlmodel_cache.transport import RedisSyncTransport

    transport = RedisSyncTransport(workload.client)
    figures: dict[str, dict[str, list[Any]]] = {name: {"selects": [], "latency_us": []} for name in VARIANTS}
    progress(f"herd: {rounds} rounds of {HERD} threads per variant")
    try:
        for _ in range(rounds):
            for name in VARIANTS:
                SQLModelCache.reset()
                SQLModelCache.configure(transport=transport, lease_wait=0 if name == "no_wait" else 0.1)
                SQLModelCache.evict(workload.model, workload.herd_pk)
                selects, took = one_herd(workload, Session if name == "plain" else CachedSession)
                figures[name]["selects"].append(selects)
                figures[name]["latency_us"].extend(took)
    finally:
        SQLModelCache.reset()
        transport.close()
    return {
        name: {
            "what": VARIANTS[name],
            "readers": HERD,
            "selects_per_herd": figures[name]["selects"],
            "median_selects": statistics.median(figures[name]["selects"]),
            "max_selects": max(figures[name]["selects"]),
            "median_latency_us": statistics.median(figures[name]["latency_us"]),
            "max_latency_us": max(figures[name]["latency_us"]),
        }
        for name in VARIANTS
    }
