"""`RedisAsyncTransport`: owns the asyncio I/O to one Redis server or a Redis Cluster."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, ClassVar, TypeVar, cast

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import NoScriptError

from sqlmodel_cache import _lease
from sqlmodel_cache._lease import Settlement

from ._base import GuardedTransport
from ._cluster import queue_lookups, queue_peeks, queue_settlements

__all__ = ["RedisAsyncTransport"]

T = TypeVar("T")

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


class RedisAsyncTransport(GuardedTransport["redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster"]):
    """The transport for `AsyncCachedSession`: wraps ``redis.asyncio.Redis`` or its cluster client.

    Every call is cancelled after ``timeout`` seconds (redis-py drops a connection whose
    reply was interrupted); the breaker works as for `RedisSyncTransport`.
    """

    is_async: ClassVar[bool] = True
    _clients = (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)
    _clients_named = "a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster"
    _other_clients = (redis.Redis, redis.cluster.RedisCluster)
    _other_transport = "RedisSyncTransport"

    def _start(self) -> Any:
        client = self.client
        self._cluster = isinstance(client, redis.asyncio.cluster.RedisCluster)
        self._bound = _bounded_uncancelled if self._cluster else _bounded
        self._shas = {source: client.register_script(source).sha for source in _lease.SCRIPTS}
        return client if self._cluster else None

    async def _evalsha(self, source: str, arguments: Sequence[Any]) -> Any:
        """EVALSHA of ``source``, loading the script where the server lost it."""
        command = ("EVALSHA", self._shas[source], *arguments)
        try:
            return await self.client.execute_command(*command)
        except NoScriptError:  # a restarted or flushed server: load the script once more
            await self.client.script_load(source)
            return await self.client.execute_command(*command)

    async def _pipelined(self, queue: Callable[[Any], None]) -> list[Any]:
        """Commands queued on a cluster pipeline: one round trip per node."""
        pipe = self.client.pipeline(transaction=False)
        queue(pipe)
        results: list[Any] = await pipe.execute()
        return results

    async def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None:
        _, *arguments = _lease.lookup_command(key.encode(), lease, lease_ms)
        with self._guard.call("lookup", key):
            return cast(
                "bytes | None",
                await self._bound(self.client.execute_command("SET", *arguments, get=True), self.timeout),
            )

    async def peek(self, key: str) -> bytes | None:
        with self._guard.call("lookup", key):
            return cast("bytes | None", await self._bound(self.client.get(key), self.timeout))

    async def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int) -> bool:
        arguments = _lease.settle_arguments(key.encode(), lease, value, ttl_ms)
        with self._guard.call("fill", key):
            return bool(await self._bound(self._evalsha(_lease.SETTLE, arguments), self.timeout))

    async def peek_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._guard.call("lookup"):
            if self._cluster:
                return await self._bound(self._pipelined(partial(queue_peeks, keys=keys)), self.timeout)
            return cast("list[bytes | None]", await self._bound(self.client.mget(keys), self.timeout))

    async def lookup_many(self, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> list[bytes | None]:
        with self._guard.call("lookup"):
            if self._cluster:
                queue = partial(queue_lookups, keys=keys, leases=leases, lease_ms=lease_ms)
                return await self._bound(self._pipelined(queue), self.timeout)
            arguments = _lease.lease_many_arguments(keys, leases, lease_ms)
            return cast(
                "list[bytes | None]", await self._bound(self._evalsha(_lease.LEASE_MANY, arguments), self.timeout)
            )

    async def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]:
        with self._guard.call("fill"):
            if self._cluster:
                results = await self._bound(
                    self._pipelined(partial(queue_settlements, settlements=settlements)), self.timeout
                )
            else:
                arguments = _lease.settle_many_arguments(settlements)
                results = await self._bound(self._evalsha(_lease.SETTLE_MANY, arguments), self.timeout)
        return [bool(result) for result in results]

    async def delete_many(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        with self._guard.call("delete"):
            await self._bound(self.client.delete(*keys), self.timeout)

    async def purge(self, pattern: str) -> None:
        with self._guard.call("purge"):
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    await self._bound(self.client.unlink(*batch), self.timeout)
                    batch.clear()
            if batch:
                await self._bound(self.client.unlink(*batch), self.timeout)
