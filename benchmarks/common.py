"""What every part of the benchmark shares: its settings, limits and table."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

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
SyncGroup = Callable[[list[list[int]]], list[list[int]]]
AsyncGroup = Callable[[list[list[int]]], Awaitable[list[list[int]]]]


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
