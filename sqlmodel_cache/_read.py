"""One cached read, step by step, with every decision taken here and the I/O left to the
session: ``prepare_read`` → (lookup or peek) → ``hit`` → (database) → ``fill_value`` →
(fill) → ``filled``. The sync and async sessions run exactly these steps.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ._core import Lookup, decode_hit, fill_value, is_lease, unsent_evictions
from ._snapshot import connection_is_fresh
from ._stats import counters, logger, warn_redis_failure
from ._tracking import peek_write_log

__all__ = ["ReadPlan", "prepare_read"]


class ReadPlan:
    """A cache-eligible read that goes to Redis, and what it may do with the answer."""

    __slots__ = ("_no_fill_reason", "lookup", "needs_connection_check", "takes_lease")

    def __init__(self, lookup: Lookup, no_fill_reason: str | None, needs_connection_check: bool) -> None:
        self.lookup = lookup
        # A reader that may not publish only peeks: it never holds a lease that would
        # keep other readers from filling.
        self.takes_lease = no_fill_reason is None
        self._no_fill_reason = no_fill_reason
        # Inside an open transaction the snapshot rule needs the session's connection,
        # which only the session can get (awaiting it, for the async one).
        self.needs_connection_check = needs_connection_check and no_fill_reason is None

    def check_connection(self, conn: Connection) -> None:
        """Apply the snapshot rule to the connection the SELECT will run on."""
        self.needs_connection_check = False
        if not connection_is_fresh(conn):
            self.takes_lease = False
            self._no_fill_reason = "snapshot"

    def redis_failed(self, operation: str, error: Exception) -> None:
        warn_redis_failure(operation, error)
        if operation == "lookup":
            counters.misses += 1

    def hit(self, raw: bytes | None) -> list[Any] | None:
        """Column values if ``raw`` is a usable entry; otherwise the read goes to the database."""
        if raw is None:
            counters.misses += 1
            return None
        if is_lease(raw):
            counters.misses += 1
            self._no_fill_reason = "lease_busy"
            return None
        values = decode_hit(self.lookup, raw)
        if values is not None:
            logger.debug("hit %s", self.lookup.key)
        else:
            self._no_fill_reason = "corrupt"
        return values

    def fill_value(self, session: Session, instance: Any) -> bytes | None:
        """The entry to publish for the row the database returned, or ``None`` not to."""
        if instance is None:
            return None
        reason = self._no_fill_reason
        if reason is None and not self.takes_lease:
            reason = "lease_busy"
        if reason is None:
            log = peek_write_log(session)
            if log is not None and log.has_writes:  # the load itself autoflushed
                reason = "own_writes"
        if reason is not None:
            count_skipped(reason)
            return None
        return fill_value(self.lookup.info, self.lookup.pk_part, instance.__dict__)

    def filled(self, published: bool) -> None:
        if published:
            counters.fills += 1
            logger.debug("filled %s", self.lookup.key)
        else:
            counters.fills_skipped_lease_lost += 1


def count_skipped(reason: str) -> None:
    if reason == "own_writes":
        counters.fills_skipped_own_writes += 1
    elif reason == "snapshot":
        counters.fills_skipped_snapshot += 1
    elif reason == "lease_busy":
        counters.fills_skipped_lease_busy += 1


def prepare_read(session: Session, lookup: Lookup) -> ReadPlan | None:
    """How to read ``lookup`` through the cache, or ``None`` to read only the database."""
    log = peek_write_log(session)
    if log is not None and (lookup.key in log.written_keys or lookup.info.cls in log.bulk_changed):
        counters.fills_skipped_own_writes += 1
        return None  # this transaction changed the row: only the database has it
    if lookup.info.mapper.identity_key_from_primary_key(tuple(lookup.pk)) in session.identity_map:
        return None  # Session.get answers from the identity map, as without the cache
    if lookup.key in unsent_evictions:
        return None
    if log is not None and log.has_writes:
        return ReadPlan(lookup, "own_writes", needs_connection_check=False)
    # Without a transaction the SELECT begins one, so its snapshot follows the lease.
    return ReadPlan(lookup, None, needs_connection_check=session.get_transaction() is not None)
