"""Connections: owns the sockets every data command goes over, and which Redis server
lifetime each one talks to.

A connection learns its server's ``run_id`` (``INFO server``) each time it connects: a
restarted server, a promoted replica or a restore from a backup is another lifetime, and
every answer is reported with the lifetime that gave it, so an entry is served only by the
lifetime that stored it. A TCP connection cannot outlive its server process, so the
lifetime learned at connect time holds for every reply on it.

The sync transport keeps one connection per thread (taking one from a pool and giving it
back costs more than the round trip's own client work); the asyncio one borrows from the
application's pools (`_async`). Commands are pre-packed in C by hiredis. A forked child never
uses its parent's sockets.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

from hiredis import pack_command
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from sqlmodel_cache._stats import logger

__all__ = ["MAX_OWED", "UNKNOWN_LIFETIME", "Link", "ThreadConnections", "fork_generation", "packed", "run_id"]

# A connection factory: a redis-py connection class with its keyword arguments, bound.
Factory = Callable[[], Any]


def packed(*parts: bytes) -> bytes:
    """A command in RESP, as ``Connection.send_packed_command`` takes it."""
    command: bytes = pack_command(parts)  # type: ignore[arg-type]  # the stub says a 1-tuple; any length is packed
    return command


_INFO_SERVER = packed(b"INFO", b"server")


# The lifetime of a server that does not say which it is (``INFO`` refused or unknown): its
# entries are served by any connection that cannot tell either, so the cache keeps working,
# without the protection against restarts, failovers and restores; a WARNING says so.
UNKNOWN_LIFETIME: Final = b""
_refused_info_told = False


def run_id(info: Any) -> bytes:
    """The server lifetime in an ``INFO server`` reply: 8 bytes of its ``run_id``."""
    global _refused_info_told
    if isinstance(info, ResponseError):
        if not _refused_info_told:
            _refused_info_told = True
            logger.warning(
                "Redis refused INFO (%s): cached rows cannot be tied to the server's lifetime, so after a "
                "restart from persistence, a failover or a restore, an evicted row may be served until its "
                "TTL ends; allow the INFO command (ACL: +info)",
                info,
            )
        return UNKNOWN_LIFETIME
    text = info if isinstance(info, bytes) else str(info).encode()
    at = text.find(b"run_id:")
    try:
        return bytes.fromhex(text[at + 7 : at + 23].decode()) if at >= 0 else UNKNOWN_LIFETIME
    except ValueError:
        return UNKNOWN_LIFETIME


class Link:
    """One connection, the server lifetime it talks to (``None`` until it has connected), and
    the replies the server still owes it.

    A call that gives up waiting (a paused or slow server) keeps the connection: what it sent
    is in the server's socket and runs there in order, before anything sent after it, so an
    eviction that timed out still runs before the reads other processes send after the
    commit. The owed replies are read, and dropped, before the next call's own.
    """

    __slots__ = ("connection", "epoch", "learning", "owed")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.epoch: bytes | None = None
        self.owed = 0
        self.learning = False  # the first owed reply answers the server-lifetime question

    def ensure(self) -> None:
        """Connected, and the server lifetime asked: (re)connect and ask first if need be.

        The question's answer is not waited for here but read as the first owed reply: a
        command sent next (a commit's eviction) is written at once behind it, and runs in
        order even on a server that stalls while the connection is made (its kernel accepts
        the connection and keeps what is sent)."""
        connection = self.connection
        if connection._sock is None:
            self.epoch, self.owed, self.learning = None, 0, False
            try:
                connection.connect()
                connection.send_packed_command([_INFO_SERVER], check_health=False)
            except BaseException:
                self.close()
                raise
            self.owed, self.learning = 1, True

    def lifetime(self) -> bytes | None:
        """The server lifetime, for a command made for it: connected, and the answer read."""
        self.ensure()
        if self.learning:
            self.receive(0)
        return self.epoch

    def call(self, command: bytes | Callable[[bytes | None], bytes]) -> Any:
        """Send one packed command and read its reply. ``command`` may be a function of the
        server lifetime, made once that is known. A connection found closed (the server
        restarted, or closed it while idle) is reconnected once, and such a command made
        again for the new lifetime; a timeout is never retried."""
        stale = self.connection._sock is not None  # connected before: the server may have gone since
        try:
            return self._call(command)
        except ConnectionError:
            if not stale:
                raise
            return self._call(command)

    def _call(self, command: bytes | Callable[[bytes | None], bytes]) -> Any:
        if callable(command):
            command = command(self.lifetime())
        else:
            self.ensure()
        if self.owed:
            self.send([command])
            reply = self.receive(1)[0]
            if isinstance(reply, ResponseError):
                raise reply  # an error reply, read whole: the connection is in step
            return reply
        # The hot path, `send` and `receive` for one command with nothing owed.
        connection = self.connection
        try:
            connection.send_packed_command([command], check_health=False)
        except BaseException:
            self.close()
            raise
        try:
            # Not redis-py's default, which closes the connection on a timeout: the command
            # sent stays in the server's queue, and the next command (an eviction) must join
            # it there, not wait for a new connection's handshake that a paused server
            # never answers.
            return connection.read_response(disconnect_on_error=False)
        except ResponseError:
            raise
        except TimeoutError:
            self.owed = 1
            raise
        except BaseException:
            self.close()
            raise

    def send(self, commands: Sequence[bytes]) -> None:
        """Send packed commands in one write; `receive` reads their replies."""
        self.ensure()
        try:
            self.connection.send_packed_command([b"".join(commands)], check_health=False)
        except BaseException:
            self.close()  # a write cut short: the server may have half a command
            raise

    def receive(self, count: int) -> list[Any]:
        """The replies of the ``count`` commands sent last, after those still owed; an error
        reply is returned in its place (a `ResponseError`), so that one key's error is only
        that key's. On a timeout the unread replies stay owed."""
        connection = self.connection
        replies: list[Any] = []
        owed, self.owed = self.owed + count, 0
        try:
            while owed:
                try:
                    reply = connection.read_response(disconnect_on_error=False)  # as in `_call`
                except ResponseError as error:
                    reply = error
                owed -= 1
                if owed < count:
                    replies.append(reply)
                elif self.learning:  # the answer to the lifetime question `ensure` asked
                    self.learning = False
                    self.epoch = run_id(reply)
        except TimeoutError:
            if owed > MAX_OWED:
                self.close()
            else:
                self.owed = owed
            raise
        except BaseException:
            self.close()
            raise
        return replies

    def pipeline(self, commands: Sequence[bytes]) -> list[Any]:
        self.send(commands)
        return self.receive(len(commands))

    def close(self) -> None:
        self.epoch, self.owed, self.learning = None, 0, False
        self.connection.disconnect()


# Replies a connection may owe before it is given up for a new one (a server that is not
# coming back would make every call read them first).
MAX_OWED: Final = 1000


_fork_generation = 0


def fork_generation() -> int:
    """How many forks this process descends from (it changes in a forked child)."""
    return _fork_generation


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)


class ThreadConnections:
    """One `Link` per thread, made by ``factory``."""

    def __init__(self, factory: Factory) -> None:
        self._factory = factory
        self._local = threading.local()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()

    def get(self) -> Link:
        local = self._local
        if getattr(local, "generation", -1) == _fork_generation:
            link: Link = local.link
            return link
        connection = self._factory()
        local.link, local.generation = Link(connection), _fork_generation
        self._all.add(connection)
        return local.link  # type: ignore[no-any-return]

    def close(self) -> None:
        for connection in list(self._all):
            connection.disconnect()
