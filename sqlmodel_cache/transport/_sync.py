"""`RedisSyncTransport`: owns the blocking I/O to one Redis server or a Redis Cluster."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, TryAgainError

from sqlmodel_cache import _lease
from sqlmodel_cache._lease import Settlement

from ._base import GuardedTransport
from ._clients import bounded_client, bounded_cluster_client
from ._cluster import queue_lookups, queue_peeks, queue_settlements
from ._connections import ThreadConnections, packed

__all__ = ["RedisSyncTransport"]

_SLOT_MOVED = (MovedError, AskError, TryAgainError, ClusterDownError)


class RedisSyncTransport(GuardedTransport["redis.Redis | redis.cluster.RedisCluster"]):
    """The transport for `CachedSession`: wraps ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    ``timeout`` bounds every call (whatever the client's own timeouts); after
    ``failure_threshold`` consecutive failures Redis is left alone for ``cooldown`` seconds.
    """

    is_async: ClassVar[bool] = False
    _clients = (redis.Redis, redis.cluster.RedisCluster)
    _clients_named = "a redis.Redis or redis.cluster.RedisCluster"
    _other_clients = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
    _other_transport = "RedisAsyncTransport"

    def _start(self) -> Any:
        # On a single server the hot calls skip the client's command machinery and use a
        # connection of their own thread, made by the pool this transport owns; on a
        # cluster, one of the key's node while that node is healthy.
        client, routing = self.client, None
        self._redis: Any
        self._connections: ThreadConnections | None = None
        if isinstance(client, redis.cluster.RedisCluster):
            self._redis = routing = bounded_cluster_client(client, self.timeout)
        else:
            self._redis = bounded_client(client, self.timeout)
            self._connections = ThreadConnections(self._redis.connection_pool)
        self._node_connections: dict[str, ThreadConnections] = {}
        self._settle_script = self._redis.register_script(_lease.SETTLE)
        self._shas = {source: self._redis.register_script(source).sha.encode() for source in _lease.SCRIPTS}
        return routing

    def _node_connections_for(self, node: Any, healthy: bool) -> ThreadConnections | None:
        """On a cluster, the thread connections of the key's node, while that node is healthy.

        After any failure the cluster client's own path is used until a call succeeds
        again: it follows failovers and refreshes the slot map, which this path does not.
        """
        if node is None or not healthy:
            return None
        connections = self._node_connections.get(node.name)
        if connections is None and node.redis_connection is not None:
            connections = self._node_connections.setdefault(
                node.name, ThreadConnections(node.redis_connection.connection_pool)
            )
        return connections

    def _single_key(self, operation: str, key: str, command: list[bytes], through_client: Callable[[], Any]) -> Any:
        """One pre-packed single-key command on this thread's connection (to the server, or
        to the key's node); else, and when a script must be loaded or a slot moved,
        ``through_client()``, the client's own machinery."""
        with self._guard.call(operation, key) as call:
            connections = self._connections or self._node_connections_for(call.node, call.breaker.healthy)
            if connections is None:
                return through_client()
            try:
                return connections.call(command)
            except (NoScriptError, *_SLOT_MOVED):
                return through_client()

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None:
        command = _lease.lookup_command(key.encode(), lease, lease_ms)
        # The client's own path wants a str command name: it routes and parses by it.
        through_client = partial(self._redis.execute_command, "SET", *command[1:], get=True)
        return cast("bytes | None", self._single_key("lookup", key, packed(*command), through_client))

    def peek(self, key: str) -> bytes | None:
        through_client = partial(self._redis.get, key)
        return cast("bytes | None", self._single_key("lookup", key, packed(b"GET", key.encode()), through_client))

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int) -> bool:
        arguments = _lease.settle_arguments(key.encode(), lease, value, ttl_ms)
        command = packed(b"EVALSHA", self._shas[_lease.SETTLE], *arguments)
        through_client = partial(self._settle_script, keys=[key], args=arguments[2:])
        return bool(self._single_key("fill", key, command, through_client))

    def _script(self, source: str, arguments: Sequence[bytes]) -> Any:
        """EVALSHA of ``source`` on the thread connection, loading the script where the server lost it."""
        assert self._connections is not None
        command = packed(b"EVALSHA", self._shas[source], *arguments)
        try:
            return self._connections.call(command)
        except NoScriptError:  # a restarted or flushed server: load the script once more
            self._redis.script_load(source)
            return self._connections.call(command)

    def _pipelined(self, queue: Callable[[Any], None]) -> list[Any]:
        """Commands queued on a cluster pipeline: one round trip per node."""
        pipe = self._redis.pipeline(transaction=False)
        queue(pipe)
        return cast("list[Any]", pipe.execute())

    def peek_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """`peek` for many keys: one MGET, or one pipelined round trip per node on a cluster."""
        with self._guard.call("lookup"):
            if self._connections is not None:
                return cast("list[bytes | None]", self._connections.call(packed(b"MGET", *(k.encode() for k in keys))))
            return self._pipelined(partial(queue_peeks, keys=keys))

    def lookup_many(self, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> list[bytes | None]:
        """`lookup` for many keys: one script call, or one pipelined round trip per node on a cluster."""
        with self._guard.call("lookup"):
            if self._connections is not None:
                return cast(
                    "list[bytes | None]",
                    self._script(_lease.LEASE_MANY, _lease.lease_many_arguments(keys, leases, lease_ms)),
                )
            return self._pipelined(partial(queue_lookups, keys=keys, leases=leases, lease_ms=lease_ms))

    def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        """`settle` for many keys: one script call, or one round trip per node on a cluster."""
        with self._guard.call("fill"):
            if self._connections is not None:
                results = self._script(_lease.SETTLE_MANY, _lease.settle_many_arguments(settlements))
            else:
                results = self._pipelined(partial(queue_settlements, settlements=settlements))
        return [bool(result) for result in results]

    def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self._guard.call("delete"):
            if self._connections is not None:
                self._connections.call(packed(b"DEL", *(key.encode() for key in keys)))
            else:  # a cluster client groups the keys by node: one round trip per node
                self._redis.delete(*keys)

    def purge(self, pattern: str) -> None:
        with self._guard.call("purge"):
            batch: list[bytes] = []
            for key in self._redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                self._redis.unlink(*batch)

    def close(self) -> None:
        """Close the connections this transport opened (the caller's client is left alone)."""
        for connections in [self._connections, *self._node_connections.values()]:
            if connections is not None:
                connections.close()
        self._redis.close()
