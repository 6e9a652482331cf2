"""Observability: owns the counters (`CacheStats`), the reasons a fill is skipped, and the
rate-limited WARNING for Redis failures, all under the ``sqlmodel_cache`` logger.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass, fields
from typing import Final

from ._errors import CircuitOpen

__all__ = ["CacheStats", "FailureLog", "ModelCounts", "Notices", "PerModelCounts", "Skip", "logger"]

logger: Final = logging.getLogger("sqlmodel_cache")

# One WARNING per kind of failure per window: a Redis outage must not flood the logs.
WARNING_INTERVAL_S: Final = 10.0


class Skip(enum.Enum):
    """Why a row read from the database was not published; each value names its counter."""

    LEASE_LOST = "fills_skipped_lease_lost"  # an eviction (or another reader) took the key meanwhile
    LEASE_BUSY = "fills_skipped_lease_busy"  # another reader holds the key's lease
    SNAPSHOT = "fills_skipped_snapshot"  # the SELECT may have read an older snapshot
    OWN_WRITES = "fills_skipped_own_writes"  # this transaction wrote: nothing it reads is published
    UNSTORABLE = "fills_skipped_unstorable"  # a value the entry format cannot hold


@dataclass(slots=True)
class CacheStats:
    """What the cache did since ``SQLModelCache.configure()``.

    Updated without locks, to keep them off the hot path: under many threads a rare
    increment may be lost.
    """

    hits: int = 0
    # Lookups answered "no such row" by a negative entry (``CacheConfig(negative_ttl=...)``).
    negative_hits: int = 0
    misses: int = 0
    # Readers that found another reader filling their row and waited for it, and of those,
    # the ones served by that fill (``configure(lease_wait=...)``).
    lease_waits: int = 0
    lease_wait_hits: int = 0
    # Lookups answered from process memory (``CacheConfig(near=True)``): no Redis call, no
    # SQL; and near entries dropped because Redis said their key changed (or tracking was lost).
    near_hits: int = 0
    near_invalidations: int = 0
    # Lookups the cache could not take (a key it cannot name): each went to the database.
    uncacheable: int = 0
    fills: int = 0
    fills_skipped_lease_lost: int = 0
    fills_skipped_lease_busy: int = 0
    fills_skipped_snapshot: int = 0
    fills_skipped_own_writes: int = 0
    fills_skipped_unstorable: int = 0
    corrupt_entries: int = 0
    # Entries stored by another Redis server lifetime (before a restart, failover or restore).
    other_lifetime_entries: int = 0
    invalidations: int = 0
    invalidations_failed: int = 0
    redis_errors: int = 0
    # Redis calls not made because the circuit breaker was open.
    breaker_skips: int = 0
    # Keys whose eviction failed, kept to be retried (and not read from the cache meanwhile),
    # and whether the whole key prefix waits for a purge because too many were kept.
    evictions_pending: int = 0
    purge_pending: bool = False
    # The configured transport's circuit breaker: "closed", "open" or "half-open".
    breaker_state: str = "closed"
    breaker_trips: int = 0

    def skipped(self, reason: Skip, count: int = 1) -> None:
        setattr(self, reason.value, getattr(self, reason.value) + count)

    def copy(self) -> CacheStats:
        return CacheStats(**{f.name: getattr(self, f.name) for f in fields(self)})


@dataclass(slots=True)
class ModelCounts:
    """One model's share of the lookup counters of `CacheStats`."""

    hits: int = 0
    negative_hits: int = 0
    near_hits: int = 0
    misses: int = 0


class PerModelCounts:
    """The lookup counters by model class name, kept only while metrics are exported
    (`sqlmodel_cache.otel`): counting per model costs a dictionary look-up per lookup, which
    an uninstrumented process does not pay. Updated without locks, as `CacheStats` is.
    """

    __slots__ = ("_by_model",)

    def __init__(self) -> None:
        self._by_model: dict[str, ModelCounts] = {}

    def of(self, model: type) -> ModelCounts:
        counts = self._by_model.get(model.__name__)
        if counts is None:
            counts = self._by_model.setdefault(model.__name__, ModelCounts())
        return counts

    def by_model(self) -> dict[str, ModelCounts]:
        """The models counted so far (a copy of the mapping; the counts themselves are live)."""
        return self._by_model.copy()


class Notices:
    """WARNINGs that a burst would repeat: one per kind per window, DEBUG for the rest."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, kind: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < WARNING_INTERVAL_S:
                logger.debug(message, *args)
                return
            self._last[kind] = now
        logger.warning(message, *args)


class FailureLog:
    """Counts Redis failures and logs them: one WARNING per operation per window, else DEBUG."""

    def __init__(self, counters: CacheStats, notices: Notices) -> None:
        self._counters = counters
        self._notices = notices

    def failed(self, operation: str, error: BaseException) -> None:
        if isinstance(error, CircuitOpen):
            self._counters.breaker_skips += 1
            logger.debug("%s", error)
            return
        self._counters.redis_errors += 1
        self._notices.warn(f"redis {operation}", "Redis %s failed, serving from the database: %s", operation, error)
