"""The transport contract: owns what the sessions may ask of Redis, as typed protocols.

Transports move bytes and nothing else: the sessions decide what to cache, and the lease
protocol (`sqlmodel_cache._lease`) decides what the commands say. Every answer comes with
the server lifetime (epoch) of the connection that gave it, so that an entry is served only
by the lifetime that stored it, and a lease of one lifetime never fills in another. A
single-key method raises `TransportError` (never a client error) when Redis cannot serve it,
within the bound; a multi-key one answers for the keys it could and says which it could not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

from sqlmodel_cache._errors import TransportError
from sqlmodel_cache._lease import Settlement
from sqlmodel_cache._near import NearCache, Tracking

__all__ = ["Answer", "Answers", "AsyncTransport", "SyncTransport", "Transport"]


# What one key held, and the server lifetime that said so (a plain tuple: the hot path's).
Answer = tuple["bytes | None", "bytes | None"]


class Answers(NamedTuple):
    """What many keys held, each with the lifetime that said so (``None``: no answer for that
    key, its node failed), and the first failure among the nodes that did not answer."""

    values: list[Any]
    epochs: list[bytes | None]
    failure: TransportError | None = None


class Transport(Protocol):
    """What both kinds share: the bound, the breaker's state, and which kind it is."""

    is_async: ClassVar[bool]
    timeout: float

    @property
    def breaker_state(self) -> str: ...

    @property
    def breaker_trips(self) -> int: ...

    def track(self, near: NearCache, prefix: str) -> Tracking:
        """Keep ``near`` current with the changes of the keys under ``prefix`` (Redis client
        tracking, from a thread of its own); the tracking, to read and stop."""


class SyncTransport(Transport, Protocol):
    def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer:
        """The value at ``key``; if there is none, take the lease there and answer ``None``."""

    def lease_over(self, key: str, found: bytes, lease: bytes, lease_ms: int) -> Answer:
        """Take the lease at ``key`` if it still holds ``found``; answers what it held."""

    def peek(self, key: str) -> Answer:
        """The value at ``key``, taking no lease: for readers that will not fill."""

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int, epoch: bytes | None) -> bool:
        """If ``key`` still holds ``lease``: store ``value`` there (only in the lifetime
        ``epoch`` the lease was taken in), or with ``None`` delete the key; ``False`` if not."""

    def peek_many(self, keys: Sequence[str]) -> Answers: ...

    def lookup_many(
        self, keys: Sequence[str], leases: Sequence[bytes], replacing: Sequence[bytes | None], lease_ms: int
    ) -> Answers:
        """`lookup` for many keys; where ``replacing`` names a value, `lease_over` it instead."""

    def settle_many(self, settlements: Sequence[Settlement], epochs: Sequence[bytes | None]) -> list[bool]: ...

    def delete_many(self, keys: Sequence[str]) -> None: ...

    def fence(self, keys: Sequence[str]) -> None:
        """A round trip to each server of ``keys``, sent after their deletion was answered:
        once it is answered, Redis has written out the invalidations of that deletion."""

    def purge(self, pattern: str) -> None:
        """Delete every key that matches ``pattern`` (a recovery step; it scans, so it is slow)."""

    def close(self) -> None: ...


class AsyncTransport(Transport, Protocol):
    async def lookup(self, key: str, lease: bytes, lease_ms: int) -> Answer: ...

    async def lease_over(self, key: str, found: bytes, lease: bytes, lease_ms: int) -> Answer: ...

    async def peek(self, key: str) -> Answer: ...

    async def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int, epoch: bytes | None) -> bool: ...

    async def peek_many(self, keys: Sequence[str]) -> Answers: ...

    async def lookup_many(
        self, keys: Sequence[str], leases: Sequence[bytes], replacing: Sequence[bytes | None], lease_ms: int
    ) -> Answers: ...

    async def settle_many(self, settlements: Sequence[Settlement], epochs: Sequence[bytes | None]) -> list[bool]: ...

    async def delete_many(self, keys: Sequence[str]) -> None: ...

    async def fence(self, keys: Sequence[str]) -> None: ...

    async def purge(self, pattern: str) -> None: ...
