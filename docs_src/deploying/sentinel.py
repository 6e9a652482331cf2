"""Sentinel: hand the transport a Sentinel-managed client, sync or asyncio."""

import redis.asyncio.sentinel
from redis.sentinel import Sentinel

from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

SENTINELS = [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26379)]


def sentinel_transport(sentinels: list[tuple[str, int]] = SENTINELS, service: str = "mymaster") -> RedisSyncTransport:
    sentinel = Sentinel(sentinels, socket_timeout=0.5)
    return RedisSyncTransport(sentinel.master_for(service))


def async_sentinel_transport(
    sentinels: list[tuple[str, int]] = SENTINELS, service: str = "mymaster"
) -> RedisAsyncTransport:
    sentinel = redis.asyncio.sentinel.Sentinel(sentinels, socket_timeout=0.5)
    return RedisAsyncTransport(sentinel.master_for(service))
