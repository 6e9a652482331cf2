"""What every part of the benchmark shares: the shape of a run, its one error, its progress lines."""

from __future__ import annotations

import sys
from dataclasses import dataclass

# Tasks sharing one event loop in the async throughput cases.
CONCURRENCY = 50
# Near hits timed in a row as one operation: a near hit right after a blocking call (the
# floor's network wait) meets a CPU that has gone idle; in a row, one that is busy.
NEAR_BURST = 10
# Rows per get_many() call; the read rows must hold this many.
MANY = 100
# Masters of the cluster phase's Redis Cluster.
CLUSTER_MASTERS = 3


class BenchmarkError(RuntimeError):
    """The benchmark did not measure what it claims (e.g. a "hit" that was not a hit)."""


@dataclass(frozen=True)
class Settings:
    """How long and how large a run is: the command line's options, with their defaults applied."""

    rounds: int
    ops: int
    many_ops: int
    rows: int
    warmup_ops: int
    many_warmup_ops: int
    per_task: int
    gc_off: bool


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
