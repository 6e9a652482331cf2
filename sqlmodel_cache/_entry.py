"""The entry format: owns what a cached value carries and how a value read back is checked.

An entry is a msgpack array: the model's fingerprint, then every column's value in the
model's column order (enum members by name). It is served only for the key it was written
for: the fingerprint must be this model's and the primary key inside must be the key's, so an
entry of an older schema, of another model, copied to another key or left by another
application is a miss, never a wrong row.
"""

from __future__ import annotations

from typing import Any

import msgpack

from . import _codec
from ._model import ModelInfo

__all__ = ["decode_entry", "encode_entry"]


def encode_entry(info: ModelInfo, state_dict: dict[str, Any]) -> bytes | None:
    """The entry for a loaded row, or ``None`` when a column is unloaded or unstorable."""
    try:
        values: list[Any] = [info.fingerprint, *map(state_dict.__getitem__, info.attr_keys)]
    except KeyError:
        return None
    for position, enum_cls in info.enum_columns:
        member = values[position + 1]
        if member is not None:
            if type(member) is not enum_cls:
                return None
            values[position + 1] = msgpack.ExtType(_codec.ENUM_CODE, member.name.encode())
    try:
        return _codec.pack(values)
    except (TypeError, ValueError, OverflowError):
        return None


def decode_entry(info: ModelInfo, data: bytes, pk_part: str) -> list[Any] | None:
    """Column values from an entry, or ``None`` if it is not this model's entry for ``pk_part``."""
    try:
        values = _codec.unpack(data)
    except _codec.DecodeError:
        return None
    if type(values) is not list or len(values) != info.entry_length or values[0] != info.fingerprint:
        return None
    del values[0]
    for position, enum_cls in info.enum_columns:
        name = values[position]
        if name is not None:
            if type(name) is not _codec.EnumName:
                return None
            try:
                values[position] = enum_cls[name]
            except KeyError:
                return None
    if _codec.EnumName in map(type, values):  # an enum name in a column that is no enum
        return None
    if info.pk_part(info.identity_of(values)) != pk_part:
        return None
    return values
