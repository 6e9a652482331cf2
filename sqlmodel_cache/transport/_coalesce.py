"""Coalesced asyncio calls: owns how the single-key commands that concurrent tasks of one event
loop send to one server (or one cluster master) share a write and a read.

A task's command is sent at once when nothing is in flight; otherwise it waits, and all that
waited are sent together as soon as what was in flight is done, in one write on one borrowed
connection, their replies read in turn and handed back in order. While a batch is in flight
the next one fills, so 50 concurrent ``get()`` calls cost a few round trips and a few system
calls, not 50 of each.

A call waits at most for the batch in flight and then for its own, each within the bound; a
reply whose caller gave up is read and dropped. A reply that says the server lost a script
is loaded there and that caller's command sent again (the others' are not sent twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from ._borrowed import Commands, ready
from ._commands import Scripts

__all__ = ["Coalescer", "exchange_batch"]

# Sends a batch on a borrowed connection: ``send(exchange, seconds)`` borrows, runs
# ``exchange`` on the connection within ``seconds``, and gives the connection back (keeps it
# for the next exchange if the bound cut it owing replies, drops it on another failure).
Send = Callable[[Callable[[Any], Awaitable[Any]], float], Awaitable[Any]]
# Sends one call's commands at once, within the bound, as the transport does without batching.
SendOne = Callable[[Commands, Sequence[str]], Awaitable[tuple[Any, "bytes | None"]]]


class _Call:
    __slots__ = ("commands", "future", "sources")

    def __init__(self, commands: Commands, sources: Sequence[str], future: asyncio.Future[Any]) -> None:
        self.commands = commands
        self.sources = sources
        self.future = future


async def exchange_batch(connection: Any, calls: Sequence[_Call]) -> tuple[list[Any], bytes | None]:
    """Every call's one command in one write; each reply (an error reply in its place), and the
    server lifetime that gave them."""
    link = await ready(connection)
    packed = [call.commands(link.epoch) if callable(call.commands) else call.commands for call in calls]
    await link.send([command for one in packed for command in one])
    return [await link.read() for _ in packed], link.epoch


class Coalescer:
    """The batches of one event loop to one server.

    A call that finds nothing in flight is sent at once, alone (a lone ``get()`` pays nothing
    for the batching); the calls that come while something is in flight wait, and go together
    in one batch as soon as it is done.
    """

    def __init__(self, send_one: SendOne, send: Send, timeout: float) -> None:
        self._send_one = send_one
        self._send = send
        self._timeout = timeout
        self._pending: list[_Call] = []
        self._busy = False
        self._driver: asyncio.Task[None] | None = None

    async def call(self, commands: Commands, sources: Sequence[str] = ()) -> tuple[Any, bytes | None]:
        """One command (a list of one, or a function of the server lifetime making one): its
        reply and the lifetime that gave it, as `_async.RedisAsyncTransport._send` answers."""
        if not self._busy:
            self._busy = True
            try:
                return await self._send_one(commands, sources)
            finally:
                self._next()
        # A waiting call has no timer of its own: it waits for the batch in flight (bounded),
        # then goes in the next, bounded from its send. Its bound does not start while it
        # waits: a loop kept busy meanwhile would spend it before anything was sent.
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Call(commands, sources, future))
        result: tuple[Any, bytes | None] = await future
        return result

    def _next(self) -> None:
        """What was in flight is done: send what came meanwhile, or be idle."""
        if self._pending:
            self._driver = asyncio.get_running_loop().create_task(self._drive())  # held: or it may vanish
        else:
            self._busy = False

    async def _drive(self) -> None:
        try:
            while self._pending:
                batch = [call for call in self._pending if not call.future.done()]  # not given up
                self._pending = []
                if batch:
                    await self._run(batch)
                    # The callers just answered run on to their next command: one turn of the
                    # loop, so that it joins the next batch instead of going alone.
                    await asyncio.sleep(0)
        finally:
            self._busy = False

    async def _run(self, batch: list[_Call]) -> None:
        try:
            replies, epoch = await self._send(lambda connection: exchange_batch(connection, batch), self._timeout)
        except BaseException as error:
            _fail(batch, error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        lost = [call for call, reply in zip(batch, replies, strict=True) if isinstance(reply, NoScriptError)]
        if lost:  # a server that lost its scripts: load them there, and send those calls again
            sources = {source for call in lost for source in call.sources}
            try:
                loads = [_load(source) for source in sources]
                await self._send(lambda connection: exchange_batch(connection, loads), self._timeout)
            except BaseException as error:
                _fail(lost, error)
                lost = []
            self._pending.extend(lost)
        for call, reply in zip(batch, replies, strict=True):
            if call.future.done() or isinstance(reply, NoScriptError):
                continue
            if isinstance(reply, ResponseError):
                call.future.set_exception(reply)
            else:
                call.future.set_result((reply, epoch))


def _fail(calls: Sequence[_Call], error: BaseException) -> None:
    """Give ``error`` to the calls whose callers still wait."""
    for call in calls:
        if not call.future.done():
            call.future.set_exception(error)


def _load(source: str) -> _Call:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.cancel()  # nobody waits for it
    return _Call([Scripts.load(source)], (), future)
