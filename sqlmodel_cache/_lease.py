"""The lease protocol: owns lease tokens and the commands that take a lease and fill under it.

Against the stale-set race ("Scaling Memcache at Facebook", NSDI 2013): a reader that misses
stores a unique token at the key (``SET key token NX PX ms GET``, which also returns what was
there), reads the database, then settles its lease: publishes the row, or releases the key
when there is nothing to publish, only if the key still holds its token (one compare-and-set
script). An eviction deletes the key, token included, so a reader whose SELECT may predate a
commit can never publish after that commit's eviction; and no reader leaves its lease behind.

The transports send these commands as they are built here; they know nothing of leases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

__all__ = [
    "LEASE_MANY",
    "LEASE_OVER",
    "SCRIPTS",
    "SETTLE",
    "SETTLE_MANY",
    "Settlement",
    "is_lease",
    "lease_many_arguments",
    "lease_over_arguments",
    "lookup_command",
    "new_lease",
    "new_leases",
    "settle_arguments",
    "settle_many_arguments",
    "took_lease",
]

# (key, lease, value, ttl_ms): what a reader does with the lease it took. With a value, it
# publishes the row for ``ttl_ms``; with ``None``, it releases the key (nothing to publish).
Settlement = tuple[str, bytes, "bytes | None", int]

# Entries are msgpack arrays (first byte 0x9X/0xDC/0xDD); a lease starts with a zero byte,
# so a reader tells the two apart from the first byte without decoding anything.
LEASE_MARK: Final = b"\x00"
_LEASE_PREFIX: Final = LEASE_MARK + b"lease:"


def new_lease() -> bytes:
    return _LEASE_PREFIX + os.urandom(12)


def new_leases(count: int) -> list[bytes]:
    """Distinct leases for one multi-key call, at the cost of one random token."""
    base = new_lease()
    return [base + b"%d" % index for index in range(count)]


def is_lease(raw: bytes) -> bool:
    return raw[:1] == LEASE_MARK


# Only if the key still holds this reader's lease: publish the row, or (an empty value)
# release the key. 1 if the key held the lease.
SETTLE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '' then
    redis.call('DEL', KEYS[1])
  else
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  end
  return 1
end
return 0
"""

# The same for many keys at once (a single server only: a cluster needs one slot per script).
SETTLE_MANY: Final = """
local held = {}
for i = 1, #KEYS do
  local at = (i - 1) * 3
  if redis.call('GET', KEYS[i]) == ARGV[at + 1] then
    if ARGV[at + 2] == '' then
      redis.call('DEL', KEYS[i])
    else
      redis.call('SET', KEYS[i], ARGV[at + 2], 'PX', ARGV[at + 3])
    end
    held[i] = 1
  else
    held[i] = 0
  end
end
return held
"""

# A lease over a value no reader may serve (corrupt, foreign, of another server lifetime):
# taken only if the key still holds exactly what the reader found there. Answers with what
# the key held, as ``SET ... GET`` does.
LEASE_OVER: Final = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return current
"""

# The lookup for many keys on one server: one command, one array reply. Each key gets its
# own lease where it is empty (or holds exactly the value expected to be replaced, when one
# is given); a key that holds a value (or another reader's lease) answers with it.
LEASE_MANY: Final = """
local px = ARGV[#ARGV]
local found = {}
for i = 1, #KEYS do
  local expected = ARGV[2 * i]
  if expected == '' then
    found[i] = redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'NX', 'PX', px, 'GET')
  else
    local current = redis.call('GET', KEYS[i])
    if current == expected then
      redis.call('SET', KEYS[i], ARGV[2 * i - 1], 'PX', px)
    end
    found[i] = current
  end
end
return found
"""

SCRIPTS: Final = (SETTLE, SETTLE_MANY, LEASE_OVER, LEASE_MANY)


def lookup_command(key: bytes, lease: bytes, lease_ms: int) -> tuple[bytes, ...]:
    """The value at ``key``, or nil after taking ``lease`` there (Redis 7's ``SET ... NX GET``)."""
    return (b"SET", key, lease, b"NX", b"PX", b"%d" % lease_ms, b"GET")


def settle_arguments(key: bytes, lease: bytes, value: bytes | None, ttl_ms: int) -> tuple[bytes, ...]:
    """``numkeys`` and the arguments of `SETTLE`, as ``EVAL``/``EVALSHA`` take them."""
    return (b"1", key, lease, value or b"", b"%d" % ttl_ms)


def lease_over_arguments(key: bytes, found: bytes, lease: bytes, lease_ms: int) -> tuple[bytes, ...]:
    """``numkeys`` and the arguments of `LEASE_OVER`."""
    return (b"1", key, found, lease, b"%d" % lease_ms)


def lease_many_arguments(
    keys: Sequence[str], leases: Sequence[bytes], replacing: Sequence[bytes | None], lease_ms: int
) -> list[bytes]:
    """``numkeys`` and the arguments of `LEASE_MANY`: per key its lease and the value it
    replaces (``None``: the key must be empty)."""
    arguments = [b"%d" % len(keys)]
    arguments += (key.encode() for key in keys)
    for lease, found in zip(leases, replacing, strict=True):
        arguments += (lease, found or b"")
    arguments.append(b"%d" % lease_ms)
    return arguments


def took_lease(replacing: bytes | None, reply: bytes | None) -> bool:
    """Did a lookup that expected ``replacing`` at the key (``None``: nothing) take its lease?"""
    return reply == replacing


def settle_many_arguments(settlements: Sequence[Settlement]) -> list[bytes]:
    """``numkeys`` and the arguments of `SETTLE_MANY`."""
    arguments = [b"%d" % len(settlements)]
    arguments += (key.encode() for key, _, _, _ in settlements)
    for _, lease, value, ttl_ms in settlements:
        arguments += (lease, value or b"", b"%d" % ttl_ms)
    return arguments
