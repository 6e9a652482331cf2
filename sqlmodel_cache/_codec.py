"""msgpack with explicit extension types, so every common column value round-trips exactly.

msgpack has no Decimal, UUID, date/time or big-int types; each gets an extension code
whose payload is a canonical text or byte form. ``strict_types`` keeps subclasses (an
``IntEnum``, a ``str`` enum) out of the native encoders, so nothing silently comes back
as its base type.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgpack

__all__ = ["ENUM_CODE", "DecodeError", "EnumName", "pack", "unpack"]

DECIMAL_CODE: Final = 1
UUID_CODE: Final = 2
DATE_CODE: Final = 3
TIME_CODE: Final = 4
DATETIME_CODE: Final = 5
TIMEDELTA_CODE: Final = 6
BIGINT_CODE: Final = 7
ENUM_CODE: Final = 8
# Datetimes in 8-byte microseconds rather than ISO text: a third of the size, no parsing.
# All three keep the wall clock (microseconds since 1970-01-01 as read on it), so any
# datetime Python can hold comes back, even one whose UTC instant falls outside years 1-9999.
NAIVE_DATETIME_CODE: Final = 9  # wall-clock microseconds
OFFSET_DATETIME_CODE: Final = 10  # wall-clock microseconds, then the fixed offset in seconds
ZONED_DATETIME_CODE: Final = 11  # wall-clock microseconds, the fold, then the zone key

_EPOCH: Final = dt.datetime(1970, 1, 1)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
_MICROS: Final = struct.Struct(">q")
_MICROS_OFFSET: Final = struct.Struct(">qi")
_MICROS_FOLD: Final = struct.Struct(">qB")


class DecodeError(Exception):
    """Bytes that are not a value this codec wrote; the caller treats them as a miss."""


class EnumName(str):
    """An enum member's name, waiting for its column to turn it back into the member."""

    __slots__ = ()


def _datetime_ext(value: dt.datetime) -> msgpack.ExtType:
    zone = value.tzinfo
    wall = (value.replace(tzinfo=None, fold=0) - _EPOCH) // _MICROSECOND
    if zone is None:
        if not value.fold:
            return msgpack.ExtType(NAIVE_DATETIME_CODE, _MICROS.pack(wall))
    elif type(zone) is ZoneInfo and zone.key:
        return msgpack.ExtType(ZONED_DATETIME_CODE, _MICROS_FOLD.pack(wall, value.fold) + zone.key.encode())
    elif type(zone) is dt.timezone and not value.fold:
        seconds = _offset_seconds(zone)
        if seconds is not None:
            return msgpack.ExtType(OFFSET_DATETIME_CODE, _MICROS_OFFSET.pack(wall, seconds))
    return msgpack.ExtType(DATETIME_CODE, _datetime_text(value))


def _offset_seconds(zone: dt.timezone) -> int | None:
    """The zone's offset in whole seconds if it is a plain, unnamed offset, else ``None``."""
    seen = _offset_zones.get(id(zone))
    if seen is not None and seen[0] is zone:
        return seen[1]
    offset = zone.utcoffset(None)
    plain = zone == dt.timezone(offset) and str(zone) == str(dt.timezone(offset)) and not offset.microseconds
    seconds = offset // dt.timedelta(seconds=1) if plain else None
    if len(_offset_zones) < 1024:
        _offset_zones[id(zone)] = (zone, seconds)  # holding the zone keeps its id from being reused
    return seconds


# The answer of `_offset_seconds` per zone object seen (databases reuse a few such objects).
_offset_zones: dict[int, tuple[dt.timezone, int | None]] = {}


def _datetime_text(value: dt.datetime) -> bytes:
    text = value.isoformat()
    zone = value.tzinfo
    if isinstance(zone, ZoneInfo) and zone.key:
        # The offset alone would lose the zone (and its DST rules) the database gave us.
        text = f"{text}[{zone.key}]"
    return text.encode()


def _to_ext(value: Any) -> msgpack.ExtType:
    kind = type(value)
    if kind is Decimal:
        return msgpack.ExtType(DECIMAL_CODE, str(value).encode())
    if kind is uuid.UUID:
        return msgpack.ExtType(UUID_CODE, value.bytes)
    if kind is dt.datetime:
        return _datetime_ext(value)
    if kind is dt.date:
        return msgpack.ExtType(DATE_CODE, value.isoformat().encode())
    if kind is dt.time:
        return msgpack.ExtType(TIME_CODE, value.isoformat().encode())
    if kind is dt.timedelta:
        return msgpack.ExtType(TIMEDELTA_CODE, msgpack.packb([value.days, value.seconds, value.microseconds]))
    if kind is int:  # only reached for ints beyond 64 bits
        return msgpack.ExtType(BIGINT_CODE, str(value).encode())
    if isinstance(value, uuid.UUID):  # asyncpg returns its own subclass; it reads back as uuid.UUID
        return msgpack.ExtType(UUID_CODE, value.bytes)
    raise TypeError(f"sqlmodel-cache cannot store values of type {kind.__qualname__}")


def _parse_datetime(text: str) -> dt.datetime:
    if text.endswith("]"):
        stamp, _, zone = text[:-1].partition("[")
        return dt.datetime.fromisoformat(stamp).astimezone(ZoneInfo(zone))
    return dt.datetime.fromisoformat(text)


def _offset_datetime(data: bytes) -> dt.datetime:
    wall, offset = _MICROS_OFFSET.unpack(data)
    epoch = _offset_epochs.get(offset)
    if epoch is None:
        epoch = _EPOCH.replace(tzinfo=dt.timezone(dt.timedelta(seconds=offset)))
        if len(_offset_epochs) < 1024:
            _offset_epochs[offset] = epoch
    # Adding to an aware datetime moves its wall clock and keeps its zone.
    return epoch + dt.timedelta(microseconds=wall)


# The 1970-01-01 wall clock in each fixed offset seen so far (a handful in practice).
_offset_epochs: dict[int, dt.datetime] = {}


def _naive_datetime(data: bytes) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=_MICROS.unpack(data)[0])


def _zoned_datetime(data: bytes) -> dt.datetime:
    wall, fold = _MICROS_FOLD.unpack_from(data)
    named = ZoneInfo(data[_MICROS_FOLD.size :].decode())
    return (_EPOCH + dt.timedelta(microseconds=wall)).replace(tzinfo=named, fold=fold)


def _timedelta(data: bytes) -> dt.timedelta:
    days, seconds, micros = msgpack.unpackb(data)
    return dt.timedelta(days=days, seconds=seconds, microseconds=micros)


_DECODERS: Final[dict[int, Callable[[bytes], Any]]] = {
    DECIMAL_CODE: lambda data: Decimal(data.decode()),
    UUID_CODE: lambda data: uuid.UUID(bytes=data),
    OFFSET_DATETIME_CODE: _offset_datetime,
    NAIVE_DATETIME_CODE: _naive_datetime,
    ZONED_DATETIME_CODE: _zoned_datetime,
    DATETIME_CODE: lambda data: _parse_datetime(data.decode()),
    DATE_CODE: lambda data: dt.date.fromisoformat(data.decode()),
    TIME_CODE: lambda data: dt.time.fromisoformat(data.decode()),
    TIMEDELTA_CODE: _timedelta,
    BIGINT_CODE: lambda data: int(data.decode()),
    ENUM_CODE: lambda data: EnumName(data.decode()),
}


def _from_ext(code: int, data: bytes) -> Any:
    try:
        decode = _DECODERS[code]
    except KeyError:
        raise DecodeError(f"unknown extension type {code}") from None
    return decode(data)


def pack(values: list[Any]) -> bytes:
    """Encode a row's values; raises ``TypeError``/``ValueError`` for what cannot be stored."""
    return msgpack.packb(values, default=_to_ext, strict_types=True, use_bin_type=True)


def unpack(data: bytes) -> Any:
    """Decode bytes written by `pack`; anything else raises `DecodeError`."""
    try:
        return msgpack.unpackb(data, ext_hook=_from_ext, raw=False)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types for malformed input
        raise DecodeError(str(exc)) from exc
