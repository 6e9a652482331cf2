"""`RedisSyncTransport`: owns the blocking I/O to one Redis server (or Sentinel service) or a
Redis Cluster."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.cluster import PRIMARY
from redis.exceptions import ClusterDownError, NoScriptError

from sqlmodel_cache import _lease
from sqlmodel_cache._errors import TransportError
from sqlmodel_cache._lease import Settlement

from ._base import GuardedTransport
from ._clients import bounded_client, bounded_cluster_client, connection_factory, tracking_factory
from ._cluster import Router
from ._commands import OPERATION_OF, Scripts, key_commands, place, publishable, published
from ._connections import Link, ThreadConnections, packed
from ._contract import Answer, Answers
from ._guard import REDIRECTS

__all__ = ["RedisSyncTransport"]

_PING = packed(b"PING")

# A packed command, or one made once the connection's server lifetime is known.
Command = bytes | Callable[[bytes | None], bytes]


class RedisSyncTransport(GuardedTransport["redis.Redis | redis.cluster.RedisCluster"]):
    """The transport for `CachedSession`: wraps ``redis.Redis`` (a Sentinel-managed one too)
    or ``redis.cluster.RedisCluster``.

    ``timeout`` bounds every call (whatever the client's own timeouts); after
    ``failure_threshold`` consecutive failures Redis is left alone for ``cooldown`` seconds.
    """

    is_async: ClassVar[bool] = False
    _clients = (redis.Redis, redis.cluster.RedisCluster)
    _clients_named = "a redis.Redis or redis.cluster.RedisCluster"
    _other_clients = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
    _other_transport = "RedisAsyncTransport"

    def _start(self) -> Any:
        # Data commands go over connections of this transport's own, one per thread: to the
        # server, or to each cluster master. The bounded copy of the client serves the rest
        # (the purge's SCAN, the cluster's layout).
        client = self.client
        self._router: Router | None = None
        self._server: ThreadConnections | None = None
        self._nodes: dict[str, ThreadConnections] = {}
        self._redis: Any
        if isinstance(client, redis.cluster.RedisCluster):
            self._redis = bounded_cluster_client(client, self.timeout)
            self._router = Router(self._redis, self._refresh_in_background)
        else:
            self._redis = bounded_client(client, self.timeout)
            pool = self._redis.connection_pool
            self._server = ThreadConnections(connection_factory(pool.connection_class, pool.connection_kwargs))
        self._scripts = Scripts(lambda source: self._redis.register_script(source).sha.encode())
        self._targets: dict[str, Callable[[], Any]] = {}
        self._targets_of: Any = None
        return self._router

    def _tracking_targets(self) -> dict[str, Callable[[], Any]]:
        # The server (or the Sentinel service's master), or every cluster master, as the
        # layout says now; built again only when a refresh replaced the slot map.
        if self._router is None:
            if not self._targets:
                pool = self._redis.connection_pool
                self._targets = {
                    "the server": tracking_factory(pool, pool.connection_class, pool.connection_kwargs, self.timeout)
                }
            return self._targets
        nodes_manager = self._redis.nodes_manager
        slots = nodes_manager.slots_cache
        if self._targets_of is not slots:
            targets = {}
            for node in list(nodes_manager.nodes_cache.values()):
                if node.server_type == PRIMARY:
                    pool = node.redis_connection.connection_pool
                    targets[node.name] = tracking_factory(
                        pool, pool.connection_class, pool.connection_kwargs, self.timeout
                    )
            self._targets, self._targets_of = targets, slots
        return self._targets

    def _refresh_in_background(self) -> None:
        assert self._router is not None
        router, nodes_manager = self._router, self._redis.nodes_manager

        def refresh() -> None:
            try:
                nodes_manager.initialize()
            except Exception:  # the next failure asks again
                pass
            finally:
                router.refreshed()

        threading.Thread(target=refresh, name="sqlmodel-cache-cluster-refresh", daemon=True).start()

    def _link(self, node: Any) -> Link:
        """This thread's link to the server, or to the key's master on a cluster."""
        if self._server is not None:
            return self._server.get()
        if node is None:
            raise ClusterDownError("the cluster's layout is not known yet")
        connections = self._nodes.get(node.name)
        if connections is None:
            pool = node.redis_connection.connection_pool
            connections = self._nodes.setdefault(
                node.name, ThreadConnections(connection_factory(pool.connection_class, pool.connection_kwargs))
            )
        return connections.get()

    def _call(self, link: Link, command: Command, source: str | None = None) -> Any:
        """One command on ``link``; a script the server lost is loaded there, then run again."""
        try:
            return link.call(command)
        except NoScriptError:
            if source is None:
                raise
            link.call(Scripts.load(source))
            return link.call(command)
        except REDIRECTS:
            if self._router is not None:
                self._router.stale()
            raise

    def _one(self, operation: str, key: str, command: Command, source: str | None = None) -> Answer:
        with self._guard.call(operation, key) as call:
            link = self._link(call.node)
            reply = self._call(link, command, source)
        return reply, call.lifetime(link.epoch, reply)

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        return self._one("lookup", key, packed(*_lease.lookup_command(key.encode(), lease, lease_ms)))

    def lease_over(self, key: str, found: bytes, lease: bytes, lease_ms: int) -> Answer:
        return self._one("lookup", key, self._scripts.lookup(key, lease, found, lease_ms), _lease.LEASE_OVER)

    def peek(self, key: str) -> Answer:
        return self._one("lookup", key, packed(b"GET", key.encode()))

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int, epoch: bytes | None) -> bool:
        published = False

        def command(lifetime: bytes | None) -> bytes:
            # A connection cannot outlive its server: the lifetime it learnt is the one that
            # runs this. A lease of another lifetime authorizes nothing but its own removal.
            nonlocal published
            settlement = publishable((key, lease, value, ttl_ms), epoch, lifetime)
            published = settlement[2] is not None
            return self._scripts.settle(*settlement)

        held = self._one("fill", key, command, _lease.SETTLE)[0]
        return bool(held) and published

    def _per_node(self, kind: str, keys: Sequence[str], *arguments: Any) -> Answers:
        """A multi-key call on a cluster: each master's share in one round trip, all sent
        before any is read; a master that fails costs only its own keys."""
        assert self._router is not None
        operation = OPERATION_OF[kind]
        values: list[Any] = [None] * len(keys)
        epochs: list[bytes | None] = [None] * len(keys)
        failure: TransportError | None = None
        sent = []
        for node, positions in self._router.group(keys).items():
            try:
                with self._guard.call(operation, keys[positions[0]]) as call:
                    link = self._link(node)
                    commands = key_commands(kind, self._scripts, positions, (keys, *arguments), link.lifetime())
                    link.send(commands)
                    sent.append((link, positions, commands, call.began))
            except TransportError as exc:
                failure = failure or exc
        for link, positions, commands, began in sent:
            try:
                with self._guard.call(operation, keys[positions[0]]) as call:
                    call.began = began
                    replies = link.receive(len(commands))
                    if any(isinstance(reply, NoScriptError) for reply in replies):  # a server that lost them
                        for source in _lease.SCRIPTS:
                            link.call(Scripts.load(source))
                        replies = link.pipeline(commands)
            except TransportError as exc:
                failure = failure or exc
                continue
            if place(positions, replies, link.epoch, values, epochs, call.trusted):
                self._router.stale()
        return Answers(values, epochs, failure)

    def peek_many(self, keys: Sequence[str]) -> Answers:
        """`peek` for many keys: one MGET, or one pipelined round trip per master on a cluster."""
        if self._router is not None:
            return self._per_node("peek", keys)
        with self._guard.call("lookup") as call:
            link = self._link(None)
            values = link.call(packed(b"MGET", *(key.encode() for key in keys)))
        return Answers(values, [call.lifetime(link.epoch, value) for value in values])

    def lookup_many(
        self, keys: Sequence[str], leases: Sequence[bytes], replacing: Sequence[bytes | None], lease_ms: int
    ) -> Answers:
        """`lookup` for many keys: one script call, or one pipelined round trip per master."""
        if self._router is not None:
            return self._per_node("lookup", keys, leases, replacing, lease_ms)
        with self._guard.call("lookup") as call:
            link = self._link(None)
            arguments = _lease.lease_many_arguments(keys, leases, replacing, lease_ms)
            values = self._call(link, self._scripts.call(_lease.LEASE_MANY, arguments), _lease.LEASE_MANY)
        return Answers(values, [call.lifetime(link.epoch, value) for value in values])

    def settle_many(self, settlements: Sequence[Settlement], epochs: Sequence[bytes | None]) -> list[bool]:
        """`settle` for many keys: one script call, or one pipelined round trip per master.
        ``True`` where a row was published (never under a lease of another lifetime)."""
        if self._router is not None:
            answers = self._per_node("settle", [key for key, _, _, _ in settlements], settlements, epochs)
        else:
            with self._guard.call("fill"):
                link = self._link(None)

                def command(lifetime: bytes | None) -> bytes:
                    kept = [publishable(s, epoch, lifetime) for s, epoch in zip(settlements, epochs, strict=True)]
                    return self._scripts.call(_lease.SETTLE_MANY, _lease.settle_many_arguments(kept))

                held = self._call(link, command, _lease.SETTLE_MANY)
                answers = Answers(held, [link.epoch] * len(settlements))
        return published(settlements, answers, epochs)

    def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        if self._router is not None:
            failure = self._per_node("delete", keys).failure
            if failure is not None:
                raise failure  # kept whole: deleting a key twice is harmless, missing one is not
            return
        with self._guard.call("delete"):
            self._link(None).call(packed(b"DEL", *(key.encode() for key in keys)))

    def fence(self, keys: Sequence[str]) -> None:
        # One more round trip to each server of ``keys``, after their deletion was answered.
        nodes = {} if self._router is None else {self._guard.node_of(key): key for key in keys}
        for key in nodes.values() if nodes else [None]:
            with self._guard.call("delete", key) as call:
                self._link(call.node).call(_PING)

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
        for connections in [self._server, *self._nodes.values()]:
            if connections is not None:
                connections.close()
        self._redis.close()
