"""Sending evictions, and keeping the ones that could not be sent.

Both sessions evict through `evict()`; they differ only in how the transport call is
made (directly, or awaited from SQLAlchemy's greenlet for the async session).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ._config import current_settings
from ._core import unsent_evictions
from ._errors import TransportError
from ._stats import counters, logger, warn_redis_failure

__all__ = ["evict", "send_unsent_evictions"]

T = TypeVar("T")


def evict(keys: list[str], transport_type: type[T], deliver: Callable[[T, list[str]], None]) -> None:
    """Delete ``keys`` now; if Redis fails, keep them for the retry before the next read."""
    settings = current_settings()
    if settings is None:
        unsent_evictions.add(keys)
        return
    transport = settings.transport
    if not isinstance(transport, transport_type):
        logger.error(
            "cannot evict %d keys: this session needs a %s, but SQLModelCache is configured with a %s",
            len(keys),
            transport_type.__name__,
            type(transport).__name__,
        )
        unsent_evictions.add(keys)
        return
    try:
        deliver(transport, keys)
    except TransportError as exc:
        counters.invalidations_failed += 1
        unsent_evictions.add(keys)
        warn_redis_failure("eviction", exc)
        return
    counters.invalidations += len(keys)
    logger.debug("evicted %d keys", len(keys))


def unsent_batch() -> list[str]:
    return unsent_evictions.take()


def unsent_sent(keys: list[str]) -> None:
    unsent_evictions.done(keys)
    counters.invalidations += len(keys)


def unsent_failed(exc: TransportError) -> None:
    warn_redis_failure("eviction retry", exc)


def send_unsent_evictions(transport: T, deliver: Callable[[T, list[str]], None]) -> None:
    """Retry evictions that failed earlier; the keys stay unreadable until this succeeds."""
    keys = unsent_batch()
    try:
        deliver(transport, keys)
    except TransportError as exc:
        unsent_failed(exc)
    else:
        unsent_sent(keys)
