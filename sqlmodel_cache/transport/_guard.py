"""The error guard: owns the breakers, the cluster routing of breakers, and the one place
where a client error becomes a `TransportError` (httpx's ``map_httpcore_exceptions``).

Every transport call runs inside ``with guard.call(operation, key):``. On a single server one
breaker guards every call. On a cluster each node has its own for the single-key calls, so a
dead master only sends its own keys to the database; multi-key calls, which span nodes, use
the transport-wide one.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Final

from redis.exceptions import AskError, ClusterDownError, MovedError, RedisError, TryAgainError

from sqlmodel_cache._errors import CircuitOpen, TransportError

from ._breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker

__all__ = ["CLIENT_FAILURES", "REDIRECTS", "Guard", "GuardedCall", "LoopLate"]

# What a Redis client raises when Redis cannot serve a call (asyncio.TimeoutError is the
# builtin TimeoutError only from Python 3.11 on).
CLIENT_FAILURES: Final = (RedisError, TimeoutError, asyncio.TimeoutError, OSError)


# Replies that say the key is served elsewhere now: the layout changed, the node is fine.
REDIRECTS: Final = (MovedError, AskError, TryAgainError, ClusterDownError)


class LoopLate(TimeoutError):
    """An asyncio call cut by its timer when the event loop ran that timer a whole bound late:
    the application's own work (or a loaded machine) kept the loop busy, not Redis. A miss,
    but no failure of Redis: a breaker that opened on it would switch the cache off exactly
    when the load is highest."""


# Failures that say nothing about the server's health.
_NOT_THE_SERVER: Final = (*REDIRECTS, LoopLate)


def _describe(error: BaseException) -> str:
    """The error and its cause: a bare ``TimeoutError`` says nothing of what timed out."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    cause = error.__cause__ or error.__context__
    if isinstance(error, TimeoutError) and not str(error):
        text += f" (no answer within the transport's timeout{f'; {cause!r}' if cause else ''})"
    return text


# Operations a breaker never holds back: they keep the cache correct, not fast.
_ALWAYS_SENT: Final = frozenset({"delete", "purge"})


class GuardedCall:
    """One call: a clean exit closes the breaker; a client failure counts against it and
    leaves as `TransportError`, chained to its cause."""

    __slots__ = ("began", "breaker", "node", "operation", "router", "vouched")

    def __init__(self, breaker: CircuitBreaker, node: Any, operation: str, router: Any) -> None:
        self.breaker = breaker
        self.node = node  # the cluster node that serves the key, if known
        self.operation = operation
        self.router = router
        self.began = time.monotonic()  # a call of several steps may set it to its first one's
        # After a clean exit: may its reads be served (see `CircuitBreaker.answered`)?
        self.vouched = False

    def __enter__(self) -> GuardedCall:
        return self

    @property
    def trusted(self) -> bool:
        """May what this (finished) call read be served? Only a lookup's answer must vouch
        for what ran before it; a fill's or an eviction's reply says only what it did."""
        return self.vouched or self.operation != "lookup"

    def lifetime(self, epoch: bytes | None, value: Any) -> bytes | None:
        """The server lifetime to give with a value this (finished) call read: none, so that no
        reader serves it, when it is not `trusted`. An empty key keeps it: the lease taken
        there is settled by compare-and-set, whatever ran before."""
        return epoch if self.trusted or value is None else None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if error is None:
            self.vouched = self.breaker.answered(self.began)
            self.breaker.success()
        elif isinstance(error, CLIENT_FAILURES):
            if not isinstance(error, _NOT_THE_SERVER):  # a moved slot is the layout's news, not a failure
                self.breaker.failure()
            if self.router is not None and not isinstance(error, LoopLate):  # a failed master may be replaced
                self.router.stale()
            raise TransportError(f"Redis {self.operation} failed: {_describe(error)}") from error


class Guard:
    """The breakers of one transport and the error mapping of its calls."""

    def __init__(self, failure_threshold: int, cooldown: float, router: Any = None) -> None:
        self.breaker = CircuitBreaker(failure_threshold, cooldown)
        self._router = router
        self._node_breakers: dict[str, CircuitBreaker] = {}

    def call(self, operation: str, key: str | None = None) -> GuardedCall:
        """Guard one call (of ``key``, for a single-key call); `CircuitOpen` if the breaker is open.

        Evictions are always sent, open breaker or not: one that reaches a paused server still
        runs before the reads that other processes send after the commit, and one not sent
        at all would leave those reads a stale row.
        """
        node = self.node_of(key) if key is not None else None
        breaker = self._breaker_for(key, node)
        if not breaker.allow() and operation not in _ALWAYS_SENT:
            raise CircuitOpen(f"Redis {operation} skipped: the circuit is open after repeated failures")
        return GuardedCall(breaker, node, operation, self._router)

    def node_of(self, key: str) -> Any:
        """The cluster master that serves ``key`` (``None`` on one server, or while unknown)."""
        return self._router.node_of(key) if self._router is not None else None

    def _breaker_for(self, key: str | None, node: Any) -> CircuitBreaker:
        if self._router is None or key is None:
            return self.breaker
        # An unknown node gets a breaker of its own: its failures never stop the calls to
        # the nodes that answer.
        name = node.name if node is not None else "?"
        breaker = self._node_breakers.get(name)
        if breaker is None:
            breaker = self._node_breakers.setdefault(
                name, CircuitBreaker(self.breaker.failure_threshold, self.breaker.cooldown)
            )
        return breaker

    def all_closed(self) -> bool:
        """Is every breaker closed (none open, none probing)?"""
        if self.breaker.state != CLOSED:
            return False
        return not self._node_breakers or all(b.state == CLOSED for b in self._node_breakers.values())

    @property
    def state(self) -> str:
        """ "open" if the transport-wide breaker or any node's is open, else its state."""
        states = [self.breaker.state, *(b.state for b in self._node_breakers.values())]
        return next((s for s in (OPEN, HALF_OPEN) if s in states), CLOSED)

    @property
    def trips(self) -> int:
        return self.breaker.trips + sum(b.trips for b in self._node_breakers.values())
