"""`RedisAsyncTransport`: owns the asyncio I/O to one Redis server (or Sentinel service) or a
Redis Cluster.

Data commands borrow connections of the application's own pools (so closing its client
closes everything), connect them in one attempt (a refused connection fails at once, with its
real cause, instead of retrying until the bound), and never go through the client's command
machinery: on a cluster that machinery re-reads the layout inside the next command after a
failure, which would spend every key's bound on one dead master.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.cluster
from redis.cluster import PRIMARY
from redis.exceptions import ClusterDownError, ConnectionError, ResponseError

from sqlmodel_cache import _lease
from sqlmodel_cache._errors import TransportError
from sqlmodel_cache._lease import Settlement

from ._base import GuardedTransport
from ._borrowed import Commands, in_step, on, owes
from ._bound import bounded
from ._clients import tracking_factory
from ._cluster import Router
from ._coalesce import Coalescer
from ._commands import OPERATION_OF, Scripts, key_commands, place, publishable, published
from ._connections import packed
from ._contract import Answer, Answers
from ._guard import REDIRECTS

__all__ = ["RedisAsyncTransport"]

T = TypeVar("T")


class RedisAsyncTransport(GuardedTransport["redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"]):
    """The transport for `AsyncCachedSession`: wraps ``redis.asyncio.Redis`` (a Sentinel-managed
    one too) or ``redis.asyncio.cluster.RedisCluster``.

    Every call is cancelled after ``timeout`` seconds; its connection is kept for the next call
    to that server, which reads the replies still owed first (with redis-py's Python parser,
    which may lose a reply half read, it is dropped instead). The breaker works as for
    `RedisSyncTransport`.
    """

    is_async: ClassVar[bool] = True
    _clients = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
    _clients_named = "a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster"
    _other_clients = (redis.Redis, redis.cluster.RedisCluster)
    _other_transport = "RedisSyncTransport"

    def _start(self) -> Any:
        client = self.client
        self._router: Router | None = None
        self._refreshes: set[asyncio.Task[None]] = set()
        # Per event loop and server (cluster master), the single-key commands of concurrent
        # tasks share a write and a read.
        self._coalescers: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str | None, tuple[Any, Coalescer]]
        ] = weakref.WeakKeyDictionary()
        # Per event loop and server (cluster node name), the connection a cut exchange left
        # owing replies, with the pool (or node) it goes back to once they are read.
        self._owing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str | None, tuple[Any, Any]]] = (
            weakref.WeakKeyDictionary()
        )
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            self._router = Router(client, self._refresh_in_background)
        self._scripts = Scripts(lambda source: client.register_script(source).sha.encode())
        self._targets: dict[str, Callable[[], Any]] = {}
        self._targets_of: Any = None
        return self._router

    def _tracking_targets(self) -> dict[str, Callable[[], Any]]:
        # The server (or the Sentinel service's master), or every cluster master, as the
        # layout says now; built again only when a refresh replaced the slot map.
        if self._router is None:
            if not self._targets:
                pool = cast(Any, self.client).connection_pool
                self._targets = {
                    "the server": tracking_factory(pool, pool.connection_class, pool.connection_kwargs, self.timeout)
                }
            return self._targets
        nodes_manager = cast(Any, self.client).nodes_manager
        slots = nodes_manager.slots_cache
        if self._targets_of is not slots:
            targets = {}
            for node in list(nodes_manager.nodes_cache.values()):
                if node.server_type == PRIMARY:
                    targets[node.name] = tracking_factory(
                        None, node.connection_class, node.connection_kwargs, self.timeout
                    )
            self._targets, self._targets_of = targets, slots
        return self._targets

    def _refresh_in_background(self) -> None:
        router = self._router
        assert router is not None
        nodes_manager = cast(Any, self.client).nodes_manager

        async def refresh() -> None:
            try:
                await nodes_manager.initialize()
            except Exception:  # the next failure asks again
                pass
            finally:
                router.refreshed()

        task = asyncio.get_running_loop().create_task(refresh())
        self._refreshes.add(task)
        task.add_done_callback(self._refreshes.discard)

    async def _send(self, node: Any, commands: Commands, sources: Sequence[str] = ()) -> tuple[Any, bytes | None]:
        """``commands`` on a borrowed connection to the server (or ``node``), in one write;
        their replies (the one reply, if one was sent) and the server lifetime that gave them.
        ``commands`` may be a function of that lifetime, known before anything is sent."""
        return await self._on_connection(node, lambda connection: on(connection, commands, sources))

    async def _on_connection(self, node: Any, exchange: Callable[[Any], Awaitable[T]]) -> T:
        """``exchange`` on a borrowed connection to the server (or ``node``): the one that a cut
        exchange left owing replies there, if any (see `AsyncLink`)."""
        if self._router is not None and node is None:
            raise ClusterDownError("the cluster's layout is not known yet")
        loop = asyncio.get_running_loop()
        owing = self._owing.get(loop)
        if owing is None:
            owing = self._owing[loop] = {}
        name = None if node is None else node.name
        kept = owing.pop(name, None)
        home, connection = kept if kept is not None else self._borrow(node)
        stale = connection._writer is not None  # connected before: the server may have gone since
        # The exchange is bounded as a whole by its caller: while borrowed, the connection
        # waits on no timer of its own (a timer per read costs more than the read).
        socket_timeout, connection.socket_timeout = connection.socket_timeout, None
        try:
            try:
                return await exchange(connection)
            except ConnectionError:
                if not stale:
                    raise
                await connection.disconnect(nowait=True)  # found closed: reconnect once
                return await exchange(connection)
        except ResponseError as error:
            if isinstance(error, REDIRECTS) and self._router is not None:
                self._router.stale()
            raise
        except asyncio.CancelledError:  # cut by its bound, or its caller's task cancelled
            if not in_step(connection):
                await connection.disconnect(nowait=True)  # the reply may be half read
            raise
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            if connection.socket_timeout is None:  # unless changed meanwhile (by a server's notice)
                connection.socket_timeout = socket_timeout
            owing_replies = owes(connection)
            if owing_replies and name not in owing:  # for the next exchange there, not the application
                owing[name] = (home, connection)
            else:
                if owing_replies:  # a concurrent exchange's connection is kept already
                    await connection.disconnect(nowait=True)
                if self._router is None:
                    await home.release(connection)
                else:
                    home.release(connection)

    def _borrow(self, node: Any) -> tuple[Any, Any]:
        """A connection of the application's pool for the server (or ``node``), with where it
        goes back."""
        if self._router is None:
            pool = cast(Any, self.client).connection_pool
            return pool, pool.get_available_connection()
        return node, node.acquire_connection()

    async def _one(self, operation: str, key: str, commands: Commands, source: str | None = None) -> Answer:
        sources = (source,) if source else ()
        with self._guard.call(operation, key) as call:
            if self._router is not None and call.node is None:
                raise ClusterDownError("the cluster's layout is not known yet")
            # With the other tasks' commands to the same server, bounded there.
            reply, epoch = await self._coalescer(call.node).call(commands, sources)
        return reply, call.lifetime(epoch, reply)

    def _coalescer(self, node: Any) -> Coalescer:
        """The batches of this event loop to the server, or to one cluster master (a node
        that a layout refresh replaced gets a coalescer of its own)."""
        loop = asyncio.get_running_loop()
        by_node = self._coalescers.get(loop)
        if by_node is None:
            by_node = self._coalescers[loop] = {}
        name = None if node is None else node.name
        known = by_node.get(name)
        if known is not None and known[0] is node:
            return known[1]

        async def send_one(commands: Commands, sources: Sequence[str]) -> tuple[Any, bytes | None]:
            return await bounded(self._send(node, commands, sources), self.timeout)

        async def send(exchange: Callable[[Any], Awaitable[Any]], seconds: float) -> Any:
            return await bounded(self._on_connection(node, exchange), seconds)

        coalescer = Coalescer(send_one, send, self.timeout)
        by_node[name] = (node, coalescer)
        return coalescer

    async def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        return await self._one("lookup", key, [packed(*_lease.lookup_command(key.encode(), lease, lease_ms))])

    async def lease_over(self, key: str, found: bytes, lease: bytes, lease_ms: int) -> Answer:
        return await self._one("lookup", key, [self._scripts.lookup(key, lease, found, lease_ms)], _lease.LEASE_OVER)

    async def peek(self, key: str) -> Answer:
        return await self._one("lookup", key, [packed(b"GET", key.encode())])

    async def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int, epoch: bytes | None) -> bool:
        # A lease of another server lifetime than the connection's authorizes nothing but its
        # own removal; a connection cannot outlive its server, so its lifetime is the one that
        # runs the script.
        def commands(lifetime: bytes | None) -> list[bytes]:
            return [self._scripts.settle(*publishable((key, lease, value, ttl_ms), epoch, lifetime))]

        held, lifetime = await self._one("fill", key, commands, _lease.SETTLE)
        return bool(held) and value is not None and lifetime == epoch

    async def _share(self, kind: str, node: Any, positions: list[int], keys: Sequence[str], arguments: Any) -> Any:
        """One master's share of a multi-key call, in one round trip: its replies, or its failure."""
        try:
            with self._guard.call(OPERATION_OF[kind], keys[positions[0]]) as call:

                def commands(lifetime: bytes | None) -> list[bytes]:
                    return key_commands(kind, self._scripts, positions, (keys, *arguments), lifetime)

                replies, epoch = await bounded(self._send(node, commands, _lease.SCRIPTS), self.timeout)
        except TransportError as exc:
            return exc
        return positions, replies if len(positions) > 1 else [replies], epoch, call.trusted

    async def _per_node(self, kind: str, keys: Sequence[str], *arguments: Any) -> Answers:
        """A multi-key call on a cluster: each master's share at once; a master that fails
        costs only its own keys."""
        assert self._router is not None
        values: list[Any] = [None] * len(keys)
        epochs: list[bytes | None] = [None] * len(keys)
        failure: TransportError | None = None
        groups = self._router.group(keys).items()
        for outcome in await asyncio.gather(*(self._share(kind, n, p, keys, arguments) for n, p in groups)):
            if isinstance(outcome, TransportError):
                failure = failure or outcome
            else:
                positions, replies, epoch, vouched = outcome
                if place(positions, replies, epoch, values, epochs, vouched):
                    self._router.stale()
        return Answers(values, epochs, failure)

    async def _many(self, operation: str, commands: Commands, count: int, source: str | None = None) -> Answers:
        """A multi-key call on one server: one command."""
        with self._guard.call(operation) as call:
            values, epoch = await bounded(self._send(None, commands, (source,) if source else ()), self.timeout)
        if call.trusted:
            return Answers(values, [epoch] * count)
        return Answers(values, [call.lifetime(epoch, value) for value in values])

    async def peek_many(self, keys: Sequence[str]) -> Answers:
        if self._router is not None:
            return await self._per_node("peek", keys)
        return await self._many("lookup", [packed(b"MGET", *(key.encode() for key in keys))], len(keys))

    async def lookup_many(
        self, keys: Sequence[str], leases: Sequence[bytes], replacing: Sequence[bytes | None], lease_ms: int
    ) -> Answers:
        if self._router is not None:
            return await self._per_node("lookup", keys, leases, replacing, lease_ms)
        arguments = _lease.lease_many_arguments(keys, leases, replacing, lease_ms)
        return await self._many(
            "lookup", [self._scripts.call(_lease.LEASE_MANY, arguments)], len(keys), _lease.LEASE_MANY
        )

    async def settle_many(self, settlements: Sequence[Settlement], epochs: Sequence[bytes | None]) -> list[bool]:
        if self._router is not None:
            answers = await self._per_node("settle", [key for key, _, _, _ in settlements], settlements, epochs)
        else:

            def commands(lifetime: bytes | None) -> list[bytes]:
                kept = [publishable(s, epoch, lifetime) for s, epoch in zip(settlements, epochs, strict=True)]
                return [self._scripts.call(_lease.SETTLE_MANY, _lease.settle_many_arguments(kept))]

            answers = await self._many("fill", commands, len(settlements), _lease.SETTLE_MANY)
        return published(settlements, answers, epochs)

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        if self._router is None:
            await self._many("delete", [packed(b"DEL", *(key.encode() for key in keys))], 0)
            return
        answers = await self._per_node("delete", keys)
        if answers.failure is not None:
            raise answers.failure  # kept whole: deleting a key twice is harmless, missing one is not

    async def fence(self, keys: Sequence[str]) -> None:
        # One more round trip to each server of ``keys``, after their deletion was answered.
        nodes = {} if self._router is None else {self._guard.node_of(key): key for key in keys}
        for key in nodes.values() if nodes else [None]:
            with self._guard.call("delete", key) as call:
                await bounded(self._send(call.node, [packed(b"PING")]), self.timeout)

    async def purge(self, pattern: str) -> None:
        with self._guard.call("purge"):
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await bounded(self.client.unlink(*batch), self.timeout)
                    batch.clear()
            if batch:
                await bounded(self.client.unlink(*batch), self.timeout)
