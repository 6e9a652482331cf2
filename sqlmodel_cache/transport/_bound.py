"""The bound of one asyncio exchange with Redis, measured in the time the event loop had.

A timer that the loop runs a whole bound late measured the loop, not Redis: the loop was
busy elsewhere (the application's own work, a loaded machine) and the reply is most likely
waiting in the socket already, read by the loop's next turn. Cutting the exchange there
would make a busy process query its database more, exactly when it can least afford it. So
such a timer is moved on by one bound, once; a timer that is on time cuts the exchange
(Redis did not answer), and one that is late again raises `LoopLate`, which breakers do not
count.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

from ._guard import LoopLate

if sys.version_info >= (3, 11):
    from asyncio import timeout as _deadline_scope
else:  # pragma: no cover - Python 3.10

    class _Scope:
        """What `asyncio.timeout` (3.11) does for this module: cut the task, report a timeout.
        (async-timeout cannot be rescheduled from a timer: it looks for the task there.)"""

        async def __aenter__(self) -> _Scope:
            self.task = asyncio.current_task()
            self.expired = False
            return self

        async def __aexit__(self, kind: type[BaseException] | None, *_: object) -> None:
            if kind is asyncio.CancelledError and self.expired:
                raise asyncio.TimeoutError

        def reschedule(self, when: float) -> None:
            self.expired = True
            assert self.task is not None
            self.task.cancel()

    def _deadline_scope(_: None) -> _Scope:
        return _Scope()


__all__ = ["bounded"]

T = TypeVar("T")


class _Timer:
    """Cuts its exchange at the bound, unless the loop ran it a bound late (then once more)."""

    __slots__ = ("due", "handle", "late", "loop", "moved", "scope", "seconds")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, scope: Any) -> None:
        self.loop, self.seconds, self.scope = loop, seconds, scope
        self.moved = self.late = False
        self.due = loop.time() + seconds
        self.handle = loop.call_at(self.due, self.fire)

    def fire(self) -> None:
        now = self.loop.time()
        self.late = now - self.due > self.seconds
        if self.late and not self.moved:
            self.moved = True
            self.due = now + self.seconds
            self.handle = self.loop.call_at(self.due, self.fire)
            return
        self.scope.reschedule(now)


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    """``awaitable`` within ``seconds`` of the loop's time; `LoopLate` when the loop ran the
    timer a bound late twice, ``TimeoutError`` when Redis did not answer."""
    timer: _Timer | None = None
    try:
        async with _deadline_scope(None) as scope:
            timer = _Timer(asyncio.get_running_loop(), seconds, scope)
            try:
                return await awaitable
            finally:
                timer.handle.cancel()
    except (TimeoutError, asyncio.TimeoutError) as error:
        if timer is not None and timer.late:
            raise LoopLate(
                f"the event loop ran the transport's timer {seconds * 1000:.0f} ms late twice in a row"
            ) from error
        raise
