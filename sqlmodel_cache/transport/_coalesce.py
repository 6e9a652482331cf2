"""Coalesced asyncio calls: owns how the single-key commands that concurrent tasks of one event
loop send to one server share a write and a read.

A task's command waits in a batch; the batch is sent when the tasks that run in the current
turn of the loop have added theirs, in one write on one borrowed connection, and its replies
are read in turn and handed back in order. While a batch is in flight the next one fills, so
50 concurrent ``get()`` calls cost a few round trips and a few system calls, not 50 of each.
Each caller keeps its own bound; a reply whose caller gave up is read and dropped. A reply
that says the server lost a script is loaded there and that caller's command sent again (the
others' are not sent twice).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from ._borrowed import Commands, ready
from ._commands import Scripts

__all__ = ["Coalescer", "exchange_batch"]

# Sends a batch on a borrowed connection: ``send(exchange)`` borrows, runs ``exchange`` on the
# connection within the bound, and gives the connection back (or drops it on a failure).
Send = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


class _Call:
    __slots__ = ("commands", "future", "sources")

    def __init__(self, commands: Commands, sources: Sequence[str], future: asyncio.Future[Any]) -> None:
        self.commands = commands
        self.sources = sources
        self.future = future


async def exchange_batch(connection: Any, calls: Sequence[_Call]) -> tuple[list[Any], bytes | None]:
    """Every call's one command in one write; each reply (an error reply in its place), and the
    server lifetime that gave them."""
    epoch = await ready(connection)
    packed = [call.commands(epoch) if callable(call.commands) else call.commands for call in calls]
    await connection.send_packed_command(b"".join(command for one in packed for command in one), check_health=False)
    replies: list[Any] = []
    for _ in packed:
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            replies.append(error)
    return replies, epoch


class Coalescer:
    """The batches of one event loop to one server."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._pending: list[_Call] = []
        self._driving = False
        self._driver: asyncio.Task[None] | None = None

    async def call(self, commands: Commands, sources: Sequence[str] = ()) -> tuple[Any, bytes | None]:
        """One command (a list of one, or a function of the server lifetime making one): its
        reply and the lifetime that gave it, as `_async.RedisAsyncTransport._send` answers."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Call(commands, sources, future))
        if not self._driving:
            self._driving = True
            self._driver = loop.create_task(self._drive())  # held: a task nobody holds may vanish
        result: tuple[Any, bytes | None] = await future
        return result

    async def _drive(self) -> None:
        try:
            await asyncio.sleep(0)  # the tasks that run in this turn of the loop add theirs
            while self._pending:
                batch = [call for call in self._pending if not call.future.done()]  # not given up
                self._pending = []
                if batch:
                    await self._run(batch)
        finally:
            self._driving = False

    async def _run(self, batch: list[_Call]) -> None:
        try:
            replies, epoch = await self._send(lambda connection: exchange_batch(connection, batch))
        except BaseException as error:
            for call in batch:
                if not call.future.done():
                    call.future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise
            return
        lost = [call for call, reply in zip(batch, replies, strict=True) if isinstance(reply, NoScriptError)]
        if lost:  # a server that lost its scripts: load them there, and send those calls again
            sources = {source for call in lost for source in call.sources}
            try:
                await self._send(lambda connection: exchange_batch(connection, [_load(s) for s in sources]))
            except BaseException as error:
                for call in lost:
                    if not call.future.done():
                        call.future.set_exception(error)
                lost = []
            self._pending.extend(lost)
        for call, reply in zip(batch, replies, strict=True):
            if call.future.done() or isinstance(reply, NoScriptError):
                continue
            if isinstance(reply, ResponseError):
                call.future.set_exception(reply)
            else:
                call.future.set_result((reply, epoch))


def _load(source: str) -> _Call:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.cancel()  # nobody waits for it
    return _Call([Scripts.load(source)], (), future)
