"""The transport contract: owns what the sessions may ask of Redis, as typed protocols.

Transports move bytes and nothing else: the sessions decide what to cache, and the lease
protocol (`sqlmodel_cache._lease`) decides what the commands say. Every method raises
`TransportError` (never a client error) when Redis cannot serve it, within the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol

from sqlmodel_cache._lease import Settlement

__all__ = ["AsyncTransport", "SyncTransport", "Transport"]


class Transport(Protocol):
    """What both kinds share: the bound, the breaker's state, and which kind it is."""

    is_async: ClassVar[bool]
    timeout: float

    @property
    def breaker_state(self) -> str: ...

    @property
    def breaker_trips(self) -> int: ...


class SyncTransport(Transport, Protocol):
    def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None:
        """The value at ``key``; if there is none, take the lease there and return ``None``."""

    def peek(self, key: str) -> bytes | None:
        """The value at ``key``, taking no lease: for readers that will not fill."""

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int) -> bool:
        """If ``key`` still holds ``lease``: store ``value`` there, or with ``None`` delete the
        key; ``False`` if the lease was lost."""

    def peek_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def lookup_many(self, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> list[bytes | None]: ...

    def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]: ...

    def delete_many(self, keys: Sequence[str]) -> None: ...

    def purge(self, pattern: str) -> None:
        """Delete every key that matches ``pattern`` (a recovery step; it scans, so it is slow)."""

    def close(self) -> None: ...


class AsyncTransport(Transport, Protocol):
    async def lookup(self, key: str, lease: bytes, lease_ms: int) -> bytes | None: ...

    async def peek(self, key: str) -> bytes | None: ...

    async def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int) -> bool: ...

    async def peek_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def lookup_many(self, keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> list[bytes | None]: ...

    async def settle_many(self, settlements: Sequence[Settlement]) -> list[bool]: ...

    async def delete_many(self, keys: Sequence[str]) -> None: ...

    async def purge(self, pattern: str) -> None: ...
