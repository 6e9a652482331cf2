"""The near cache: owns the decoded entries kept in process memory in front of Redis
(``CacheConfig(near=True)``), and the rule that keeps them no older than Redis's own.

Redis tells the process of every change to a key under the prefix (client tracking, see
`transport._tracking`); each message is applied here as it is read. An entry read from Redis
is kept only if no change of its key was applied since its read was sent: a change that
reached the process during the read wins over the value the read brought back. Anything
that may have hidden a change (the tracking connection lost, the breaker open, no sign of
life from Redis lately) drops every entry, and nothing is kept until tracking is back.

Nothing here does I/O: `Tracking.current` (the transport's) reads what has reached the
process before an entry is served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

from ._stats import CacheStats

__all__ = ["NearCache", "Tracking"]


class Tracking(Protocol):
    """The transport's side: the invalidations of the keys under the prefix, as they come."""

    def current(self) -> bool:
        """Apply every invalidation that has reached the process; whether tracking is live
        (connected, heard from lately, breaker closed), so that entries may be served."""
        ...

    def close(self) -> None: ...


# Invalidations remembered by key, for the reads in flight: past this many the oldest are
# forgotten, and reads that began before them keep nothing.
_REMEMBERED = 10_000


class NearCache:
    """At most ``size`` decoded entries by key, least recently used out first."""

    def __init__(self, size: int, counters: CacheStats) -> None:
        self.size = size
        self.counters = counters
        self.tracking: Tracking | None = None  # started by the first near model's read
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        # Every applied invalidation (and drop) moves the generation; a read keeps its value
        # only if its key's last invalidation is not newer than the read's start.
        self._generation = 0
        self._invalidated: dict[str, int] = {}
        self._forgotten_before = 0  # reads that started before this generation keep nothing

    # What the transport's tracking does --------------------------------------------------

    def invalidate(self, keys: Iterable[str] | None) -> None:
        """Keys changed in Redis (``None``: all of them, as after a FLUSHALL)."""
        with self._lock:
            if keys is None:
                self._drop()
                return
            self._generation += 1
            generation, entries, invalidated = self._generation, self._entries, self._invalidated
            dropped = 0
            for key in keys:
                if entries.pop(key, None) is not None:
                    dropped += 1
                invalidated[key] = generation
            if len(invalidated) > _REMEMBERED:
                invalidated.clear()
                self._forgotten_before = generation
            self.counters.near_invalidations += dropped

    def drop(self) -> None:
        """Forget every entry: tracking was lost, or may have missed a change."""
        with self._lock:
            self._drop()

    def after_fork(self) -> None:
        """In a forked child: nothing of the parent's is known current, and its lock may have
        been held by a thread that does not exist here."""
        self._lock = threading.Lock()
        self._drop()

    def _drop(self) -> None:
        self._generation += 1
        self.counters.near_invalidations += len(self._entries)
        self._entries.clear()
        self._invalidated.clear()
        self._forgotten_before = self._generation

    # What a read does ---------------------------------------------------------------------

    def get(self, key: str) -> Any:
        """The decoded entry kept for ``key`` (column values, or the no-row mark), or ``None``;
        the caller has made the tracking current first."""
        entries = self._entries
        value = entries.get(key)
        if value is not None:
            try:  # noqa: SIM105  (a try costs nothing here; suppress() costs a call)
                entries.move_to_end(key)
            except KeyError:  # invalidated by another thread meanwhile: served as it was read
                pass
        return value

    def started(self) -> int:
        """A read of Redis is about to be sent: its start, for `keep`."""
        return self._generation

    def keep(self, key: str, value: Any, started: int) -> None:
        """Keep what a read that began at ``started`` found at ``key``, unless a change of the
        key (or a drop) was applied since; the caller has made the tracking current first."""
        with self._lock:
            if started < self._forgotten_before or self._invalidated.get(key, -1) > started:
                return
            entries = self._entries
            entries[key] = value
            entries.move_to_end(key)
            if len(entries) > self.size:
                entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
