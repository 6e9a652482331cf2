"""Borrowed connections: owns how the asyncio transport uses a connection of the
application's pool: connected in one attempt (a Sentinel-managed one through a bounded
question to the sentinels), its server lifetime learnt once, commands sent in one write.

A refused connection fails at once with its cause: the application's client may retry with
backoff, which would spend the whole bound and leave only a bare timeout to report.

An exchange cut by its bound leaves its connection in step (`AsyncLink`): with hiredis a cut
read loses nothing (what came stays in the stream's buffer or in hiredis's reader, fed only
from a whole read), so the replies not read yet are owed, and read first by the next exchange.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
from redis._parsers import _AsyncHiredisParser
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from ._commands import Scripts
from ._connections import MAX_OWED, packed, run_id

__all__ = ["AsyncLink", "Commands", "in_step", "on", "owes", "ready"]

_INFO_SERVER = packed(b"INFO", b"server")
# The commands of one borrowed connection: fixed, or made once its server lifetime is known.
Commands = Sequence[bytes] | Callable[[bytes | None], Sequence[bytes]]


class AsyncLink:
    """One borrowed connection while it stays connected (one writer): the server lifetime it
    talks to (``None`` until learnt) and the replies the server still owes it.

    An exchange cut by its bound (a paused or slow server) leaves what it sent in the server's
    queue, where it runs in order: the next exchange on this connection sends its commands at
    once, behind those, so an eviction still runs before the reads other processes send after
    the commit; then it reads, and drops, the owed replies before its own.
    """

    __slots__ = ("connection", "epoch", "owed", "writer")

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.writer = connection._writer
        self.epoch: bytes | None = None
        self.owed = 0

    async def send(self, commands: Sequence[bytes]) -> None:
        """Send ``commands`` in one write, then read the replies still owed (dropped)."""
        owed = self.owed
        await self.connection.send_packed_command(b"".join(commands), check_health=False)
        self.owed += len(commands)
        for _ in range(owed):
            await self.read()

    async def read(self) -> Any:
        """The next reply, an error reply in its place. Not redis-py's default, which closes the
        connection when the read is cut: the transport decides (`in_step`)."""
        try:
            reply = await self.connection.read_response(disconnect_on_error=False)
        except ResponseError as error:
            reply = error
        self.owed -= 1
        return reply


def _link(connection: Any) -> AsyncLink | None:
    """The link of ``connection`` as connected now: ``None`` if it has none yet, or was closed
    or reconnected since (its state is then unknown: a cut handshake, say)."""
    link: AsyncLink | None = getattr(connection, "_sqlmodel_cache_link", None)
    writer = connection._writer
    return link if link is not None and writer is not None and link.writer is writer else None


def in_step(connection: Any) -> bool:
    """May an exchange cut on ``connection`` leave it open for the next one? Only with hiredis
    (the Python parsers may lose a reply half read), and owing a bounded count of replies (a
    server that is not coming back would make every exchange read them first)."""
    link = _link(connection)
    return link is not None and link.owed <= MAX_OWED and isinstance(connection._parser, _AsyncHiredisParser)


def owes(connection: Any) -> bool:
    """Does the server still owe ``connection`` replies? Then it must not go back to the
    application's pool: the application's own commands would read them."""
    link = _link(connection)
    return link is not None and link.owed > 0


async def _exchange(link: AsyncLink, commands: Sequence[bytes]) -> Any:
    """Send ``commands`` in one write; the one reply, or each reply in turn (an error reply in
    its place, so that one key's error is only that key's)."""
    await link.send(commands)
    if len(commands) == 1:
        reply = await link.read()
        if isinstance(reply, ResponseError):
            raise reply
        return reply
    replies = [await link.read() for _ in commands]
    lost_script = next((reply for reply in replies if isinstance(reply, NoScriptError)), None)
    if lost_script is not None:
        raise lost_script  # every reply was read: the caller loads the scripts and sends again
    return replies


async def on(connection: Any, commands: Commands, sources: Sequence[str]) -> tuple[Any, bytes | None]:
    """``commands`` on ``connection``: their replies and the server lifetime that gave them."""
    link = await ready(connection)
    if callable(commands):
        commands = commands(link.epoch)
    try:
        replies = await _exchange(link, commands)
    except NoScriptError:  # a server that lost the scripts: load them there, once
        for source in sources:
            await _exchange(link, [Scripts.load(source)])
        replies = await _exchange(link, commands)
    return replies, link.epoch


async def _master_of(pool: Any) -> tuple[str, int]:
    """The master a Sentinel-managed pool's service has now, asking each sentinel once, with
    no retry and no backoff (the caller's bound cuts the whole)."""
    refusals = []
    for sentinel in pool.sentinel_manager.sentinels:
        kwargs = sentinel.connection_pool.connection_kwargs
        probe = redis.asyncio.Redis(
            **{key: kwargs[key] for key in _SENTINEL_SETTINGS if key in kwargs},
            retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
            single_connection_client=True,
        )
        try:
            address: Any = await probe.sentinel_get_master_addr_by_name(pool.service_name)
        except RedisError as error:
            refusals.append(f"{kwargs.get('host')}:{kwargs.get('port')}: {error}")
            continue
        finally:
            await probe.aclose()
        if address:
            host = address[0]
            return (host.decode() if isinstance(host, bytes) else str(host)), int(address[1])
    raise MasterNotFoundError(f"no sentinel names a master for {pool.service_name!r}: {'; '.join(refusals)}")


_SENTINEL_SETTINGS = ("host", "port", "username", "password", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


async def ready(connection: Any) -> AsyncLink:
    """Connect ``connection`` if need be, in one attempt; its link, knowing the server lifetime,
    learnt once per connection (a reconnect, by this library or the application, is a new
    writer, and is asked again)."""
    if connection._writer is None:
        pool = getattr(connection, "connection_pool", None)
        if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool) and pool.is_master:
            # Its own connect() asks the sentinels with the application's retries and backoff.
            connection.host, connection.port = await _master_of(pool)
        await connection.connect_check_health(retry_socket_connect=False)
    link = _link(connection)
    if link is None:
        link = connection._sqlmodel_cache_link = AsyncLink(connection)
    if link.epoch is None:
        await link.send([_INFO_SERVER])
        link.epoch = run_id(await link.read())
    return link
