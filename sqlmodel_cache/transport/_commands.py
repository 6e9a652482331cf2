"""Commands: owns the packed commands of every transport call and how their replies become
answers, for one server and per cluster node alike; the sync and asyncio transports only
send them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

from sqlmodel_cache import _lease
from sqlmodel_cache._lease import Settlement

from ._connections import packed
from ._guard import REDIRECTS

__all__ = ["OPERATION_OF", "Scripts", "key_commands", "place", "publishable", "published"]


class Scripts:
    """The lease protocol's scripts by SHA1, and the commands that call them."""

    def __init__(self, sha_of: Any) -> None:
        self.sha = {source: sha_of(source) for source in _lease.SCRIPTS}

    def call(self, source: str, arguments: Sequence[bytes]) -> bytes:
        return packed(b"EVALSHA", self.sha[source], *arguments)

    @staticmethod
    def load(source: str) -> bytes:
        return packed(b"SCRIPT", b"LOAD", source.encode())

    def lookup(self, key: str, lease: bytes, replacing: bytes | None, lease_ms: int) -> bytes:
        """One key's lookup: ``SET ... NX GET``, or `LEASE_OVER` of the value it replaces."""
        if replacing is None:
            return packed(*_lease.lookup_command(key.encode(), lease, lease_ms))
        return self.call(_lease.LEASE_OVER, _lease.lease_over_arguments(key.encode(), replacing, lease, lease_ms))

    def settle(self, key: str, lease: bytes, value: bytes | None, ttl_ms: int) -> bytes:
        return self.call(_lease.SETTLE, _lease.settle_arguments(key.encode(), lease, value, ttl_ms))


# What each kind of multi-key call is, to the breakers and the WARNINGs.
OPERATION_OF = {"peek": "lookup", "lookup": "lookup", "settle": "fill", "delete": "delete"}


def key_commands(
    kind: str, scripts: Scripts, positions: Sequence[int], arguments: Sequence[Any], lifetime: bytes | None
) -> list[bytes]:
    """One command per key at ``positions``: a cluster master's share of a multi-key call,
    on a connection to the server lifetime ``lifetime``."""
    if kind == "lookup":
        keys, leases, replacing, lease_ms = arguments
        return [scripts.lookup(keys[i], leases[i], replacing[i], lease_ms) for i in positions]
    if kind == "settle":
        _, settlements, epochs = arguments
        return [scripts.settle(*publishable(settlements[i], epochs[i], lifetime)) for i in positions]
    command = b"GET" if kind == "peek" else b"DEL"
    return [packed(command, arguments[0][i].encode()) for i in positions]


def publishable(settlement: Settlement, epoch: bytes | None, lifetime: bytes | None) -> Settlement:
    """``settlement``, or a release instead where its lease was taken in another lifetime than
    the connection's: such a lease authorizes nothing but its own removal."""
    if settlement[2] is None or (epoch is not None and epoch == lifetime):
        return settlement
    key, lease, _, ttl_ms = settlement
    return (key, lease, None, ttl_ms)


def published(settlements: Sequence[Settlement], answers: Any, epochs: Sequence[bytes | None]) -> list[bool]:
    """Where a settlement published its row: its lease was held, and in the lifetime it was
    taken in (else it was sent as a release)."""
    return [
        bool(held) and value is not None and lifetime is not None and lifetime == epoch
        for (_, _, value, _), held, lifetime, epoch in zip(
            settlements, answers.values, answers.epochs, epochs, strict=True
        )
    ]


def place(
    positions: Sequence[int],
    replies: Sequence[Any],
    epoch: bytes | None,
    values: list[Any],
    epochs: list[Any],
    vouched: bool = True,
) -> bool:
    """Put a node's replies at their keys' positions; an error reply (a slot that moved) is no
    answer, and a value the answer does not vouch for (see `GuardedCall.lifetime`) comes with
    no lifetime. ``True`` if a reply said the layout changed."""
    moved = False
    for position, reply in zip(positions, replies, strict=True):
        if isinstance(reply, ResponseError):
            moved = moved or isinstance(reply, REDIRECTS)
            continue
        values[position] = reply
        epochs[position] = epoch if vouched or reply is None else None
    return moved
