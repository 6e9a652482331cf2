"""Bytes-only Redis transports: the sessions decide what to cache, these only move bytes.

Every Redis error is converted to `TransportError` here, in one place for both
transports, so the sessions can treat any Redis failure as a miss (fail-open).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, NoReturn, cast

import redis
import redis.cluster
from redis.exceptions import RedisError

from ._errors import ConfigurationError, TransportError

__all__ = ["RedisAsyncTransport", "RedisSyncTransport"]

# Publish the row only if the key still holds this reader's lease: an eviction in
# between deleted the lease, and then the row the reader holds may predate a commit.
FILL_IF_LEASE_HELD: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


def _raise_transport_error(exc: BaseException, operation: str) -> NoReturn:
    raise TransportError(f"Redis {operation} failed: {type(exc).__name__}: {exc}") from exc


def _check_binary_client(client: Any, transport: str) -> None:
    get_kwargs = getattr(client, "get_connection_kwargs", None)
    kwargs: dict[str, Any] = get_kwargs() if callable(get_kwargs) else {}
    if kwargs.get("decode_responses"):
        raise ConfigurationError(
            f"{transport} needs a Redis client that returns bytes; create it without "
            "decode_responses=True (the cache stores binary msgpack values)"
        )


class RedisSyncTransport:
    """The transport for `CachedSession`: wraps ``redis.Redis`` or ``redis.cluster.RedisCluster``."""

    def __init__(self, client: redis.Redis | redis.cluster.RedisCluster) -> None:
        given: object = client  # checked at run time: a wrong client must fail here, clearly
        if not isinstance(given, (redis.Redis, redis.cluster.RedisCluster)):
            hint = (
                "; for an asyncio client use RedisAsyncTransport"
                if type(given).__module__.startswith("redis.asyncio")
                else ""
            )
            raise ConfigurationError(
                "RedisSyncTransport needs a redis.Redis or redis.cluster.RedisCluster client, "
                f"got {type(client).__name__}{hint}"
            )
        _check_binary_client(client, "RedisSyncTransport")
        self.client = client
        self._fill_script = client.register_script(FILL_IF_LEASE_HELD)

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None:
        """The value at ``key``; if there is none, take the lease there and return ``None``."""
        try:
            return self.client.execute_command("SET", key, lease, "NX", "PX", lease_ms, "GET", get=True)  # type: ignore[no-untyped-call,no-any-return]
        except RedisError as exc:
            _raise_transport_error(exc, "lookup")

    def peek(self, key: str) -> bytes | None:
        """The value at ``key``, taking no lease: for readers that will not fill."""
        try:
            return self.client.get(key)  # type: ignore[return-value]
        except RedisError as exc:
            _raise_transport_error(exc, "lookup")

    def fill(self, key: str, lease: bytes, value: bytes, ttl_ms: int) -> bool:
        """Store ``value`` if ``key`` still holds ``lease``; ``False`` if the lease was lost."""
        try:
            return bool(self._fill_script(keys=[key], args=[lease, value, ttl_ms]))
        except RedisError as exc:
            _raise_transport_error(exc, "fill")

    def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            self.client.delete(*keys)
        except RedisError as exc:
            _raise_transport_error(exc, "delete")

    def __repr__(self) -> str:
        return f"RedisSyncTransport({self.client!r})"


class RedisAsyncTransport:
    """The transport for `AsyncCachedSession`: wraps ``redis.asyncio.Redis`` or its cluster client."""

    def __init__(self, client: Any) -> None:
        import redis.asyncio
        import redis.asyncio.cluster

        if not isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            hint = (
                "; for a synchronous client use RedisSyncTransport"
                if isinstance(client, (redis.Redis, redis.cluster.RedisCluster))
                else ""
            )
            raise ConfigurationError(
                "RedisAsyncTransport needs a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster "
                f"client, got {type(client).__name__}{hint}"
            )
        _check_binary_client(client, "RedisAsyncTransport")
        self.client = client
        self._fill_script = client.register_script(FILL_IF_LEASE_HELD)

    async def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None:
        try:
            return await self.client.execute_command("SET", key, lease, "NX", "PX", lease_ms, "GET", get=True)  # type: ignore[no-any-return]
        except RedisError as exc:
            _raise_transport_error(exc, "lookup")

    async def peek(self, key: str) -> bytes | None:
        try:
            return cast("bytes | None", await self.client.get(key))
        except RedisError as exc:
            _raise_transport_error(exc, "lookup")

    async def fill(self, key: str, lease: bytes, value: bytes, ttl_ms: int) -> bool:
        try:
            return bool(await self._fill_script(keys=[key], args=[lease, value, ttl_ms]))
        except RedisError as exc:
            _raise_transport_error(exc, "fill")

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            await self.client.delete(*keys)
        except RedisError as exc:
            _raise_transport_error(exc, "delete")

    def __repr__(self) -> str:
        return f"RedisAsyncTransport({self.client!r})"
