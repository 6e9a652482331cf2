"""Client copies: owns the checks of a client the application hands over, and the bounded
copies a transport makes of it: the same server (or Sentinel service, or cluster) and
credentials, short timeouts, no retries.

The application's client keeps its own settings; a retry or a long socket timeout would be
a wait the cache must not add to a request. A Sentinel-managed client is copied with a
Sentinel manager of its own whose queries to the sentinels are bounded too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Final

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.cluster
import redis.connection
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from sqlmodel_cache._errors import ConfigurationError

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_TIMEOUT",
    "bounded_client",
    "bounded_cluster_client",
    "bounded_kwargs",
    "check_binary_client",
    "check_settings",
    "connection_factory",
    "tracking_factory",
]

# Well under a database round trip on a LAN: a slow Redis must not be slower than no Redis.
DEFAULT_TIMEOUT: Final = 0.1
DEFAULT_FAILURE_THRESHOLD: Final = 5
DEFAULT_COOLDOWN: Final = 2.0

# Settings that belong to one pool or client instance and must not be copied to another.
_PRIVATE_KWARGS: Final = (
    "maint_notifications_pool_handler",
    "redis_connect_func",
    "oss_cluster_maint_notifications_handler",
    "connection_pool",
)


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


def bounded_kwargs(kwargs: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Blocking connection settings like ``kwargs``, but every wait within ``timeout`` and no
    retries: half the bound for connecting and half for a reply.

    (The asyncio transport borrows the application's own connections and bounds each
    exchange as a whole.)
    """
    bounded = {k: v for k, v in kwargs.items() if k not in _PRIVATE_KWARGS and not k.startswith("orig_")}
    bounded.update(socket_timeout=timeout / 2, socket_connect_timeout=timeout / 2, retry=Retry(NoBackoff(), 0))
    return bounded


def connection_factory(connection_class: type, kwargs: dict[str, Any], protocol: int = 2) -> Callable[[], Any]:
    """New connections of ``connection_class`` with ``kwargs`` (made as the pool would make
    them), speaking ``protocol``, without redis-py's ``CLIENT SETINFO``. Without credentials,
    a database number or a client name, a RESP2 connection's handshake then waits for no
    reply, so that a commit's eviction is written at once even on a connection made while
    the server stalls (its kernel accepts the connection and keeps what is sent)."""
    kwargs = {**kwargs, "protocol": protocol}
    if _DRIVER_INFO:
        kwargs = {key: value for key, value in kwargs.items() if key not in ("lib_name", "lib_version")}
        kwargs["driver_info"] = None
    else:
        kwargs.update(lib_name=None, lib_version=None)
    return lambda: connection_class(**kwargs)


# redis-py 7.1+ names ``CLIENT SETINFO``'s data ``driver_info`` (and warns on the old names).
_DRIVER_INFO: Final = "driver_info" in inspect.signature(redis.connection.AbstractConnection.__init__).parameters


def _bounded_sentinels(manager: Any, timeout: float, kind: type | None = None) -> Any:
    """A Sentinel manager like ``manager`` (or of ``kind``) whose queries to the sentinels end
    within ``timeout``."""
    addresses = [
        (sentinel.connection_pool.connection_kwargs["host"], sentinel.connection_pool.connection_kwargs["port"])
        for sentinel in manager.sentinels
    ]
    return (kind or type(manager))(
        addresses,
        min_other_sentinels=manager.min_other_sentinels,
        sentinel_kwargs=bounded_kwargs(manager.sentinel_kwargs, timeout),
        **manager.connection_kwargs,
    )


def _bounded_pool(pool: Any, timeout: float) -> Any:
    kwargs = bounded_kwargs(pool.connection_kwargs, timeout)
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        # Its constructor takes the service and the manager, and builds its own proxy.
        return type(pool)(
            pool.service_name,
            _bounded_sentinels(pool.sentinel_manager, timeout),
            is_master=pool.is_master,
            check_connection=pool.check_connection,
            connection_class=pool.connection_class,
            **kwargs,
        )
    return type(pool)(connection_class=pool.connection_class, max_connections=pool.max_connections, **kwargs)


def bounded_client(client: redis.Redis, timeout: float) -> redis.Redis:
    """A client on the same server (or Sentinel service) as ``client``, bounded."""
    return redis.Redis(connection_pool=_bounded_pool(client.connection_pool, timeout))


def bounded_cluster_client(client: redis.cluster.RedisCluster, timeout: float) -> redis.cluster.RedisCluster:
    """As `bounded_client`, for a cluster: same nodes and credentials, short timeouts, no retries."""
    kwargs = bounded_kwargs(client.nodes_manager.connection_kwargs, timeout)
    startup = [redis.cluster.ClusterNode(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()]  # type: ignore[no-untyped-call]
    return redis.cluster.RedisCluster(startup_nodes=startup, **kwargs)


# The blocking connection class that connects where an asyncio one does.
_SYNC_TWINS: Final[dict[type, type]] = {
    redis.asyncio.Connection: redis.Connection,
    redis.asyncio.SSLConnection: redis.SSLConnection,
    redis.asyncio.UnixDomainSocketConnection: redis.UnixDomainSocketConnection,
}


def tracking_factory(pool: Any, connection_class: type, kwargs: dict[str, Any], timeout: float) -> Callable[[], Any]:
    """New blocking RESP3 connections to where ``connection_class`` with ``kwargs`` (of ``pool``,
    sync or asyncio) connects, bounded: the near cache's tracking connections. They are
    blocking for the asyncio transport too, so that what has reached the socket is read
    before an entry is served, without a turn of the event loop."""
    if connection_class is redis.asyncio.sentinel.SentinelManagedConnection:
        # Its own Sentinel-managed pool of the blocking kind, on the same sentinels and service.
        plain = {k: v for k, v in kwargs.items() if k != "connection_pool"}
        sync_pool = redis.sentinel.SentinelConnectionPool(  # type: ignore[no-untyped-call]
            pool.service_name,
            _bounded_sentinels(pool.sentinel_manager, timeout, redis.sentinel.Sentinel),
            is_master=True,
            **bounded_kwargs(plain, timeout),
        )
        connection_class, kwargs = sync_pool.connection_class, sync_pool.connection_kwargs
    elif connection_class in _SYNC_TWINS:
        connection_class = _SYNC_TWINS[connection_class]
        kwargs = bounded_kwargs(kwargs, timeout)
    return connection_factory(connection_class, kwargs, protocol=3)
