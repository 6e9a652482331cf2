"""Bytes-only Redis transports: the sessions decide what to cache, these only move bytes.

Both transports bound every call (``timeout``), share one circuit breaker implementation,
and convert every Redis error into `TransportError` in one place, so the sessions can treat
any Redis failure as a miss (fail-open).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import weakref
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, NoReturn, TypeVar, cast

import redis
import redis.cluster
from hiredis import pack_command
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, RedisError, TryAgainError
from redis.retry import Retry

from ._breaker import CircuitBreaker
from ._errors import CircuitOpen, ConfigurationError, TransportError

__all__ = ["DEFAULT_TIMEOUT", "RedisAsyncTransport", "RedisSyncTransport"]

T = TypeVar("T")

# Well under a database round trip on a LAN: a slow Redis must not be slower than no Redis.
DEFAULT_TIMEOUT: Final = 0.1
DEFAULT_FAILURE_THRESHOLD: Final = 5
DEFAULT_COOLDOWN: Final = 2.0

# Publish the row only if the key still holds this reader's lease: an eviction in
# between deleted the lease, and then the row the reader holds may predate a commit.
FILL_IF_LEASE_HELD: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""

# The same for many keys at once (a single server only: a cluster needs one slot per script).
FILL_MANY_IF_LEASES_HELD: Final = """
local stored = {}
for i = 1, #KEYS do
  local at = (i - 1) * 3
  if redis.call('GET', KEYS[i]) == ARGV[at + 1] then
    redis.call('SET', KEYS[i], ARGV[at + 2], 'PX', ARGV[at + 3])
    stored[i] = 1
  else
    stored[i] = 0
  end
end
return stored
"""

# `lookup` for many keys on one server: one command, one array reply. Each key gets its
# own lease; a key that holds a value (or another reader's lease) answers with it.
LEASE_MANY: Final = """
local px = ARGV[#ARGV]
local found = {}
for i = 1, #KEYS do
  found[i] = redis.call('SET', KEYS[i], ARGV[i], 'NX', 'PX', px, 'GET')
end
return found
"""

# Pool settings that belong to one pool instance and must not be copied to another.
_POOL_PRIVATE_KWARGS: Final = ("maint_notifications_pool_handler",)


def _check_settings(timeout: float, failure_threshold: int, cooldown: float, transport: str) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise ConfigurationError(f"{transport}(timeout=...) must be seconds between 0 and 60, got {timeout!r}")
    if isinstance(failure_threshold, bool) or not isinstance(failure_threshold, int) or failure_threshold < 1:
        raise ConfigurationError(f"{transport}(failure_threshold=...) must be an int >= 1, got {failure_threshold!r}")
    if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or cooldown <= 0:
        raise ConfigurationError(f"{transport}(cooldown=...) must be positive seconds, got {cooldown!r}")


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _check_binary_client(client: Any, transport: str) -> None:
    get_kwargs = getattr(client, "get_connection_kwargs", None)
    kwargs: dict[str, Any] = get_kwargs() if callable(get_kwargs) else {}
    if kwargs.get("decode_responses"):
        raise ConfigurationError(
            f"{transport} needs a Redis client that returns bytes; create it without "
            "decode_responses=True (the cache stores binary msgpack values)"
        )


def _bounded_client(client: redis.Redis, timeout: float) -> redis.Redis:
    """A client on the same server as ``client`` whose every call ends within ``timeout``.

    The caller's client keeps its own settings; ours gets short socket timeouts (half the
    bound each for connecting and for the reply) and no retries, since a retry is a wait.
    """
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


# Connection settings that belong to one cluster client and must not be copied to another.
_CLUSTER_PRIVATE_KWARGS: Final = ("redis_connect_func", "oss_cluster_maint_notifications_handler")


def _bounded_cluster_client(client: redis.cluster.RedisCluster, timeout: float) -> redis.cluster.RedisCluster:
    """As `_bounded_client`, for a cluster: same nodes and credentials, short timeouts, no retries."""
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


def _packed(*parts: bytes) -> list[bytes]:
    """A command in RESP, as ``Connection.send_packed_command`` takes it (hiredis packs it in C)."""
    return [pack_command(parts)]  # type: ignore[arg-type]  # the stub says a 1-tuple; any length is packed


_fork_generation = 0


def _after_fork() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_after_fork)


class _ThreadConnections:
    """One connection per thread for the hot single-key calls, made by the transport's pool.

    Taking a connection from the pool and giving it back costs more than the round trip's
    own client work; a thread's own connection costs nothing. A forked child never uses its
    parent's sockets: each fork starts a new generation.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._local = threading.local()
        self._all: weakref.WeakSet[Any] = weakref.WeakSet()

    def get(self) -> Any:
        local = self._local
        if getattr(local, "generation", -1) == _fork_generation:
            return local.connection
        connection = self._pool.make_connection()
        local.connection, local.generation = connection, _fork_generation
        self._all.add(connection)
        return connection

    def close(self) -> None:
        for connection in list(self._all):
            connection.disconnect()


def _queue_lookups(pipe: Any, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> None:
    """Queue `lookup`s on a sync or asyncio cluster pipeline (a script cannot span slots)."""
    for key, lease in zip(keys, leases, strict=True):
        pipe.execute_command("SET", key, lease, "NX", "PX", lease_ms, "GET", get=True)


def _queue_peeks(pipe: Any, keys: Sequence[str]) -> None:
    """Queue `peek`s on a sync or asyncio cluster pipeline (MGET cannot span slots)."""
    for key in keys:
        pipe.get(key)


def _queue_fills(pipe: Any, fills: Sequence[tuple[str, bytes, bytes, int]]) -> None:
    """Queue `fill`s on a sync or asyncio cluster pipeline, which cannot load scripts: each
    sends the small script's source."""
    for key, lease, value, ttl_ms in fills:
        pipe.execute_command("EVAL", FILL_IF_LEASE_HELD, 1, key, lease, value, ttl_ms)


class _Guard:
    """What both transports share: the breakers, the bound, and the error conversion.

    On a single server one breaker guards every call. On a cluster each node has its own
    for the single-key calls, so a dead master only sends its own keys to the database;
    multi-key calls, which span nodes, use the transport-wide one.
    """

    _cluster_client: Any = None

    def __init__(self, timeout: float, failure_threshold: int, cooldown: float) -> None:
        self.timeout = timeout
        self.breaker = CircuitBreaker(failure_threshold, cooldown)
        self._node_breakers: dict[str, CircuitBreaker] = {}

    def _node_of(self, key: str | None) -> Any:
        """The cluster node that serves ``key`` (``None`` on one server, or while unknown)."""
        cluster = self._cluster_client
        if cluster is None or key is None:
            return None
        try:
            # The slot's primary, read as ``get_node_from_slot`` reads it, without its lock and
            # argument checks (a dict read is atomic); the slot of the bytes we send.
            return cluster.nodes_manager.slots_cache[key_slot(key.encode())][0]
        except Exception:  # topology being refreshed
            return None

    def _breaker_for(self, key: str | None, node: Any) -> CircuitBreaker:
        if self._cluster_client is None or key is None:
            return self.breaker
        # An unknown node gets a breaker of its own: its failures never stop the calls to
        # the nodes that answer.
        name = node.name if node is not None else "?"
        breaker = self._node_breakers.get(name)
        if breaker is None:
            breaker = self._node_breakers.setdefault(
                name, CircuitBreaker(self.breaker.failure_threshold, self.breaker.cooldown)
            )
        return breaker

    def enter_node(self, operation: str, key: str) -> tuple[CircuitBreaker, Any]:
        """`enter` for one key, with the cluster node that serves it."""
        node = self._node_of(key)
        breaker = self._breaker_for(key, node)
        if not breaker.allow():
            raise CircuitOpen(f"Redis {operation} skipped: the circuit is open after repeated failures")
        return breaker, node

    def enter(self, operation: str, key: str | None = None) -> CircuitBreaker:
        if key is not None:
            return self.enter_node(operation, key)[0]
        if not self.breaker.allow():
            raise CircuitOpen(f"Redis {operation} skipped: the circuit is open after repeated failures")
        return self.breaker

    def failed(self, exc: BaseException, operation: str, breaker: CircuitBreaker) -> NoReturn:
        breaker.failure()
        raise TransportError(f"Redis {operation} failed: {type(exc).__name__}: {exc}") from exc

    @property
    def breaker_state(self) -> str:
        """ "open" if the transport-wide breaker or any node's is open, else its state."""
        states = [self.breaker.state, *(b.state for b in self._node_breakers.values())]
        return next((s for s in ("open", "half-open") if s in states), "closed")

    @property
    def breaker_trips(self) -> int:
        return self.breaker.trips + sum(b.trips for b in self._node_breakers.values())


class RedisSyncTransport(_Guard):
    """The transport for `CachedSession`: wraps ``redis.Redis`` or ``redis.cluster.RedisCluster``.

    ``timeout`` bounds every call (whatever the client's own timeouts); after
    ``failure_threshold`` consecutive failures Redis is left alone for ``cooldown`` seconds.
    """

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
        given: object = client  # checked at run time: a wrong client must fail here, clearly
        if not isinstance(given, (redis.Redis, redis.cluster.RedisCluster)):
            hint = (
                "; for an asyncio client use RedisAsyncTransport"
                if type(given).__module__.startswith("redis.asyncio")
                else ""
            )
            raise ConfigurationError(
                "RedisSyncTransport needs a redis.Redis or redis.cluster.RedisCluster client, "
                f"got {type(given).__name__}{hint}"
            )
        _check_binary_client(client, "RedisSyncTransport")
        _check_settings(timeout, failure_threshold, cooldown, "RedisSyncTransport")
        super().__init__(timeout, failure_threshold, cooldown)
        self.client = client
        self._redis: redis.Redis | redis.cluster.RedisCluster = (
            _bounded_client(client, timeout)
            if isinstance(client, redis.Redis)
            else _bounded_cluster_client(client, timeout)
        )
        self._fill_script = self._redis.register_script(FILL_IF_LEASE_HELD)
        self._shas = {
            source: self._redis.register_script(source).sha.encode()
            for source in (FILL_IF_LEASE_HELD, FILL_MANY_IF_LEASES_HELD, LEASE_MANY)
        }
        self._cluster = isinstance(client, redis.cluster.RedisCluster)
        # On a single server the hot calls skip the client's command machinery and use a
        # connection of their own thread, made by the pool this transport owns.
        self._connections = None if self._cluster else _ThreadConnections(self._redis.connection_pool)  # type: ignore[union-attr]
        self._node_connections: dict[str, _ThreadConnections] = {}
        self._cluster_client = self._redis if self._cluster else None

    def _call(self, packed: list[bytes]) -> Any:
        connection = self._connections.get()  # type: ignore[union-attr]
        try:
            connection.send_packed_command(packed)
            return connection.read_response()
        except BaseException:
            connection.disconnect()  # the reply may be half read: reconnect next time
            raise

    def _node_connections_for(self, node: Any, breaker: CircuitBreaker) -> _ThreadConnections | None:
        """On a cluster, the thread connections of the key's node, while that node is healthy.

        After any failure the cluster client's own path is used until a call succeeds
        again: it follows failovers and refreshes the slot map, which this path does not.
        """
        if node is None or not breaker.healthy:
            return None
        connections = self._node_connections.get(node.name)
        if connections is None and node.redis_connection is not None:
            connections = self._node_connections.setdefault(
                node.name, _ThreadConnections(node.redis_connection.connection_pool)
            )
        return connections

    def _call_on_node(self, connections: _ThreadConnections, packed: list[bytes], fallback: Any) -> Any:
        connection = connections.get()
        try:
            connection.send_packed_command(packed)
            return connection.read_response()
        except (MovedError, AskError, TryAgainError, ClusterDownError):
            return fallback()  # the slot moved: the cluster client follows it and updates its map
        except NoScriptError:
            return fallback()  # the client's script object loads the script
        except BaseException:
            connection.disconnect()
            raise

    def _single_key(self, operation: str, key: str, packed: list[bytes], through_client: Any) -> Any:
        """One pre-packed single-key command: on this thread's connection to the server, or
        to the key's node while it is healthy; else (and when a script must be loaded)
        ``through_client()``, which goes through the client's own machinery."""
        breaker, node = self.enter_node(operation, key)
        try:
            if self._connections is not None:
                try:
                    value = self._call(packed)
                except NoScriptError:
                    value = through_client()
            else:
                connections = self._node_connections_for(node, breaker)
                if connections is not None:
                    value = self._call_on_node(connections, packed, through_client)
                else:
                    value = through_client()
        except RedisError as exc:
            self.failed(exc, operation, breaker)
        breaker.success()
        return value

    def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None:
        """The value at ``key``; if there is none, take the lease there and return ``None``."""

        def through_client() -> Any:
            return self._redis.execute_command("SET", key, lease, "NX", "PX", lease_ms, "GET", get=True)  # type: ignore[no-untyped-call]

        packed = _packed(b"SET", key.encode(), lease, b"NX", b"PX", b"%d" % lease_ms, b"GET")
        return cast("bytes | None", self._single_key("lookup", key, packed, through_client))

    def peek(self, key: str) -> bytes | None:
        """The value at ``key``, taking no lease: for readers that will not fill."""
        return cast(
            "bytes | None",
            self._single_key("lookup", key, _packed(b"GET", key.encode()), partial(self._redis.get, key)),
        )

    def fill(self, key: str, lease: bytes, value: bytes, ttl_ms: int) -> bool:
        """Store ``value`` if ``key`` still holds ``lease``; ``False`` if the lease was lost."""
        arguments = (lease, value, ttl_ms)
        packed = _packed(b"EVALSHA", self._shas[FILL_IF_LEASE_HELD], b"1", key.encode(), lease, value, b"%d" % ttl_ms)
        return bool(self._single_key("fill", key, packed, partial(self._fill_script, keys=[key], args=arguments)))

    def _call_script(self, source: str, arguments: Sequence[bytes]) -> Any:
        """EVALSHA of ``source`` on the thread connection, loading the script where the server lost it."""
        command = _packed(b"EVALSHA", self._shas[source], *arguments)
        try:
            return self._call(command)
        except NoScriptError:  # a restarted or flushed server: load the script once more
            self._redis.script_load(source)
            return self._call(command)

    def _pipelined(self, queue: Callable[[Any], None]) -> list[Any]:
        """Commands queued on a cluster pipeline: one round trip per node."""
        pipe = self._redis.pipeline(transaction=False)
        queue(pipe)
        return cast("list[Any]", pipe.execute())

    def peek_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """`peek` for many keys: one MGET, or one pipelined round trip per node on a cluster."""
        breaker = self.enter("lookup")
        try:
            if self._connections is not None:
                values = self._call(_packed(b"MGET", *(key.encode() for key in keys)))
            else:
                values = self._pipelined(partial(_queue_peeks, keys=keys))
        except RedisError as exc:
            self.failed(exc, "lookup", breaker)
        breaker.success()
        return cast("list[bytes | None]", values)

    def lookup_many(self, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> list[bytes | None]:
        """`lookup` for many keys: one script call, or one pipelined round trip per node on a cluster."""
        breaker = self.enter("lookup")
        try:
            if self._connections is not None:
                arguments = [b"%d" % len(keys)]
                arguments += (key.encode() for key in keys)
                arguments += leases
                arguments.append(b"%d" % lease_ms)
                values = self._call_script(LEASE_MANY, arguments)
            else:
                values = self._pipelined(partial(_queue_lookups, keys=keys, leases=leases, lease_ms=lease_ms))
        except RedisError as exc:
            self.failed(exc, "lookup", breaker)
        breaker.success()
        return cast("list[bytes | None]", values)

    def fill_many(self, fills: Sequence[tuple[str, bytes, bytes, int]]) -> list[bool]:
        """`fill` for many ``(key, lease, value, ttl_ms)``: one script call, or one round trip per node."""
        breaker = self.enter("fill")
        try:
            if self._connections is not None:
                arguments: list[bytes] = [b"%d" % len(fills)]
                arguments += (key.encode() for key, _, _, _ in fills)
                for _, lease, value, ttl_ms in fills:
                    arguments += (lease, value, b"%d" % ttl_ms)
                results = self._call_script(FILL_MANY_IF_LEASES_HELD, arguments)
            else:
                results = self._pipelined(partial(_queue_fills, fills=fills))
        except RedisError as exc:
            self.failed(exc, "fill", breaker)
        breaker.success()
        return [bool(result) for result in results]

    def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        breaker = self.enter("delete")
        try:
            if self._connections is not None:
                self._call(_packed(b"DEL", *(key.encode() for key in keys)))
            else:  # a cluster client groups the keys by node: one round trip per node
                self._redis.delete(*keys)
        except RedisError as exc:
            self.failed(exc, "delete", breaker)
        breaker.success()

    def purge(self, prefix: str) -> None:
        """Delete every key under ``prefix`` (a recovery step; it scans, so it is slow)."""
        breaker = self.enter("purge")
        try:
            batch: list[bytes] = []
            for key in self._redis.scan_iter(match=f"{_glob_escape(prefix)}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                self._redis.unlink(*batch)
        except RedisError as exc:
            self.failed(exc, "purge", breaker)
        breaker.success()

    def close(self) -> None:
        """Close the connections this transport opened (the caller's client is left alone)."""
        for connections in [self._connections, *self._node_connections.values()]:
            if connections is not None:
                connections.close()
        if self._redis is not self.client:
            self._redis.close()

    def __repr__(self) -> str:
        return f"RedisSyncTransport({self.client!r}, timeout={self.timeout})"


if sys.version_info >= (3, 11):

    async def _bounded(awaitable: Awaitable[T], timeout: float) -> T:
        async with asyncio.timeout(timeout):
            return await awaitable

else:  # pragma: no cover - Python 3.10

    async def _bounded(awaitable: Awaitable[T], timeout: float) -> T:
        return await asyncio.wait_for(awaitable, timeout)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # a late failure is expected here: it was already a miss


async def _bounded_uncancelled(awaitable: Awaitable[T], timeout: float) -> T:
    """As `_bounded`, but a late call runs to its end in the background instead of being
    cancelled: redis-py's cluster client may be refreshing its slot map inside a call, and
    cancelling it there leaves the client in a state its next calls cannot trust."""
    task = asyncio.ensure_future(awaitable)
    try:
        return await asyncio.wait_for(asyncio.shield(task), timeout)
    except BaseException:
        task.add_done_callback(_retrieve)
        raise


# asyncio.TimeoutError is the builtin TimeoutError only from Python 3.11 on.
_ASYNC_FAILURES: Final = (RedisError, TimeoutError, asyncio.TimeoutError, OSError)


class RedisAsyncTransport(_Guard):
    """The transport for `AsyncCachedSession`: wraps ``redis.asyncio.Redis`` or its cluster client.

    Every call is cancelled after ``timeout`` seconds (redis-py drops a connection whose
    reply was interrupted); the breaker works as for `RedisSyncTransport`.
    """

    def __init__(
        self,
        client: Any,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
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
        _check_settings(timeout, failure_threshold, cooldown, "RedisAsyncTransport")
        super().__init__(timeout, failure_threshold, cooldown)
        self.client = client
        self._shas = {
            source: client.register_script(source).sha
            for source in (FILL_IF_LEASE_HELD, FILL_MANY_IF_LEASES_HELD, LEASE_MANY)
        }
        self._cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._bound = _bounded_uncancelled if self._cluster else _bounded
        self._cluster_client = client if self._cluster else None

    async def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None:
        breaker = self.enter("lookup", key)
        try:
            value = await self._bound(
                self.client.execute_command("SET", key, lease, "NX", "PX", lease_ms, "GET", get=True), self.timeout
            )
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "lookup", breaker)
        breaker.success()
        return cast("bytes | None", value)

    async def peek(self, key: str) -> bytes | None:
        breaker = self.enter("lookup", key)
        try:
            value = await self._bound(self.client.get(key), self.timeout)
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "lookup", breaker)
        breaker.success()
        return cast("bytes | None", value)

    async def fill(self, key: str, lease: bytes, value: bytes, ttl_ms: int) -> bool:
        breaker = self.enter("fill", key)
        try:
            stored = bool(
                await self._bound(self._evalsha(FILL_IF_LEASE_HELD, 1, key, lease, value, ttl_ms), self.timeout)
            )
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "fill", breaker)
        breaker.success()
        return stored

    async def _evalsha(self, source: str, *arguments: Any) -> Any:
        """EVALSHA of ``source``, loading the script where the server lost it."""
        command = ("EVALSHA", self._shas[source], *arguments)
        try:
            return await self.client.execute_command(*command)
        except NoScriptError:  # a restarted or flushed server: load the script once more
            await self.client.script_load(source)
            return await self.client.execute_command(*command)

    async def _pipelined(self, queue: Callable[[Any], None]) -> list[Any]:
        """Commands queued on a cluster pipeline, within the bound: one round trip per node."""
        pipe = self.client.pipeline(transaction=False)
        queue(pipe)
        return cast("list[Any]", await self._bound(pipe.execute(), self.timeout))

    async def peek_many(self, keys: Sequence[str]) -> list[bytes | None]:
        breaker = self.enter("lookup")
        try:
            if self._cluster:
                values = await self._pipelined(partial(_queue_peeks, keys=keys))
            else:
                values = await self._bound(self.client.mget(keys), self.timeout)
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "lookup", breaker)
        breaker.success()
        return cast("list[bytes | None]", values)

    async def lookup_many(self, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> list[bytes | None]:
        breaker = self.enter("lookup")
        try:
            if self._cluster:
                values = await self._pipelined(partial(_queue_lookups, keys=keys, leases=leases, lease_ms=lease_ms))
            else:
                values = await self._bound(self._evalsha(LEASE_MANY, len(keys), *keys, *leases, lease_ms), self.timeout)
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "lookup", breaker)
        breaker.success()
        return cast("list[bytes | None]", values)

    async def fill_many(self, fills: Sequence[tuple[str, bytes, bytes, int]]) -> list[bool]:
        breaker = self.enter("fill")
        try:
            if self._cluster:
                results = await self._pipelined(partial(_queue_fills, fills=fills))
            else:
                arguments: list[Any] = [key for key, _, _, _ in fills]
                for _, lease, value, ttl_ms in fills:
                    arguments += (lease, value, ttl_ms)
                results = await self._bound(
                    self._evalsha(FILL_MANY_IF_LEASES_HELD, len(fills), *arguments), self.timeout
                )
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "fill", breaker)
        breaker.success()
        return [bool(result) for result in results]

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        breaker = self.enter("delete")
        try:
            await self._bound(self.client.delete(*keys), self.timeout)
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "delete", breaker)
        breaker.success()

    async def purge(self, prefix: str) -> None:
        """Delete every key under ``prefix`` (a recovery step; it scans, so it is slow)."""
        breaker = self.enter("purge")
        try:
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=f"{_glob_escape(prefix)}:*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await self._bound(self.client.unlink(*batch), self.timeout)
                    batch.clear()
            if batch:
                await self._bound(self.client.unlink(*batch), self.timeout)
        except _ASYNC_FAILURES as exc:
            self.failed(exc, "purge", breaker)
        breaker.success()

    def __repr__(self) -> str:
        return f"RedisAsyncTransport({self.client!r}, timeout={self.timeout})"
