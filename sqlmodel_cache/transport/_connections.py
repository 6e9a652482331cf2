"""Per-thread connections: owns the hot path's own sockets and their life across forks.

Taking a connection from the pool and giving it back costs more than the round trip's own
client work; a thread's own connection costs nothing. Commands on it are pre-packed in C
by hiredis. A forked child never uses its parent's sockets: each fork starts a new
generation.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from hiredis import pack_command
from redis.exceptions import ResponseError

__all__ = ["ThreadConnections", "packed"]


def packed(*parts: bytes) -> list[bytes]:
    """A command in RESP, as ``Connection.send_packed_command`` takes it."""
    return [pack_command(parts)]  # type: ignore[arg-type]  # the stub says a 1-tuple; any length is packed


_fork_generation = 0


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)


class ThreadConnections:
    """One connection per thread, made by ``pool``; ``call`` sends one packed command on it."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._local = threading.local()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()

    def get(self) -> Any:
        local = self._local
        if getattr(local, "generation", -1) == _fork_generation:
            return local.connection
        connection = self._pool.make_connection()
        local.connection, local.generation = connection, _fork_generation
        self._all.add(connection)
        return connection

    def call(self, command: list[bytes]) -> Any:
        connection = self.get()
        try:
            connection.send_packed_command(command)
            return connection.read_response()
        except ResponseError:
            raise  # an error reply, read whole: the connection is fine
        except BaseException:
            connection.disconnect()  # the reply may be half read: reconnect next time
            raise

    def close(self) -> None:
        for connection in list(self._all):
            connection.disconnect()
