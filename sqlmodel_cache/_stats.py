"""Counters and rate-limited warnings: what the cache did, readable at any time."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, fields
from typing import Final

__all__ = ["CacheStats", "counters", "logger", "warn_redis_failure"]

logger: Final = logging.getLogger("sqlmodel_cache")

# One WARNING per kind of failure per window: a Redis outage must not flood the logs.
WARNING_INTERVAL_S: Final = 10.0


@dataclass(slots=True)
class CacheStats:
    """Counts since start-up (or the last ``SQLModelCache.reset()``).

    Updated without locks, to keep them off the hot path: under many threads a rare
    increment may be lost.
    """

    hits: int = 0
    misses: int = 0
    fills: int = 0
    fills_skipped_lease_lost: int = 0
    fills_skipped_lease_busy: int = 0
    fills_skipped_snapshot: int = 0
    fills_skipped_own_writes: int = 0
    fills_skipped_unstorable: int = 0
    corrupt_entries: int = 0
    invalidations: int = 0
    invalidations_failed: int = 0
    redis_errors: int = 0
    # Redis calls not made because the circuit breaker was open.
    breaker_skips: int = 0
    # The configured transport's circuit breaker: "closed", "open" or "half-open".
    breaker_state: str = "closed"
    breaker_trips: int = 0

    def copy(self) -> CacheStats:
        return CacheStats(**{f.name: getattr(self, f.name) for f in fields(self)})

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, f.default)


counters: Final = CacheStats()

_last_warning: dict[str, float] = {}
_warning_lock = threading.Lock()


def warn_redis_failure(operation: str, error: BaseException) -> None:
    from ._errors import CircuitOpen

    if isinstance(error, CircuitOpen):
        counters.breaker_skips += 1
        logger.debug("%s", error)
        return
    counters.redis_errors += 1
    now = time.monotonic()
    with _warning_lock:
        last = _last_warning.get(operation)
        if last is not None and now - last < WARNING_INTERVAL_S:
            logger.debug("Redis %s failed again: %s", operation, error)
            return
        _last_warning[operation] = now
    logger.warning("Redis %s failed, serving from the database: %s", operation, error)


def reset_stats() -> None:
    counters.clear()
    with _warning_lock:
        _last_warning.clear()
