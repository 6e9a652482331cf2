"""Sending evictions, and keeping the ones that could not be sent.

The bookkeeping (counters, the kept keys, the warning) is shared; the sync and async
callers differ only in how they make the transport call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ._config import current_settings
from ._core import unsent_evictions
from ._errors import TransportError
from ._stats import counters, logger, warn_redis_failure
from .transport import RedisSyncTransport

__all__ = ["evict", "evicted", "eviction_failed", "send_unsent_evictions"]

T = TypeVar("T")


def evicted(keys: list[str], purged: list[str] | None = None) -> None:
    if purged is not None:  # a retry of kept evictions
        unsent_evictions.done(keys, purged)
    counters.invalidations += len(keys)
    logger.debug("evicted %d keys", len(keys))


def eviction_failed(keys: list[str], exc: TransportError, retry: bool = False) -> None:
    """Keep ``keys``: they are retried, and not read, until an eviction gets through."""
    if not retry:
        counters.invalidations_failed += 1
        unsent_evictions.add(keys)
    warn_redis_failure("eviction retry" if retry else "eviction", exc)


def evict(keys: list[str], transport_type: type[T], deliver: Callable[[T, list[str]], None]) -> None:
    """Delete ``keys`` with the configured transport, which must be a ``transport_type``."""
    settings = current_settings()
    transport = settings.transport if settings is not None else None
    if not isinstance(transport, transport_type):
        logger.error(
            "cannot evict %d keys now: this session needs a configured %s; they are kept for later",
            len(keys),
            transport_type.__name__,
        )
        unsent_evictions.add(keys)
        return
    try:
        deliver(transport, keys)
    except TransportError as exc:
        eviction_failed(keys, exc)
    else:
        evicted(keys)


def send_unsent_evictions(transport: RedisSyncTransport) -> None:
    """Retry evictions that failed earlier; their keys stay unreadable until this succeeds."""
    keys, prefixes = unsent_evictions.take()
    try:
        for prefix in prefixes:
            transport.purge(prefix)
        transport.delete_many(keys)
    except TransportError as exc:
        eviction_failed(keys, exc, retry=True)
    else:
        evicted(keys, prefixes)
