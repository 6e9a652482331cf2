"""Client copies: owns the checks of a client the application hands over, and the bounded
copy a transport makes of it (same server and credentials, short timeouts, no retries).

The application's client keeps its own settings; a retry or a long socket timeout would be
a wait the cache must not add to a request.
"""

from __future__ import annotations

from typing import Any, Final

import redis
import redis.cluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from sqlmodel_cache._errors import ConfigurationError

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_TIMEOUT",
    "bounded_client",
    "bounded_cluster_client",
    "check_binary_client",
    "check_settings",
]

# Well under a database round trip on a LAN: a slow Redis must not be slower than no Redis.
DEFAULT_TIMEOUT: Final = 0.1
DEFAULT_FAILURE_THRESHOLD: Final = 5
DEFAULT_COOLDOWN: Final = 2.0

# Pool settings that belong to one pool instance and must not be copied to another.
_POOL_PRIVATE_KWARGS: Final = ("maint_notifications_pool_handler",)
# Connection settings that belong to one cluster client and must not be copied to another.
_CLUSTER_PRIVATE_KWARGS: Final = ("redis_connect_func", "oss_cluster_maint_notifications_handler")


def check_settings(timeout: float, failure_threshold: int, cooldown: float, transport: str) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise ConfigurationError(f"{transport}(timeout=...) must be seconds between 0 and 60, got {timeout!r}")
    if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
        raise ConfigurationError(f"{transport}(failure_threshold=...) must be an int >= 1, got {failure_threshold!r}")
    if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or cooldown <= 0:
        raise ConfigurationError(f"{transport}(cooldown=...) must be positive seconds, got {cooldown!r}")


def check_binary_client(client: Any, transport: str) -> None:
    get_kwargs = getattr(client, "get_connection_kwargs", None)
    kwargs: dict[str, Any] = get_kwargs() if callable(get_kwargs) else {}
    if kwargs.get("decode_responses"):
        raise ConfigurationError(
            f"{transport} needs a Redis client that returns bytes; create it without "
            "decode_responses=True (the cache stores binary msgpack values)"
        )


def bounded_client(client: redis.Redis, timeout: float) -> redis.Redis:
    """A client on the same server as ``client`` whose every call ends within ``timeout``:
    half the bound each for connecting and for the reply, and no retries."""
    pool = client.connection_pool
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k not in _POOL_PRIVATE_KWARGS}
    kwargs.update(
        socket_timeout=timeout / 2,
        socket_connect_timeout=timeout / 2,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        retry_on_error=[],
    )
    bounded_pool = type(pool)(connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs)
    return redis.Redis(connection_pool=bounded_pool)


def bounded_cluster_client(client: redis.cluster.RedisCluster, timeout: float) -> redis.cluster.RedisCluster:
    """As `bounded_client`, for a cluster: same nodes and credentials, short timeouts, no retries."""
    kwargs = {
        k: v
        for k, v in client.nodes_manager.connection_kwargs.items()
        if k not in _CLUSTER_PRIVATE_KWARGS and not k.startswith(("maint_notifications", "orig_"))
    }
    kwargs.update(
        socket_timeout=timeout / 2,
        socket_connect_timeout=timeout / 2,
        retry=Retry(NoBackoff(), 0),
    )
    startup = [redis.cluster.ClusterNode(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()]  # type: ignore[no-untyped-call]
    return redis.cluster.RedisCluster(startup_nodes=startup, **kwargs)
