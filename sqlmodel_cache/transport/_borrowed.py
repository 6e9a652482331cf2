"""Borrowed connections: owns how the asyncio transport uses a connection of the
application's pool: connected in one attempt (a Sentinel-managed one through a bounded
question to the sentinels), its server lifetime learnt once, commands sent in one write.

A refused connection fails at once with its cause: the application's client may retry with
backoff, which would spend the whole bound and leave only a bare timeout to report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
from redis.asyncio.sentinel import MasterNotFoundError
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from ._commands import Scripts
from ._connections import packed, run_id

__all__ = ["Commands", "on", "ready"]

_INFO_SERVER = packed(b"INFO", b"server")
# The commands of one borrowed connection: fixed, or made once its server lifetime is known.
Commands = Sequence[bytes] | Callable[[bytes | None], Sequence[bytes]]


async def _exchange(connection: Any, commands: Sequence[bytes]) -> Any:
    """Send ``commands`` in one write; the one reply, or each reply in turn (an error reply in
    its place, so that one key's error is only that key's)."""
    await connection.send_packed_command(b"".join(commands), check_health=False)
    if len(commands) == 1:
        return await connection.read_response()
    replies: list[Any] = []
    for _ in commands:
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            replies.append(error)
    lost_script = next((reply for reply in replies if isinstance(reply, NoScriptError)), None)
    if lost_script is not None:
        raise lost_script  # every reply was read: the caller loads the scripts and sends again
    return replies


async def on(connection: Any, commands: Commands, sources: Sequence[str]) -> tuple[Any, bytes | None]:
    """``commands`` on ``connection``: their replies and the server lifetime that gave them."""
    epoch = await ready(connection)
    if callable(commands):
        commands = commands(epoch)
    try:
        replies = await _exchange(connection, commands)
    except NoScriptError:  # a server that lost the scripts: load them there, once
        for source in sources:
            await _exchange(connection, [Scripts.load(source)])
        replies = await _exchange(connection, commands)
    return replies, epoch


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


async def ready(connection: Any) -> bytes | None:
    """Connect ``connection`` if need be, in one attempt, and return its server lifetime,
    learnt once per connection (a reconnect, by this library or the application, is a new
    writer, and is asked again)."""
    if connection._writer is None:
        pool = getattr(connection, "connection_pool", None)
        if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool) and pool.is_master:
            # Its own connect() asks the sentinels with the application's retries and backoff.
            connection.host, connection.port = await _master_of(pool)
        await connection.connect_check_health(retry_socket_connect=False)
    writer = connection._writer
    known = getattr(connection, "_sqlmodel_cache_epoch", None)
    if known is None or known[0] is not writer:
        await connection.send_packed_command(_INFO_SERVER, check_health=False)
        try:
            info = await connection.read_response()
        except ResponseError as error:
            info = error
        known = connection._sqlmodel_cache_epoch = (writer, run_id(info))
    epoch: bytes | None = known[1]
    return epoch
