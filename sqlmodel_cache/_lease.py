"""The lease protocol: owns lease tokens and the commands that take a lease and fill under it.

Against the stale-set race ("Scaling Memcache at Facebook", NSDI 2013): a reader that misses
stores a unique token at the key (``SET key token NX PX ms GET``, which also returns what was
there), reads the database, then publishes only if the key still holds its token (one
compare-and-set script). An eviction deletes the key, token included, so a reader whose
SELECT may predate a commit can never publish after that commit's eviction.

The transports send these commands as they are built here; they know nothing of leases.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

__all__ = [
    "FILL_IF_LEASE_HELD",
    "FILL_MANY_IF_LEASES_HELD",
    "LEASE_MANY",
    "SCRIPTS",
    "Fill",
    "fill_arguments",
    "fill_many_arguments",
    "is_lease",
    "lease_many_arguments",
    "lookup_command",
    "new_lease",
    "new_leases",
]

# (key, lease, value, ttl_ms): one row to publish under the lease its reader took.
Fill = tuple[str, bytes, bytes, int]

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


# Publish the row only if the key still holds this reader's lease.
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

# The lookup for many keys on one server: one command, one array reply. Each key gets its
# own lease; a key that holds a value (or another reader's lease) answers with it.
LEASE_MANY: Final = """
local px = ARGV[#ARGV]
local found = {}
for i = 1, #KEYS do
  found[i] = redis.call('SET', KEYS[i], ARGV[i], 'NX', 'PX', px, 'GET')
end
return found
"""

SCRIPTS: Final = (FILL_IF_LEASE_HELD, FILL_MANY_IF_LEASES_HELD, LEASE_MANY)


def lookup_command(key: bytes, lease: bytes, lease_ms: int) -> tuple[bytes, ...]:
    """The value at ``key``, or nil after taking ``lease`` there (Redis 7's ``SET ... NX GET``)."""
    return (b"SET", key, lease, b"NX", b"PX", b"%d" % lease_ms, b"GET")


def fill_arguments(key: bytes, lease: bytes, value: bytes, ttl_ms: int) -> tuple[bytes, ...]:
    """``numkeys`` and the arguments of `FILL_IF_LEASE_HELD`, as ``EVAL``/``EVALSHA`` take them."""
    return (b"1", key, lease, value, b"%d" % ttl_ms)


def lease_many_arguments(keys: Sequence[str], leases: Sequence[bytes], lease_ms: int) -> list[bytes]:
    """``numkeys`` and the arguments of `LEASE_MANY`."""
    arguments = [b"%d" % len(keys)]
    arguments += (key.encode() for key in keys)
    arguments += leases
    arguments.append(b"%d" % lease_ms)
    return arguments


def fill_many_arguments(fills: Sequence[Fill]) -> list[bytes]:
    """``numkeys`` and the arguments of `FILL_MANY_IF_LEASES_HELD`."""
    arguments = [b"%d" % len(fills)]
    arguments += (key.encode() for key, _, _, _ in fills)
    for _, lease, value, ttl_ms in fills:
        arguments += (lease, value, b"%d" % ttl_ms)
    return arguments
