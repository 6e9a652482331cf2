"""The value codec and a model's row layout: exact round trips, and garbage is a miss, never an error."""

from __future__ import annotations

import datetime as dt
import enum
import math
import struct
import uuid
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sqlmodel_cache import _codec
from sqlmodel_cache._entry import Unusable, decode_entry, encode_entry
from sqlmodel_cache._lease import LEASE_MARK, is_lease, new_lease
from sqlmodel_cache._model import ModelInfo, model_info

from .models import AllTypes, Color, Hero, Membership, NoTTL, Size, Team, Token

NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # a 30-minute DST shift


def assert_identical(actual: Any, expected: Any, where: str = "value") -> None:
    """Equal, of the very same type, and indistinguishable where ``==`` is too lenient.

    ``==`` ignores a float's sign of zero and NaN-ness, a Decimal's exponent, a datetime's
    fold and zone (within one zone) and a dict's order; a cache hit must keep all of them.
    """
    assert type(actual) is type(expected), f"{where}: {type(actual).__name__} != {type(expected).__name__}"
    if isinstance(expected, float):
        assert struct.pack("<d", actual) == struct.pack("<d", expected), f"{where}: {actual!r} != {expected!r}"
    elif isinstance(expected, Decimal):
        assert actual.as_tuple() == expected.as_tuple(), f"{where}: {actual!r} != {expected!r}"
    elif isinstance(expected, (dt.datetime, dt.time)):
        assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None), f"{where}: {actual!r} != {expected!r}"
        assert actual.fold == expected.fold, f"{where}: fold {actual.fold} != {expected.fold}"
        assert actual.utcoffset() == expected.utcoffset(), f"{where}: {actual!r} != {expected!r}"
        assert type(actual.tzinfo) is type(expected.tzinfo), f"{where}: zone {actual.tzinfo!r} != {expected.tzinfo!r}"
        if isinstance(expected.tzinfo, ZoneInfo):
            assert actual.tzinfo.key == expected.tzinfo.key, f"{where}: zone {actual.tzinfo!r} != {expected.tzinfo!r}"
        else:
            assert actual.tzinfo == expected.tzinfo, f"{where}: zone {actual.tzinfo!r} != {expected.tzinfo!r}"
        if isinstance(expected, dt.datetime) and expected.tzinfo is not None:
            assert actual.dst() == expected.dst() and actual.tzname() == expected.tzname(), where
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys {list(actual)!r} != {list(expected)!r}"
        for key, value in expected.items():
            assert_identical(actual[key], value, f"{where}[{key!r}]")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{where}: {actual!r} != {expected!r}"
        for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_identical(got, want, f"{where}[{i}]")
    elif isinstance(expected, enum.Enum):
        assert actual is expected, f"{where}: {actual!r} is not {expected!r}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def roundtrip(value: Any) -> Any:
    (decoded,) = _codec.unpack(_codec.pack([value]))
    return decoded


# --- every type, one example at a time -------------------------------------------------------

SAMPLES: list[tuple[str, Any]] = [
    ("none", None),
    ("int zero", 0),
    ("int", 42),
    ("int negative", -7),
    ("int32 max", 2**31 - 1),
    ("int64 max", 2**63 - 1),
    ("int64 min", -(2**63)),
    ("uint64 max", 2**64 - 1),
    ("int beyond 64 bits", 2**64),
    ("int below int64", -(2**63) - 1),
    ("int huge", 10**100 + 7),
    ("int huge negative", -(10**100) - 7),
    ("float", 1.5),
    ("float pi", math.pi),
    ("float negative zero", -0.0),
    ("float nan", math.nan),
    ("float inf", math.inf),
    ("float -inf", -math.inf),
    ("float subnormal", 5e-324),
    ("float max", 1.7976931348623157e308),
    ("float integral", 3.0),
    ("bool true", True),
    ("bool false", False),
    ("str empty", ""),
    ("str unicode", "héllo wörld ✓ 漢字 🎉"),
    ("str with nul", "a\x00b"),
    ("str that looks numeric", "12"),
    ("bytes empty", b""),
    ("bytes zeros", b"\x00\x00\x00"),
    ("bytes all", bytes(range(256))),
    ("bytes lease-like", b"\x00lease:abc"),
    ("decimal keeps exponent", Decimal("1.10")),
    ("decimal scaled zero", Decimal("0.000000")),
    ("decimal negative zero", Decimal("-0")),
    ("decimal positive exponent", Decimal("1E+3")),
    ("decimal many digits", Decimal("-12345678901234567890.123456789012345678")),
    ("decimal tiny", Decimal("1E-40")),
    ("decimal nan", Decimal("NaN")),
    ("decimal snan", Decimal("sNaN")),
    ("decimal inf", Decimal("Infinity")),
    ("decimal -inf", Decimal("-Infinity")),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("uuid nil", uuid.UUID(int=0)),
    ("uuid max", uuid.UUID(int=2**128 - 1)),
    ("date", dt.date(2024, 2, 29)),
    ("date min", dt.date.min),
    ("date max", dt.date.max),
    ("time midnight", dt.time(0, 0)),
    ("time micros", dt.time(23, 59, 59, 999999)),
    ("time utc", dt.time(1, 2, 3, 4, tzinfo=dt.timezone.utc)),
    ("time +05:30", dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30)))),
    ("time -03:30", dt.time(12, 30, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30)))),
    ("time odd offset", dt.time(8, tzinfo=dt.timezone(dt.timedelta(hours=-9, seconds=-21, microseconds=-5)))),
    ("datetime naive", dt.datetime(2024, 6, 1, 12, 30, 45, 123456)),
    ("datetime naive min", dt.datetime.min),
    ("datetime naive max", dt.datetime.max),
    ("datetime utc", dt.datetime(2024, 6, 1, 12, 30, tzinfo=dt.timezone.utc)),
    ("datetime +05:45", dt.datetime(2024, 6, 1, 12, 30, 1, 7, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=45)))),
    ("datetime -09:30", dt.datetime(1969, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=-9, minutes=-30)))),
    ("datetime aware min", dt.datetime.min.replace(tzinfo=dt.timezone.utc)),
    ("datetime aware max", dt.datetime.max.replace(tzinfo=dt.timezone.utc)),
    ("datetime zoneinfo summer", dt.datetime(2024, 7, 4, 9, 15, tzinfo=NEW_YORK)),
    ("datetime zoneinfo winter", dt.datetime(2024, 1, 4, 9, 15, tzinfo=NEW_YORK)),
    ("datetime zoneinfo fold 0", dt.datetime(2024, 11, 3, 1, 30, fold=0, tzinfo=NEW_YORK)),
    ("datetime zoneinfo fold 1", dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK)),
    ("datetime half-hour dst fold 0", dt.datetime(2024, 4, 7, 1, 45, fold=0, tzinfo=LORD_HOWE)),
    ("datetime half-hour dst fold 1", dt.datetime(2024, 4, 7, 1, 45, fold=1, tzinfo=LORD_HOWE)),
    ("datetime zoneinfo UTC", dt.datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC"))),
    ("datetime zoneinfo Etc/UTC", dt.datetime(2024, 1, 1, tzinfo=ZoneInfo("Etc/UTC"))),
    ("datetime zoneinfo kolkata", dt.datetime(2024, 1, 1, 5, 30, tzinfo=ZoneInfo("Asia/Kolkata"))),
    ("timedelta zero", dt.timedelta(0)),
    ("timedelta", dt.timedelta(days=3, seconds=7, microseconds=11)),
    ("timedelta negative", dt.timedelta(days=-3, hours=5)),
    ("timedelta minus one microsecond", dt.timedelta(microseconds=-1)),
    ("timedelta max", dt.timedelta.max),
    ("timedelta min", dt.timedelta.min),
    ("json empty dict", {}),
    ("json empty list", []),
    (
        "json nested dict",
        {"a": [1, {"b": None, "c": [True, False, 2.5]}], "ü": "✓", "z": -(2**70), "": {"deep": [[[]]]}, "n": 2**63},
    ),
    ("json nested list", [1, "x", 2.5, None, [{"k": [1, 2, {"m": "n"}]}], {}, -0.0, 10**30]),
    ("json dict order", {"z": 1, "a": 2, "m": 3}),
]


@pytest.mark.parametrize("value", [value for _, value in SAMPLES], ids=[name for name, _ in SAMPLES])
def test_value_round_trips_with_same_type(value: Any) -> None:
    assert_identical(roundtrip(value), value)


def test_bool_is_not_confused_with_int_nor_int_with_float() -> None:
    decoded = _codec.unpack(_codec.pack([True, 1, 1.0, False, 0, 0.0]))
    assert [type(v) for v in decoded] == [bool, int, float, bool, int, float]


def test_zone_and_fold_survive() -> None:
    first = dt.datetime(2024, 11, 3, 1, 30, fold=0, tzinfo=NEW_YORK)
    second = dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK)
    decoded_first, decoded_second = _codec.unpack(_codec.pack([first, second]))
    assert decoded_first.tzinfo is NEW_YORK and decoded_second.tzinfo is NEW_YORK
    assert (decoded_first.fold, decoded_second.fold) == (0, 1)
    assert decoded_first.utcoffset() == dt.timedelta(hours=-4)
    assert decoded_second.utcoffset() == dt.timedelta(hours=-5)
    assert decoded_second.astimezone(dt.timezone.utc) - decoded_first.astimezone(dt.timezone.utc) == dt.timedelta(
        hours=1
    )
    # DST rules travel with the zone: arithmetic after a hit lands where it would have.
    assert (decoded_first + dt.timedelta(days=1)).utcoffset() == dt.timedelta(hours=-5)


def test_values_of_unknown_types_are_refused_not_mangled() -> None:
    class Other:
        pass

    class Level(enum.IntEnum):
        LOW = 1

    for value in (Other(), {1, 2}, (1, 2), Level.LOW, Size.SMALL, Color.RED):
        with pytest.raises((TypeError, ValueError)):
            _codec.pack([value])


def test_unpack_of_garbage_raises_decode_error_only() -> None:
    for data in (b"", b"\xc1", b"\x93\x01", b"\xd9\x05ab", msgpack.packb(msgpack.ExtType(99, b"x"))):
        with pytest.raises(_codec.DecodeError):
            _codec.unpack(data)


# --- whole rows through the model's layout ----------------------------------------------------

LIFETIME = bytes.fromhex("0123456789abcdef")  # the Redis server lifetime these entries are written in


def encode(info: ModelInfo, row: dict[str, Any]) -> bytes | None:
    return encode_entry(info, row, LIFETIME)


def decode(info: ModelInfo, data: bytes, pk_part: str) -> list[Any] | None:
    """The row's values, or ``None`` for a miss (whatever the reason)."""
    values = decode_entry(info, data, pk_part, LIFETIME)
    return values if isinstance(values, list) else None


INFO = model_info(AllTypes)
assert INFO is not None
COLUMNS = INFO.attr_keys


def full_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 1,
        "small": -(2**31),
        "big": 2**63 - 1,
        "ratio": 0.1,
        "flag": False,
        "text": "ünïcødé ✓",
        "blob": b"\x00\xff\x00",
        "amount": Decimal("1.10"),
        "ident": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "color": Color.GREEN,
        "size": Size.LARGE,
        "day": dt.date(2000, 1, 1),
        "clock": dt.time(13, 14, 15, 16),
        "moment": dt.datetime(2024, 11, 3, 6, 30, tzinfo=dt.timezone.utc),
        "moment_tz": dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK),
        "span": dt.timedelta(days=-1, seconds=5),
        "doc": {"a": [1, {"b": None}], "big": 2**80},
        "items": [1, "x", 2.5, None, [True]],
    }
    row.update(overrides)
    assert list(row) == list(COLUMNS)
    return row


def entry_for(info: ModelInfo, row: dict[str, Any]) -> tuple[bytes, str]:
    data = encode(info, row)
    assert data is not None
    pk_part = info.pk_part([row[name] for name in info.pk_names])
    assert pk_part is not None
    return data, pk_part


def decoded_row(info: ModelInfo, data: bytes, pk_part: str) -> dict[str, Any] | None:
    values = decode(info, data, pk_part)
    return None if values is None else dict(zip(info.attr_keys, values, strict=True))


@pytest.mark.parametrize(
    "row",
    [
        full_row(),
        full_row(small=None, big=None, ratio=None, flag=None, text=None, blob=None, amount=None, ident=None)
        | dict.fromkeys(["color", "size", "day", "clock", "moment", "moment_tz", "span", "doc", "items"]),
        full_row(id=2**63 - 1, big=-(2**63), ratio=math.nan, amount=Decimal("-0.000001"), color=Color.RED),
        full_row(id=0, moment_tz=dt.datetime(2024, 11, 3, 1, 30), size=Size.SMALL, doc={}, items=[]),
    ],
    ids=["every type", "all none", "extremes", "naive"],
)
def test_model_row_round_trips(row: dict[str, Any]) -> None:
    data, pk_part = entry_for(INFO, row)
    assert_identical(decoded_row(INFO, data, pk_part), row)


def test_enum_columns_come_back_as_members() -> None:
    data, pk_part = entry_for(INFO, full_row(color=Color.RED, size=Size.SMALL))
    row = decoded_row(INFO, data, pk_part)
    assert row is not None
    assert row["color"] is Color.RED
    assert row["size"] is Size.SMALL  # a str enum: not the plain string "s"
    assert type(row["size"]) is Size


def test_unstorable_rows_are_not_encoded() -> None:
    class Level(enum.IntEnum):
        LOW = 1

    assert encode(INFO, full_row(size="s")) is None  # a plain str where the enum member belongs
    assert encode(INFO, full_row(color=Size.SMALL)) is None  # another enum's member
    assert encode(INFO, full_row(text=Size.SMALL)) is None  # would come back as a plain str
    assert encode(INFO, full_row(small=Level.LOW)) is None  # would come back as a plain int
    assert encode(INFO, full_row(doc={"a": {1, 2}})) is None
    unloaded = full_row()
    del unloaded["span"]
    assert encode(INFO, unloaded) is None


def test_entry_is_served_only_for_its_own_primary_key() -> None:
    data, pk_part = entry_for(INFO, full_row(id=1))
    assert decode(INFO, data, pk_part) is not None
    for other in (2, 0, -1, 11, 2**64):
        other_part = INFO.pk_part([other])
        assert other_part is not None and other_part != pk_part
        assert decode(INFO, data, other_part) is None


def test_entry_of_another_server_lifetime_is_not_served() -> None:
    data, pk_part = entry_for(INFO, full_row(id=1))
    assert isinstance(decode_entry(INFO, data, pk_part, LIFETIME), list)
    # A restart, a promoted replica or a restored backup answers with another lifetime.
    assert decode_entry(INFO, data, pk_part, bytes.fromhex("fedcba9876543210")) is Unusable.OTHER_LIFETIME
    assert decode_entry(INFO, data[:-3], pk_part, LIFETIME) is Unusable.CORRUPT


def test_entry_of_another_model_is_a_miss() -> None:
    team, no_ttl, hero = model_info(Team), model_info(NoTTL), model_info(Hero)
    assert team is not None and no_ttl is not None and hero is not None
    # Same column names and types, another table: the fingerprint tells them apart.
    team_entry, team_pk = entry_for(team, {"id": 1, "name": "t"})
    assert decode(team, team_entry, team_pk) == [1, "t"]
    assert decode(no_ttl, team_entry, team_pk) is None
    hero_entry, hero_pk = entry_for(hero, {"id": 1, "name": "h", "secret_name": "s", "age": 3, "team_id": None})
    assert decode(INFO, hero_entry, hero_pk) is None
    assert decode(team, hero_entry, hero_pk) is None
    all_types_entry, all_types_pk = entry_for(INFO, full_row(id=1))
    assert decode(hero, all_types_entry, all_types_pk) is None


def test_composite_and_uuid_entries_are_bound_to_their_key() -> None:
    membership, token = model_info(Membership), model_info(Token)
    assert membership is not None and token is not None
    entry, pk_part = entry_for(membership, {"org": "a,b", "user_id": 1, "role": "admin"})
    assert decode(membership, entry, pk_part) == ["a,b", 1, "admin"]
    for other in (("a", 1), ("a,b", 2), ("a", "b,1"), ("a,b,1", 1)):
        other_part = membership.pk_part(list(other))
        assert other_part != pk_part
        if other_part is not None:
            assert decode(membership, entry, other_part) is None
    first, second = uuid.uuid4(), uuid.uuid4()
    entry, pk_part = entry_for(token, {"id": first, "label": "x"})
    assert decode(token, entry, pk_part) == [first, "x"]
    assert decode(token, entry, token.pk_part([second]) or "") is None


def test_entry_with_wrong_shape_is_a_miss() -> None:
    data, pk_part = entry_for(INFO, full_row())
    values = msgpack.unpackb(data, raw=False)  # ext types stay msgpack.ExtType: re-packable as is
    assert values[0] == INFO.fingerprint
    assert decode(INFO, msgpack.packb(values, use_bin_type=True), pk_part) is not None
    shapes = {
        "wrong fingerprint": [b"\x00\x00\x00\x00", *values[1:]],
        "no fingerprint": values[1:],
        "fingerprint as str": [INFO.fingerprint.hex(), *values[1:]],
        "one column too many": [*values, None],
        "one column too few": values[:-1],
        "empty list": [],
        "a map": dict(zip(["fp", "lifetime", *COLUMNS], values, strict=True)),
        "a scalar": 1,
        "nil": None,
        "a string": "row",
        "pk as str": [values[0], values[1], "1", *values[3:]],
        "enum column as plain str": [*values[:11], "GREEN", *values[12:]],
        "unknown enum member": [*values[:11], msgpack.ExtType(_codec.ENUM_CODE, b"PURPLE"), *values[12:]],
        "enum name outside enum column": [*values[:7], msgpack.ExtType(_codec.ENUM_CODE, b"RED"), *values[8:]],
        "unknown ext type": [*values[:4], msgpack.ExtType(42, b"?"), *values[5:]],
        "bad decimal": [*values[:9], msgpack.ExtType(_codec.DECIMAL_CODE, b"one"), *values[10:]],
        "bad uuid": [*values[:10], msgpack.ExtType(_codec.UUID_CODE, b"short"), *values[11:]],
        "bad datetime": [*values[:15], msgpack.ExtType(_codec.DATETIME_CODE, b"yesterday"), *values[16:]],
        "bad zone": [
            *values[:16],
            msgpack.ExtType(_codec.DATETIME_CODE, b"2024-01-01T00:00:00+00:00[Nowhere/X]"),
            *values[17:],
        ],
        "zone path escape": [
            *values[:16],
            msgpack.ExtType(_codec.DATETIME_CODE, b"2024-01-01T00:00:00+00:00[../../../etc/passwd]"),
            *values[17:],
        ],
        "bad timedelta": [*values[:17], msgpack.ExtType(_codec.TIMEDELTA_CODE, b"\x93\xff"), *values[18:]],
        "timedelta overflow": [
            *values[:17],
            msgpack.ExtType(_codec.TIMEDELTA_CODE, msgpack.packb([10**12, 0, 0])),
            *values[18:],
        ],
        "bad bigint": [*values[:4], msgpack.ExtType(_codec.BIGINT_CODE, b"\xff\xfe"), *values[5:]],
    }
    for name, shape in shapes.items():
        assert decode(INFO, msgpack.packb(shape, use_bin_type=True), pk_part) is None, name
    # msgpack decodes extension -1 (timestamp) itself; a malformed one must still be a miss.
    placeholder = msgpack.packb([*values[:3], msgpack.ExtType(127, b"\x01"), *values[4:]], use_bin_type=True)
    bad_timestamp = placeholder.replace(b"\xd4\x7f\x01", b"\xd4\xff\x01", 1)
    assert bad_timestamp != placeholder
    assert decode(INFO, bad_timestamp, pk_part) is None


def test_lease_is_recognised_without_decoding() -> None:
    lease = new_lease()
    assert lease.startswith(LEASE_MARK) and LEASE_MARK == b"\x00"
    assert is_lease(lease)
    assert is_lease(b"\x00")
    assert is_lease(b"\x00anything at all")
    assert new_lease() != lease
    assert decode(INFO, lease, "1") is None
    data, _ = entry_for(INFO, full_row())
    assert not is_lease(data)
    assert not is_lease(b"")
    assert not is_lease(msgpack.packb(None))


# --- properties -----------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Whole seconds, as databases give them (PostgreSQL's LMT offsets have seconds).
fixed_offsets = st.sampled_from([dt.timezone.utc]) | st.builds(
    lambda seconds: dt.timezone(dt.timedelta(seconds=seconds)), st.integers(-86399, 86399)
)


def _in_zone(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """An instant as a driver returns it in a named zone, folds included."""
    try:
        local = instant.replace(tzinfo=dt.timezone.utc).astimezone(zone)
    except OverflowError:
        assume(False)
    # Drivers fall back to a fixed offset where the zone's local time would leave datetime's range.
    assume(dt.datetime.min + dt.timedelta(days=2) < instant < dt.datetime.max - dt.timedelta(days=2))
    return local


# Drivers never set ``fold`` on naive or fixed-offset values; zoned ones get it from the conversion.
naive_datetimes = st.datetimes().map(lambda d: d.replace(fold=0))
fixed_datetimes = st.datetimes(timezones=fixed_offsets).map(lambda d: d.replace(fold=0))
zoned_datetimes = st.builds(_in_zone, st.datetimes(), st.timezones())
any_datetimes = naive_datetimes | fixed_datetimes | zoned_datetimes
any_times = st.times(timezones=st.none() | fixed_offsets).map(lambda t: t.replace(fold=0))
any_decimals = st.decimals(allow_nan=True, allow_infinity=True) | st.builds(
    lambda sign, digits, exponent: Decimal((sign, digits, exponent)),
    st.integers(0, 1),
    st.lists(st.integers(0, 9), min_size=1, max_size=40).map(tuple),
    st.integers(-60, 60),
)
any_ints = st.integers() | st.integers(-(2**200), 2**200) | st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64])
json_values = st.recursive(
    st.none() | st.booleans() | any_ints | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
scalars = (
    st.none()
    | any_ints
    | st.floats()
    | st.booleans()
    | st.text()
    | st.binary()
    | any_decimals
    | st.uuids()
    | st.dates()
    | any_times
    | any_datetimes
    | st.timedeltas()
)
any_values = scalars | json_values


@PROPERTY_SETTINGS
@given(st.lists(any_values, max_size=12))
def test_property_any_values_round_trip(values: list[Any]) -> None:
    data = _codec.pack(values)
    assert_identical(_codec.unpack(data), values)


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


all_types_rows = st.fixed_dictionaries(
    {
        "id": any_ints,
        "small": _optional(st.integers(-(2**31), 2**31 - 1)),
        "big": _optional(any_ints),
        "ratio": _optional(st.floats()),
        "flag": _optional(st.booleans()),
        "text": _optional(st.text()),
        "blob": _optional(st.binary()),
        "amount": _optional(any_decimals),
        "ident": _optional(st.uuids()),
        "color": _optional(st.sampled_from(Color)),
        "size": _optional(st.sampled_from(Size)),
        "day": _optional(st.dates()),
        "clock": _optional(any_times),
        "moment": _optional(fixed_datetimes | zoned_datetimes),
        "moment_tz": _optional(any_datetimes),
        "span": _optional(st.timedeltas()),
        "doc": _optional(st.dictionaries(st.text(max_size=8), json_values, max_size=5)),
        "items": _optional(st.lists(json_values, max_size=5)),
    }
)


@PROPERTY_SETTINGS
@given(all_types_rows)
def test_property_model_rows_round_trip(row: dict[str, Any]) -> None:
    row = {key: row[key] for key in COLUMNS}
    data, pk_part = entry_for(INFO, row)
    assert not is_lease(data)
    assert_identical(decoded_row(INFO, data, pk_part), row)


def assert_miss_or_row(info: ModelInfo, data: bytes, pk_part: str) -> list[Any] | None:
    values = decode(info, data, pk_part)  # must not raise, whatever the bytes
    assert values is None or type(values) is list
    if values is not None:
        assert len(values) == len(info.attr_keys)
        assert info.pk_part([values[i] for i in info.pk_positions]) == pk_part
    return values


@PROPERTY_SETTINGS
@given(st.binary(max_size=300), st.text(max_size=20))
def test_property_arbitrary_bytes_never_raise(data: bytes, pk_part: str) -> None:
    assert assert_miss_or_row(INFO, data, pk_part) is None
    assert assert_miss_or_row(INFO, data, "1") is None


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=40))
    | st.builds(msgpack.ExtType, st.integers(1, 8), st.text(max_size=40).map(str.encode)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=30,
)


@PROPERTY_SETTINGS
@given(st.data())
def test_property_foreign_msgpack_never_raises(data: st.DataObject) -> None:
    shape = data.draw(
        msgpack_values
        | st.lists(msgpack_values, min_size=len(COLUMNS) + 1, max_size=len(COLUMNS) + 1).map(
            lambda values: [INFO.fingerprint, *values[1:]]
        )
        | st.lists(msgpack_values, min_size=len(COLUMNS) + 1, max_size=len(COLUMNS) + 1).map(
            lambda values: [INFO.fingerprint, 1, *values[2:]]
        )
    )
    packed = msgpack.packb(shape, use_bin_type=True)
    assert_miss_or_row(INFO, packed, "1")
    assert_miss_or_row(INFO, packed, data.draw(st.text(max_size=10)))


@PROPERTY_SETTINGS
@given(all_types_rows, st.data())
def test_property_truncated_entries_are_misses(row: dict[str, Any], data: st.DataObject) -> None:
    entry, pk_part = entry_for(INFO, row)
    cut = data.draw(st.integers(0, len(entry) - 1))
    assert assert_miss_or_row(INFO, entry[:cut], pk_part) is None


@PROPERTY_SETTINGS
@given(all_types_rows, st.data())
def test_property_bit_flips_never_raise(row: dict[str, Any], data: st.DataObject) -> None:
    entry, pk_part = entry_for(INFO, row)
    corrupted = bytearray(entry)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(entry) - 1))
        corrupted[position] ^= 1 << data.draw(st.integers(0, 7))
    assert_miss_or_row(INFO, bytes(corrupted), pk_part)


@PROPERTY_SETTINGS
@given(all_types_rows, all_types_rows)
def test_property_entry_under_another_key_is_a_miss(row: dict[str, Any], other: dict[str, Any]) -> None:
    entry, pk_part = entry_for(INFO, row)
    _, other_pk_part = entry_for(INFO, other)
    assume(row["id"] != other["id"])
    assert other_pk_part != pk_part
    assert decode(INFO, entry, other_pk_part) is None


@PROPERTY_SETTINGS
@given(st.tuples(st.text(), st.integers()), st.tuples(st.text(), st.integers()))
def test_property_composite_keys_never_collide(first: tuple[str, int], second: tuple[str, int]) -> None:
    info = model_info(Membership)
    assert info is not None
    first_part, second_part = info.pk_part(list(first)), info.pk_part(list(second))
    assert first_part is not None and second_part is not None
    assert (first_part == second_part) == (first == second)
    entry, _ = entry_for(info, {"org": first[0], "user_id": first[1], "role": "r"})
    assert (decode(info, entry, second_part) is not None) == (first == second)


def test_datetimes_are_stored_compactly() -> None:
    """A datetime costs a fixed-size binary field, not its ISO text (the entry stays small)."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from sqlmodel_cache import _codec

    naive = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    utc = naive.replace(tzinfo=dt.timezone.utc)
    zoned = dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York"))
    for value in (naive, utc, zoned):
        packed = _codec.pack([value])
        assert len(packed) < len(_codec._datetime_text(value)), (value, len(packed))
        (back,) = _codec.unpack(packed)
        assert back == value and type(back.tzinfo) is type(value.tzinfo)
        assert back.utcoffset() == value.utcoffset() and back.fold == value.fold


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(seconds=1))),  # UTC instant before year 1
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-5))),  # after 9999
        dt.datetime(1, 1, 1, tzinfo=ZoneInfo("Asia/Tokyo")),
        dt.datetime(9999, 12, 31, 23, 0, tzinfo=ZoneInfo("America/Los_Angeles")),
        dt.datetime(1, 1, 1),
        dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
    ],
    ids=["offset-min", "offset-max", "zone-min", "zone-max", "naive-min", "naive-max"],
)
def test_datetimes_at_the_edges_of_the_calendar_round_trip(value: dt.datetime) -> None:
    (back,) = _codec.unpack(_codec.pack([value]))
    assert_identical(back, value)


def test_a_negative_entry_is_served_only_for_its_own_key_and_lifetime() -> None:
    from sqlmodel_cache._entry import NO_ROW, encode_no_row

    hero = model_info(Hero)
    assert hero is not None
    part, other = hero.pk_part([404]), hero.pk_part([405])
    assert part is not None and other is not None
    entry = encode_no_row(hero, part, LIFETIME)
    assert decode_entry(hero, entry, part, LIFETIME) is NO_ROW
    assert decode_entry(hero, entry, other, LIFETIME) is Unusable.CORRUPT  # copied to another key
    assert decode_entry(hero, entry, part, b"another!") is Unusable.OTHER_LIFETIME
    team = model_info(Team)
    assert team is not None
    assert decode_entry(team, entry, part, LIFETIME) is Unusable.CORRUPT  # another model's
