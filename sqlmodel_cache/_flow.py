"""Flows: owns how the I/O-free policy talks to a session's I/O.

A flow is a generator that yields the I/O it needs and is sent back the answer: a `Redis`
step (a plain ``(transport method, arguments)`` tuple, the cheapest thing to make), or a
`Database` step, a function run on the (sync) session. The policy
writes each operation once, as a flow; `run` performs one with blocking I/O (or, inside
SQLAlchemy's greenlet, by awaiting the asyncio transport there) and `run_async` awaits it on
the event loop. A transport failure is thrown into the flow as `TransportError`, where the
policy turns it into a miss.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.util import await_only, greenlet_spawn  # importable without greenlet; only used with it
from sqlmodel import Session

from ._errors import TransportError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = ["Answered", "Database", "Flow", "Redis", "Sleep", "call_blocking", "call_in_greenlet", "run", "run_async"]

T = TypeVar("T")


# Call ``method(*arguments)`` of the configured transport.
Redis = tuple[Callable[..., Any], tuple[Any, ...]]


class Database:
    """Run ``function(session)`` on the sync session (the async session's ``sync_session``)."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[[Session], Any]) -> None:
        self.function = function


class Answered:
    """A read answered without I/O (a near entry): nothing to run."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Sleep:
    """Wait ``seconds`` (a thread sleeps, a task yields to its loop): a reader waiting for
    another reader's fill."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Flow = Generator["Redis | Database | Sleep", Any, T]


def call_blocking(step: Redis) -> Any:
    """A Redis step of a sync transport."""
    method, arguments = step
    return method(*arguments)


def call_in_greenlet(step: Redis) -> Any:
    """A Redis step of an asyncio transport, awaited from inside SQLAlchemy's greenlet."""
    method, arguments = step
    return await_only(method(*arguments))


def run(flow: Flow[T] | Answered, session: Session | None, call: Callable[[Redis], Any] = call_blocking) -> T:
    """Perform ``flow`` with blocking I/O; ``call`` makes its Redis calls."""
    if isinstance(flow, Answered):
        answer: T = flow.value
        return answer
    reply: Any = None
    failure: TransportError | None = None
    while True:
        try:
            step = flow.send(reply) if failure is None else flow.throw(failure)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, failure = None, None
        if type(step) is tuple:
            try:
                reply = call(step)
            except TransportError as exc:
                failure = exc
        elif isinstance(step, Sleep):
            time.sleep(step.seconds)
        else:
            assert session is not None and isinstance(step, Database)
            reply = step.function(session)


async def run_async(flow: Flow[T] | Answered, session: AsyncSession | None) -> T:
    """Perform ``flow`` on the event loop: Redis calls awaited, database steps in a greenlet."""
    if isinstance(flow, Answered):
        answer: T = flow.value
        return answer
    reply: Any = None
    failure: TransportError | None = None
    while True:
        try:
            step = flow.send(reply) if failure is None else flow.throw(failure)
        except StopIteration as done:
            result: T = done.value
            return result
        reply, failure = None, None
        if type(step) is tuple:
            method, arguments = step
            try:
                reply = await method(*arguments)
            except TransportError as exc:
                failure = exc
        elif isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        else:
            assert session is not None and isinstance(step, Database)
            reply = await greenlet_spawn(step.function, session.sync_session)
