"""The codec: owns msgpack with explicit extension types, so every column value round-trips exactly.

msgpack has no Decimal, UUID, date/time or big-int types; each gets an extension code
whose payload is a canonical text or byte form. ``strict_types`` keeps subclasses (an
``IntEnum``, a ``str`` enum) out of the native encoders, so nothing silently comes back
as its base type.
"""

from __future__ import annotations

import datetime as dt
import struct
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

import msgpack

__all__ = ["ENUM_CODE", "NO_ROW_CODE", "DecodeError", "EnumName", "NoRow", "pack", "unpack"]

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
NO_ROW_CODE: Final = 12  # in place of the columns: the key has no row (its primary-key part)

_EPOCH: Final = dt.datetime(1970, 1, 1)
_MICROSECOND: Final = dt.timedelta(microseconds=1)
_MICROS: Final = struct.Struct(">q")
_MICROS_OFFSET: Final = struct.Struct(">qi")
_MICROS_FOLD: Final = struct.Struct(">qB")


class DecodeError(Exception):
    """Bytes that are not a value this codec wrote; the caller treats them as a miss."""


class NoRow(str):
    """The primary-key part of a key that has no row: a negative entry's whole content."""

    __slots__ = ()


class EnumName(str):
    """An enum member's name, waiting for its column to turn it back into the member."""

    __slots__ = ()


def _datetime_ext(value: dt.datetime) -> msgpack.ExtType:
    zone = value.tzinfo
    if zone is None:
        if not value.fold:
            return msgpack.ExtType(NAIVE_DATETIME_CODE, _MICROS.pack((value - _EPOCH) // _MICROSECOND))
        return msgpack.ExtType(DATETIME_CODE, _datetime_text(value))
    known = _zones.get(id(zone))
    if known is None or known.zone is not zone:
        known = _learn_zone(zone)
    if known.epoch is not None:
        # The same tzinfo on both sides: the difference of the wall clocks, as wanted.
        wall = (value - known.epoch) // _MICROSECOND
        if known.key is not None:
            return msgpack.ExtType(ZONED_DATETIME_CODE, _MICROS_FOLD.pack(wall, value.fold) + known.key)
        if known.seconds is not None and not value.fold:
            return msgpack.ExtType(OFFSET_DATETIME_CODE, _MICROS_OFFSET.pack(wall, known.seconds))
    return msgpack.ExtType(DATETIME_CODE, _datetime_text(value))


class _Zone(NamedTuple):
    """How datetimes in one tzinfo object are stored; ``epoch`` is ``None`` for text."""

    zone: dt.tzinfo  # held, so that its id is not reused while it is a key of `_zones`
    epoch: dt.datetime | None  # 1970-01-01 00:00 on this zone's wall clock
    seconds: int | None  # a plain fixed offset: its whole seconds
    key: bytes | None  # a named zone: its key


def _learn_zone(zone: dt.tzinfo) -> _Zone:
    seconds = key = None
    if type(zone) is ZoneInfo and zone.key:
        key = zone.key.encode()
    elif type(zone) is dt.timezone:
        offset = zone.utcoffset(None)
        plain = dt.timezone(offset)
        if zone == plain and str(zone) == str(plain) and not offset.microseconds:
            seconds = offset // dt.timedelta(seconds=1)
    epoch = _EPOCH.replace(tzinfo=zone) if seconds is not None or key is not None else None
    known = _Zone(zone, epoch, seconds, key)
    if len(_zones) < 1024:
        _zones[id(zone)] = known
    return known


# Per tzinfo object seen (drivers reuse a handful of them).
_zones: dict[int, _Zone] = {}


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


def _new_epoch(zone_id: int | bytes, zone: dt.tzinfo) -> dt.datetime:
    """1970-01-01 00:00 on ``zone``'s wall clock, remembered under ``zone_id``: its offset in
    seconds (``int``) or its key (``bytes``); a handful of zones in practice."""
    epoch = _EPOCH.replace(tzinfo=zone)
    if len(_epochs) < 1024:
        _epochs[zone_id] = epoch
    return epoch


_epochs: dict[int | bytes, dt.datetime] = {}


def _offset_datetime(data: bytes) -> dt.datetime:
    wall, offset = _MICROS_OFFSET.unpack(data)
    epoch = _epochs.get(offset)
    if epoch is None:
        epoch = _new_epoch(offset, dt.timezone(dt.timedelta(seconds=offset)))
    # Adding to an aware datetime moves its wall clock and keeps its zone.
    return epoch + dt.timedelta(microseconds=wall)


def _naive_datetime(data: bytes) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=_MICROS.unpack(data)[0])


def _zoned_datetime(data: bytes) -> dt.datetime:
    wall, fold = _MICROS_FOLD.unpack_from(data)
    key = data[_MICROS_FOLD.size :]
    epoch = _epochs.get(key)
    if epoch is None:
        epoch = _new_epoch(key, ZoneInfo(key.decode()))
    value = epoch + dt.timedelta(microseconds=wall)
    return value.replace(fold=fold) if fold else value


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
    NO_ROW_CODE: lambda data: NoRow(data.decode()),
}


def _from_ext(code: int, data: bytes) -> Any:
    try:
        decode = _DECODERS[code]
    except KeyError:
        raise DecodeError(f"unknown extension type {code}") from None
    return decode(data)


def pack(values: list[Any]) -> bytes:
    """Encode a row's values; raises ``TypeError``/``ValueError`` for what cannot be stored."""
    packer: msgpack.Packer | None = getattr(_packers, "packer", None)
    if packer is None:  # a Packer per thread: making one per row costs more than packing it
        packer = _packers.packer = msgpack.Packer(default=_to_ext, strict_types=True, use_bin_type=True)
    try:
        return packer.pack(values)
    except BaseException:
        _packers.packer = None  # never reuse a packer that stopped half-way
        raise


_packers = threading.local()


def unpack(data: bytes) -> Any:
    """Decode bytes written by `pack`; anything else raises `DecodeError`."""
    try:
        return msgpack.unpackb(data, ext_hook=_from_ext, raw=False)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises many types for malformed input
        raise DecodeError(str(exc)) from exc
