"""The entry format: owns what a cached value carries and how a value read back is checked.

An entry is a msgpack array: the model's fingerprint, the Redis server lifetime that stored
it, then every column's value in the model's column order (enum members by name). It is
served only for the key it was written for, by the lifetime that wrote it: the fingerprint
must be this model's, the primary key inside must be the key's, and the lifetime must be the
one answering. An entry of an older schema, of another model, copied to another key, left by
another application, or brought back by a restart, a failover or a restore is a miss, never
a wrong or an evicted row.
"""

from __future__ import annotations

import enum
from typing import Any, Final

import msgpack

from . import _codec
from ._index import Index
from ._model import ModelInfo

__all__ = ["NO_ROW", "NoRowMark", "Unusable", "decode_entry", "encode_entry", "encode_no_row"]


class NoRowMark:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_ROW"


# What a negative entry says: the key has no row (``CacheConfig(negative_ttl=...)``).
NO_ROW: Final = NoRowMark()


class Unusable(enum.Enum):
    """Why a value at a key is not served (and is replaced by the next reader that may fill)."""

    CORRUPT = "a value that is not an entry of this model for this key"
    OTHER_LIFETIME = "an entry stored by another Redis server lifetime (a restart, failover or restore)"


_HEAD = 2  # the fingerprint and the lifetime, before the columns


def encode_entry(info: ModelInfo, state_dict: dict[str, Any], lifetime: bytes) -> bytes | None:
    """The entry for a loaded row, or ``None`` when a column is unloaded or unstorable."""
    try:
        values: list[Any] = [info.fingerprint, lifetime, *map(state_dict.__getitem__, info.attr_keys)]
    except KeyError:
        return None
    for position, enum_cls in info.enum_columns:
        member = values[position + _HEAD]
        if member is not None:
            if type(member) is not enum_cls:
                return None
            values[position + _HEAD] = msgpack.ExtType(_codec.ENUM_CODE, member.name.encode())
    try:
        return _codec.pack(values)
    except (TypeError, ValueError, OverflowError):
        return None


def encode_no_row(info: ModelInfo, part: str, lifetime: bytes) -> bytes:
    """The negative entry for a key that has no row: fingerprint, lifetime, and the key's part
    where the columns would be, so that it too is served only for its own key."""
    return _codec.pack([info.fingerprint, lifetime, msgpack.ExtType(_codec.NO_ROW_CODE, part.encode())])


def decode_entry(
    info: ModelInfo, data: bytes, part: str, lifetime: bytes, index: Index | None = None
) -> list[Any] | NoRowMark | Unusable:
    """Column values from this model's entry at the key of ``part`` of ``index`` (the primary
    key by default), stored by ``lifetime``, or `NO_ROW` from its negative entry; else why not."""
    try:
        values = _codec.unpack(data)
    except _codec.DecodeError:
        return Unusable.CORRUPT
    if type(values) is not list or not values or values[0] != info.fingerprint:
        return Unusable.CORRUPT
    if len(values) == _HEAD + 1 and type(values[_HEAD]) is _codec.NoRow:
        if values[_HEAD] != part:
            return Unusable.CORRUPT
        return NO_ROW if values[1] == lifetime else Unusable.OTHER_LIFETIME
    if len(values) != info.entry_length:
        return Unusable.CORRUPT
    stored_by = values[1]
    del values[:_HEAD]
    for position, enum_cls in info.enum_columns:
        name = values[position]
        if name is not None:
            if type(name) is not _codec.EnumName:
                return Unusable.CORRUPT
            try:
                values[position] = enum_cls[name]
            except KeyError:
                return Unusable.CORRUPT
    if _codec.EnumName in map(type, values) or _codec.NoRow in map(type, values):  # out of place
        return Unusable.CORRUPT
    if (index or info.primary).of_row(values) != part:
        return Unusable.CORRUPT
    if stored_by != lifetime:
        return Unusable.OTHER_LIFETIME
    return values
