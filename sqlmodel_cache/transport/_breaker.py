"""The circuit breaker: owns when Redis is left alone. After repeated failures it stops
calling Redis for a cool-down, then lets one probe through and closes again on success.

It holds no I/O, so the sync and async transports use the same object; a lock guards
the state changes, and the closed fast path takes no lock.
"""

from __future__ import annotations

import threading
import time
from typing import Final

from sqlmodel_cache._stats import logger

__all__ = ["CircuitBreaker"]

CLOSED: Final = "closed"
OPEN: Final = "open"
HALF_OPEN: Final = "half-open"


class CircuitBreaker:
    def __init__(self, failure_threshold: int, cooldown: float) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self.state = CLOSED
        self.trips = 0
        self._failures = 0
        self._open_until = 0.0
        self._lock = threading.Lock()
        self._stalled = False  # a failure came since the last answer
        self._trusted_from = 0.0  # answers to calls begun before this vouch for nothing (see `answered`)

    @property
    def healthy(self) -> bool:
        """Closed, with no failure since the last success."""
        return self.state == CLOSED and not self._failures

    def allow(self) -> bool:
        """May a Redis call be made now?"""
        if self.state == CLOSED:
            return True
        with self._lock:
            now = time.monotonic()
            # One probe at a time; a probe that never reported back is replaced after a cool-down.
            if now >= self._open_until:
                self.state = HALF_OPEN
                self._open_until = now + self.cooldown
                return True
            return False

    def answered(self, began: float) -> bool:
        """A call begun at ``began`` was answered: does its reply show what Redis held after
        every command sent to it before the call began (another process's eviction)?

        Not after a failure. A stalled server (paused, or swamped) runs what waited on all
        its connections when it comes back, in an order between connections that nothing
        promises, and a commit may have given up on its eviction meanwhile: a reply to a call
        sent before the first answer that followed the failure may have been read before
        that eviction. Calls begun after that answer are read after everything that waited.
        """
        if self._stalled:
            self._stalled = False
            self._trusted_from = time.monotonic()
            return False
        return began >= self._trusted_from

    def success(self) -> None:
        if self._failures or self.state != CLOSED:
            with self._lock:
                if self.state != CLOSED:
                    logger.info("Redis answers again; the cache is back in use")
                self._failures = 0
                self.state = CLOSED

    def failure(self) -> None:
        with self._lock:
            self._stalled = True
            self._failures += 1
            if self.state == HALF_OPEN or self._failures >= self.failure_threshold:
                if self.state != OPEN:
                    self.trips += 1
                    logger.warning(
                        "Redis failed %d times in a row: not calling it for %.1f s, serving from the database",
                        self._failures,
                        self.cooldown,
                    )
                self.state = OPEN
                self._open_until = time.monotonic() + self.cooldown

    def reset(self) -> None:
        with self._lock:
            self._failures = 0
            self.state = CLOSED
