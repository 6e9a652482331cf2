"""Invariant 5 on real databases: a cache hit gives every column the value and the type a database read gives."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
import sqlalchemy as sa
from sqlmodel import Session

from sqlmodel_cache import CachedSession, CacheStats

from .conftest import SQLCounter
from .models import AllTypes, Color, Size
from .test_codec import assert_identical

COLUMNS = [prop.key for prop in sa.inspect(AllTypes).column_attrs]
UTC = dt.timezone.utc
NEW_YORK = ZoneInfo("America/New_York")


def _rows() -> dict[str, dict[str, Any]]:
    return {
        "all none": {"id": 1},
        "typical": {
            "id": 2,
            "small": 42,
            "big": 2**63 - 1,
            "ratio": 3.141592653589793,
            "flag": True,
            "text": "héllo wörld ✓ 漢字 🎉 مرحبا e\u0301",
            "blob": b"\x00\x01\x00\xff\x00",
            "amount": Decimal("12345678901234.123456"),
            "ident": uuid.UUID("5f1b1a0e-8a3c-4d6f-9b2e-7c4d3a2b1c0d"),
            "color": Color.RED,
            "size": Size.LARGE,
            "day": dt.date(2024, 2, 29),
            "clock": dt.time(23, 59, 59, 999999),
            "moment": dt.datetime(2024, 6, 1, 12, 30, 45, 123456, tzinfo=UTC),
            "moment_tz": dt.datetime(
                2024, 6, 1, 12, 30, 45, 654321, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))
            ),
            "span": dt.timedelta(days=3, seconds=7, microseconds=11),
            "doc": {"name": "x", "tags": ["a", "b"], "nested": {"n": 1, "f": 0.5, "none": None, "ok": True}},
            "items": [1, "two", 3.0, None, False, {"k": [1, 2, {"deep": []}]}],
        },
        "upper bounds": {
            "id": 2**31 - 1,
            "small": 2**31 - 1,
            "big": 2**63 - 2,
            "ratio": math.inf,
            "flag": False,
            "text": "",
            "blob": b"",
            "amount": Decimal("99999999999999.999999"),
            "ident": uuid.UUID(int=2**128 - 1),
            "color": Color.GREEN,
            "size": Size.SMALL,
            "day": dt.date(9999, 12, 31),
            "clock": dt.time(0, 0),
            "moment": dt.datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
            "moment_tz": dt.datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC),
            "span": dt.timedelta(days=10_000, microseconds=1),
            "doc": {},
            "items": [],
        },
        "negatives": {
            "id": 4,
            "small": -(2**31),
            "big": -(2**63),
            "ratio": -0.0,
            "flag": False,
            "text": "0",
            "blob": b"\x00",
            "amount": Decimal("-0.000001"),
            "ident": uuid.UUID(int=0),
            "day": dt.date(1, 1, 1),
            "clock": dt.time(0, 0, 0, 1),
            "moment": dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-9, minutes=-30))),
            "moment_tz": dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=NEW_YORK),
            "span": dt.timedelta(days=-3, seconds=5, microseconds=7),
            "doc": {"neg": -1, "float": -1.5e-300},
            "items": [-(2**63), -0.5],
        },
        "scale and precision": {
            "id": 5,
            "small": 0,
            "big": 2**53 + 1,
            "ratio": math.nan,
            "amount": Decimal("1.10"),
            "text": "x" * 2000,
            "blob": bytes(range(256)) * 4,
            "moment": dt.datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
            "moment_tz": dt.datetime(2024, 3, 10, 2, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
            "span": dt.timedelta(microseconds=-1),
            "doc": {
                "big": 2**70,
                "neg big": -(2**65),
                "ünïcødé kéy": "✓ 漢字",
                "levels": {"a": {"b": {"c": {"d": [1, [2, [3, [4]]]]}}}},
                "float": 1e308,
                "zero": -0.0,
            },
            "items": [2**64, [[], {}], {"z": 1, "a": 2}, "🎉", 1.0],
        },
    }


ROWS = _rows()


@pytest.fixture
def db(engine: sa.Engine) -> Iterator[sa.Engine]:
    """``engine`` without pooled connections from earlier tests, and none left for later ones.

    psycopg prepares a statement it has run a few times; a prepared INSERT refers to the enum
    types by oid, and every test drops and recreates them ("cache lookup failed for type").
    """
    engine.dispose()
    yield engine
    engine.dispose()


@pytest.fixture
def pg(postgres_engine: sa.Engine) -> Iterator[sa.Engine]:
    postgres_engine.dispose()
    yield postgres_engine
    postgres_engine.dispose()


def insert(engine: sa.Engine) -> None:
    with Session(engine) as session:
        session.add_all(AllTypes(**values) for values in ROWS.values())
        session.commit()


def columns_of(obj: Any) -> dict[str, Any]:
    assert obj is not None
    return {key: obj.__dict__[key] for key in COLUMNS}


@pytest.mark.parametrize("name", list(ROWS))
def test_hit_gives_every_column_the_database_value_and_type(
    db: sa.Engine, cache: redis.Redis, stats: CacheStats, sql_counter: SQLCounter, name: str
) -> None:
    engine = db
    insert(engine)
    pk = ROWS[name]["id"]
    with Session(engine) as session:
        from_database = columns_of(session.get(AllTypes, pk))

    sql_counter.reset()
    with CachedSession(engine) as session:
        from_miss = columns_of(session.get(AllTypes, pk))
    assert (stats.hits, stats.misses, stats.fills) == (0, 1, 1)
    assert len(sql_counter.selects) == 1
    (key,) = cache.keys("sqlmodelcache:alltypes:*")
    assert not cache.get(key).startswith(b"\x00")  # type: ignore[union-attr]

    sql_counter.reset()
    with CachedSession(engine) as session:
        from_hit = columns_of(session.get(AllTypes, pk))
    assert (stats.hits, stats.misses, stats.fills) == (1, 1, 1)
    assert sql_counter.statements == []

    assert_identical(from_miss, from_database, "miss")
    assert_identical(from_hit, from_database, "hit")


def test_every_row_in_one_session(
    db: sa.Engine, cache: redis.Redis, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    engine = db
    insert(engine)
    pks = [values["id"] for values in ROWS.values()]
    with Session(engine) as session:
        from_database = [columns_of(session.get(AllTypes, pk)) for pk in pks]
    with CachedSession(engine) as session:
        for pk in pks:
            session.get(AllTypes, pk)
    assert stats.fills == len(pks)
    sql_counter.reset()
    with CachedSession(engine) as session:
        from_hits = [columns_of(session.get(AllTypes, pk)) for pk in pks]
    assert stats.hits == len(pks)
    assert sql_counter.statements == []
    assert_identical(from_hits, from_database)


# --- PostgreSQL in a session time zone with DST: the zone and the fold survive -----------------


def _instants_around_transitions(zone: ZoneInfo, year: int = 2024) -> list[dt.datetime]:
    """UTC instants every 15 minutes for 2 hours either side of each of the zone's offset changes."""
    instants = []
    hour = dt.datetime(year, 1, 1, tzinfo=UTC)
    previous = hour.astimezone(zone).utcoffset()
    while hour.year == year:
        offset = hour.astimezone(zone).utcoffset()
        if offset != previous:
            instants += [hour + dt.timedelta(minutes=15 * step) for step in range(-8, 9)]
        previous = offset
        hour += dt.timedelta(hours=1)
    return instants


ZONES = ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kolkata"]


@pytest.mark.parametrize("zone_name", ZONES)
def test_postgresql_session_time_zone_survives_a_hit(
    pg: sa.Engine, cache: redis.Redis, stats: CacheStats, zone_name: str
) -> None:
    postgres_engine = pg
    zone = ZoneInfo(zone_name)
    instants = [
        *_instants_around_transitions(zone),
        dt.datetime(1850, 6, 1, 12, tzinfo=UTC),  # local mean time: an offset with seconds
        dt.datetime(1, 1, 2, tzinfo=UTC),
        dt.datetime(9999, 12, 30, tzinfo=UTC),
        dt.datetime(2024, 7, 1, 12, tzinfo=UTC),
    ]
    with Session(postgres_engine) as session:
        session.add_all(
            AllTypes(id=i, moment=instant, moment_tz=instant) for i, instant in enumerate(instants, start=1)
        )
        session.commit()
    zoned = sa.create_engine(postgres_engine.url, connect_args={"options": f"-c timezone={zone_name}"})
    counter = SQLCounter(zoned)
    sa.event.listen(zoned, "before_cursor_execute", counter)
    try:
        pks = range(1, len(instants) + 1)
        with Session(zoned) as session:
            from_database = [columns_of(session.get(AllTypes, pk)) for pk in pks]
        local = [row["moment_tz"] for row in from_database]
        assert all(isinstance(value.tzinfo, ZoneInfo) for value in local[:-3])  # the test is about zones
        assert [value.astimezone(UTC) for value in local] == instants
        if zone_name != "Asia/Kolkata":
            assert {value.fold for value in local} == {0, 1}  # both sides of each fold are covered
        with CachedSession(zoned) as session:
            for pk in pks:
                session.get(AllTypes, pk)
        assert stats.fills == len(instants)
        counter.reset()
        with CachedSession(zoned) as session:
            from_hits = [columns_of(session.get(AllTypes, pk)) for pk in pks]
        assert stats.hits == len(instants)
        assert counter.statements == []
        assert_identical(from_hits, from_database)
    finally:
        sa.event.remove(zoned, "before_cursor_execute", counter)
        zoned.dispose()
