"""Redis Cluster: both transports take a cluster client as they take a single server."""

from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport


def cluster_transport(host: str = "10.0.0.1", port: int = 7000) -> RedisSyncTransport:
    return RedisSyncTransport(RedisCluster(host=host, port=port))  # learns the layout from this node


def async_cluster_transport(host: str = "10.0.0.1", port: int = 7000) -> RedisAsyncTransport:
    return RedisAsyncTransport(AsyncRedisCluster(host=host, port=port))
