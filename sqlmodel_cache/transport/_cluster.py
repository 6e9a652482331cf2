"""Cluster pipelines: owns how multi-key calls are queued where one command cannot span
slots (MGET, scripts): one command per key on a pipeline, one round trip per node. The sync
and asyncio cluster pipelines take the same queueing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel_cache import _lease
from sqlmodel_cache._lease import Settlement

__all__ = ["queue_lookups", "queue_peeks", "queue_settlements"]


def queue_lookups(pipe: Any, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> None:
    """Queue lookups on a sync or asyncio cluster pipeline (a script cannot span slots)."""
    for key, lease in zip(keys, leases, strict=True):
        _, *arguments = _lease.lookup_command(key.encode(), lease, lease_ms)
        pipe.execute_command("SET", *arguments, get=True)  # the client routes by a str name


def queue_peeks(pipe: Any, keys: Sequence[str]) -> None:
    """Queue peeks on a sync or asyncio cluster pipeline (MGET cannot span slots)."""
    for key in keys:
        pipe.get(key)


def queue_settlements(pipe: Any, settlements: Sequence[Settlement]) -> None:
    """Queue settlements on a sync or asyncio cluster pipeline, which cannot load scripts:
    each sends the small script's source."""
    for key, lease, value, ttl_ms in settlements:
        pipe.execute_command("EVAL", _lease.SETTLE, *_lease.settle_arguments(key.encode(), lease, value, ttl_ms))
