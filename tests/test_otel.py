"""OpenTelemetry metrics (``sqlmodel_cache.otel``): every counter of ``stats()`` exported, the
lookup counters by model, across reconfigurations, and nothing counted by model unless
instrumented."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from opentelemetry import metrics as otel_metrics
from opentelemetry.metrics import MeterProvider as APIMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import Gauge, InMemoryMetricReader, NumberDataPoint, Sum
from sqlmodel import Session

from sqlmodel_cache import CachedSession, CacheStats, ConfigurationError, SQLModelCache, _runtime, otel
from sqlmodel_cache._stats import PerModelCounts
from sqlmodel_cache.transport import RedisSyncTransport

from .models import Account, Article, Hero, Note, Team
from .servers import free_port

ROOT = str(Path(__file__).resolve().parent.parent)

# The exported points of one collection: {instrument name: {attributes: value}}.
Points = dict[str, dict[tuple[tuple[str, Any], ...], int | float]]


class Metrics:
    """A meter provider with an in-memory reader, and what it collects."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.kinds: dict[str, type] = {}
        self.units: dict[str, str] = {}

    def collect(self) -> Points:
        points: Points = {}
        data = self.reader.get_metrics_data()
        if data is None:  # no instrument reported a point
            return points
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "sqlmodel_cache"
                for metric in scope.metrics:
                    self.kinds[metric.name] = type(metric.data)
                    self.units[metric.name] = metric.unit or ""
                    if isinstance(metric.data, Sum):
                        assert metric.data.is_monotonic == (metric.name != "sqlmodel_cache.evictions_pending")
                    by_attributes = points.setdefault(metric.name, {})
                    for point in metric.data.data_points:
                        assert isinstance(point, NumberDataPoint)
                        attributes = tuple(sorted((point.attributes or {}).items()))
                        assert attributes not in by_attributes, f"{metric.name} reported {attributes} twice"
                        by_attributes[attributes] = point.value
        return points


def total(points: Points, name: str) -> int | float:
    return points[f"sqlmodel_cache.{name}"][()]


def of_model(points: Points, name: str, model: str) -> int | float:
    return points[f"sqlmodel_cache.{name}"][(("model", model),)]


@pytest.fixture
def meters() -> Iterator[Metrics]:
    created = Metrics()
    yield created
    otel.uninstrument()
    created.provider.shutdown()


@pytest.fixture(autouse=True)
def _uninstrumented() -> Iterator[None]:
    yield
    otel.uninstrument()


def seed(engine: sa.Engine, *rows: Any) -> None:
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()


def read(engine: sa.Engine, model: type, *pks: int) -> list[Any]:
    """The rows, each read in one session (held, so a key read twice is the identity map's)."""
    with CachedSession(engine) as session:
        return [session.get(model, pk) for pk in pks]


def test_every_field_of_the_stats_is_one_instrument(sqlite_engine: sa.Engine, fake_cache: Any, meters: Metrics) -> None:
    otel.instrument(meter_provider=meters.provider)
    seed(sqlite_engine, Hero(id=1))
    read(sqlite_engine, Hero, 1)
    points = meters.collect()
    assert set(points) == {f"sqlmodel_cache.{field.name}" for field in fields(CacheStats)}
    gauges = {"sqlmodel_cache.purge_pending", "sqlmodel_cache.breaker_state"}
    assert {name for name, kind in meters.kinds.items() if kind is Gauge} == gauges
    assert {name for name, kind in meters.kinds.items() if kind is Sum} == set(points) - gauges
    assert meters.units["sqlmodel_cache.hits"] == "{lookup}"
    assert meters.units["sqlmodel_cache.breaker_trips"] == "{trip}"
    assert total(points, "purge_pending") == 0 and total(points, "evictions_pending") == 0
    states = points["sqlmodel_cache.breaker_state"]
    assert states == {(("state", "closed"),): 1, (("state", "half-open"),): 0, (("state", "open"),): 0}


def test_hits_and_misses_are_exported_per_model_and_the_rest_as_stats_counts_them(
    sqlite_engine: sa.Engine, fake_cache: Any, meters: Metrics
) -> None:
    otel.instrument(meter_provider=meters.provider)
    seed(sqlite_engine, Team(id=1, name="a"), Hero(id=1, name="b"), Hero(id=2, name="c"), Article(id=1))
    read(sqlite_engine, Hero, 1, 2)  # two misses (each filled)
    read(sqlite_engine, Hero, 1, 2)  # two hits
    read(sqlite_engine, Team, 1, 1)  # one miss (the second get is the identity map's)
    read(sqlite_engine, Team, 1)  # one hit
    read(sqlite_engine, Article, 9)  # a miss that stores "no such row"
    read(sqlite_engine, Article, 9, 1)  # a negative hit, and a miss
    with CachedSession(sqlite_engine) as session:
        assert [hero.id for hero in session.get_many(Hero, [1, 2, 3]) if hero is not None] == [1, 2]  # 2 hits, 1 miss

    points = meters.collect()
    # A model is reported from its first counted lookup on, with every count.
    assert points["sqlmodel_cache.hits"] == {
        (("model", "Hero"),): 4,
        (("model", "Team"),): 1,
        (("model", "Article"),): 0,
    }
    assert points["sqlmodel_cache.misses"] == {
        (("model", "Hero"),): 3,
        (("model", "Team"),): 1,
        (("model", "Article"),): 2,
    }
    assert of_model(points, "negative_hits", "Article") == 1
    assert of_model(points, "negative_hits", "Hero") == 0
    assert of_model(points, "near_hits", "Hero") == 0
    stats = SQLModelCache.stats()
    assert (stats.hits, stats.misses, stats.negative_hits) == (5, 6, 1)
    for field in fields(CacheStats):
        if field.name in ("hits", "negative_hits", "near_hits", "misses", "breaker_state"):
            continue
        assert total(points, field.name) == getattr(stats, field.name), field.name
    assert total(points, "fills") == 5  # Hero 1 and 2, Team 1, Article 1, and Article 9's "no such row"


def test_near_hits_are_exported_per_model(sqlite_engine: sa.Engine, real_redis: redis.Redis, meters: Metrics) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
    otel.instrument(meter_provider=meters.provider)
    seed(sqlite_engine, Note(id=1, title="first"))
    deadline = time.monotonic() + 5
    while SQLModelCache.stats().near_hits < 3:  # tracking starts with the first read
        assert time.monotonic() < deadline, "Note 1 was never served from process memory"
        read(sqlite_engine, Note, 1)
    stats = SQLModelCache.stats()
    points = meters.collect()
    assert of_model(points, "near_hits", "Note") == stats.near_hits
    assert of_model(points, "hits", "Note") == stats.hits
    assert of_model(points, "misses", "Note") == stats.misses == 1


def test_without_instrument_nothing_is_counted_by_model(
    sqlite_engine: sa.Engine, fake_cache: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: PerModelCounts, model: type) -> Any:
        raise AssertionError("counted by model while not instrumented")

    monkeypatch.setattr(PerModelCounts, "of", refused)
    seed(sqlite_engine, Hero(id=1), Article(id=1))
    read(sqlite_engine, Hero, 1, 2)
    read(sqlite_engine, Hero, 1, 2)
    for _ in range(2):
        with CachedSession(sqlite_engine) as session:
            session.get_many(Article, [1, 2])
    runtime = _runtime.active()
    assert runtime is not None and runtime.per_model is None
    stats = SQLModelCache.stats()
    assert (stats.hits, stats.negative_hits, stats.misses) == (2, 1, 5)


def test_uninstrument_stops_counting_by_model_and_reporting(
    sqlite_engine: sa.Engine, fake_cache: Any, meters: Metrics
) -> None:
    otel.instrument(meter_provider=meters.provider)
    seed(sqlite_engine, Hero(id=1))
    read(sqlite_engine, Hero, 1)
    otel.uninstrument()
    otel.uninstrument()  # safe when not instrumented
    runtime = _runtime.active()
    assert runtime is not None and runtime.per_model is None
    read(sqlite_engine, Hero, 1)
    assert meters.collect() == {}  # the instruments stay registered, and report nothing

    otel.instrument(meter_provider=meters.provider)  # counts from zero again
    read(sqlite_engine, Hero, 1)
    points = meters.collect()
    assert points["sqlmodel_cache.hits"] == {(("model", "Hero"),): 1}
    assert total(points, "fills") == 0


def test_the_counters_count_from_instrument_and_survive_reconfiguration(
    sqlite_engine: sa.Engine, fake_redis: Any, meters: Metrics
) -> None:
    seed(sqlite_engine, Hero(id=1), Hero(id=2), Team(id=1))
    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis))
    read(sqlite_engine, Hero, 1)  # before instrument(): not exported
    otel.instrument(meter_provider=meters.provider)
    read(sqlite_engine, Hero, 1, 2)  # a hit, a miss
    points = meters.collect()
    assert of_model(points, "hits", "Hero") == 1 and of_model(points, "misses", "Hero") == 1
    assert total(points, "fills") == 1

    read(sqlite_engine, Team, 1)  # counted by the runtime that reset() drops
    SQLModelCache.reset()
    points = meters.collect()
    assert total(points, "fills") == 2  # carried over, not lost nor reset
    assert "sqlmodel_cache.breaker_state" not in points  # no current state while unconfigured
    assert "sqlmodel_cache.evictions_pending" not in points

    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis))
    read(sqlite_engine, Hero, 1, 2)  # two hits, in Redis from before
    read(sqlite_engine, Team, 1)  # a hit
    points = meters.collect()
    assert points["sqlmodel_cache.hits"] == {(("model", "Hero"),): 3, (("model", "Team"),): 1}
    assert points["sqlmodel_cache.misses"] == {(("model", "Hero"),): 1, (("model", "Team"),): 1}
    assert total(points, "fills") == 2
    assert SQLModelCache.stats().hits == 3  # stats() counts since configure(), the export since instrument()
    assert points["sqlmodel_cache.breaker_state"][(("state", "closed"),)] == 1


def test_instrument_before_configure(sqlite_engine: sa.Engine, fake_redis: Any, meters: Metrics) -> None:
    otel.instrument(meter_provider=meters.provider)
    assert total(meters.collect(), "fills") == 0
    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis))
    seed(sqlite_engine, Hero(id=1))
    read(sqlite_engine, Hero, 1)
    read(sqlite_engine, Hero, 1)
    points = meters.collect()
    assert of_model(points, "misses", "Hero") == 1 and of_model(points, "hits", "Hero") == 1
    assert total(points, "fills") == 1


def test_instrument_twice_registers_once(sqlite_engine: sa.Engine, fake_cache: Any, meters: Metrics) -> None:
    otel.instrument(meter_provider=meters.provider)
    otel.instrument(meter_provider=meters.provider)  # the same provider: nothing more
    seed(sqlite_engine, Hero(id=1))
    read(sqlite_engine, Hero, 1)
    read(sqlite_engine, Hero, 1)
    points = meters.collect()  # which also asserts that no series is reported twice
    assert of_model(points, "hits", "Hero") == 1 and total(points, "fills") == 1

    other = Metrics()
    with pytest.raises(ConfigurationError, match="uninstrument"):
        otel.instrument(meter_provider=other.provider)
    otel.uninstrument()
    otel.instrument(meter_provider=other.provider)
    read(sqlite_engine, Hero, 1)
    assert of_model(other.collect(), "hits", "Hero") == 1
    assert meters.collect() == {}  # the first provider's instruments report nothing now
    other.provider.shutdown()


def test_none_means_the_global_meter_provider(
    sqlite_engine: sa.Engine, fake_cache: Any, meters: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    def global_provider() -> APIMeterProvider:
        return meters.provider

    monkeypatch.setattr(otel_metrics, "get_meter_provider", global_provider)
    otel.instrument()
    otel.instrument(meter_provider=meters.provider)  # the same provider, named
    seed(sqlite_engine, Hero(id=1))
    read(sqlite_engine, Hero, 1)
    assert of_model(meters.collect(), "misses", "Hero") == 1


def test_redis_failures_breaker_and_kept_evictions_are_exported(sqlite_engine: sa.Engine, meters: Metrics) -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    transport = RedisSyncTransport(client, failure_threshold=1, cooldown=60)
    SQLModelCache.configure(transport=transport)
    otel.instrument(meter_provider=meters.provider)
    seed(sqlite_engine, Hero(id=1, name="a"))
    read(sqlite_engine, Hero, 1, 1)
    with CachedSession(sqlite_engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "b"
        session.commit()  # its eviction is not sent (breaker open): kept
    stats = SQLModelCache.stats()
    points = meters.collect()
    assert stats.breaker_state == "open" and stats.evictions_pending == 1
    assert points["sqlmodel_cache.breaker_state"] == {
        (("state", "closed"),): 0,
        (("state", "half-open"),): 0,
        (("state", "open"),): 1,
    }
    assert total(points, "breaker_trips") == 1
    assert total(points, "redis_errors") == stats.redis_errors > 0
    assert total(points, "breaker_skips") == stats.breaker_skips > 0
    assert total(points, "evictions_pending") == 1
    assert total(points, "invalidations_failed") == 1

    # The same transport configured again: its trip is not counted twice.
    SQLModelCache.reset()
    assert total(meters.collect(), "breaker_trips") == 1
    SQLModelCache.configure(transport=transport)
    assert SQLModelCache.stats().breaker_trips == 1
    assert total(meters.collect(), "breaker_trips") == 1
    client.close()


def test_importing_without_opentelemetry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "sqlmodel_cache.otel")
    with pytest.raises(ImportError, match=r'pip install "sqlmodel-cache\[otel\]"'):
        importlib.import_module("sqlmodel_cache.otel")


def test_get_by_counts_for_its_model(sqlite_engine: sa.Engine, fake_cache: Any, meters: Metrics) -> None:
    otel.instrument(meter_provider=meters.provider)
    seed(sqlite_engine, Account(id=1, email="a@example.com"))
    for _ in range(2):
        with CachedSession(sqlite_engine) as session:
            assert session.get_by(Account, email="a@example.com") is not None
            assert session.get_by(Account, email="nobody@example.com") is None
    points = meters.collect()
    assert of_model(points, "misses", "Account") == 2  # each key once
    assert of_model(points, "hits", "Account") == 1
    assert of_model(points, "negative_hits", "Account") == 1


async def test_the_async_session_counts_per_model(sqlite_engine: sa.Engine, meters: Metrics) -> None:
    import fakeredis
    from sqlalchemy.ext.asyncio import create_async_engine

    from sqlmodel_cache import AsyncCachedSession
    from sqlmodel_cache.transport import RedisAsyncTransport

    client = fakeredis.FakeAsyncRedis(version=(7, 0))
    SQLModelCache.configure(transport=RedisAsyncTransport(client))
    otel.instrument(meter_provider=meters.provider)
    seed(sqlite_engine, Hero(id=1), Hero(id=2))
    engine = create_async_engine(f"sqlite+aiosqlite:///{sqlite_engine.url.database}")
    try:
        for _ in range(2):
            async with AsyncCachedSession(engine) as session:
                hero = await session.get(Hero, 1)
                assert await session.get_many(Hero, [1, 2]) == [hero, await session.get(Hero, 2)]
    finally:
        await engine.dispose()
        await client.aclose()
    points = meters.collect()
    # get(1), then get_many() of 2 (1 is in the identity map): twice, missed then hit
    assert of_model(points, "misses", "Hero") == 2
    assert of_model(points, "hits", "Hero") == 2


def test_instrument_before_the_global_provider_is_set() -> None:
    """OpenTelemetry's API forwards to the global provider set after ``instrument()``; a second
    ``instrument()`` then is the same export (a process of its own: the global is set once)."""
    import subprocess

    script = """
import fakeredis
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlmodel_cache import SQLModelCache
from sqlmodel_cache.otel import instrument
from sqlmodel_cache.transport import RedisSyncTransport

instrument()
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
instrument()
SQLModelCache.configure(transport=RedisSyncTransport(fakeredis.FakeRedis(version=(7, 0))))
data = reader.get_metrics_data()
names = [metric.name for rm in data.resource_metrics for sm in rm.scope_metrics for metric in sm.metrics]
print(sorted(names))
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])},
    )
    assert result.returncode == 0, result.stderr
    # Every instrument, but those per model: no lookup was counted yet.
    assert result.stdout.strip() == str(sorted(item.name for item in otel._INSTRUMENTS if not item.per_model))


def test_the_module_exports_instrument_and_uninstrument() -> None:
    assert otel.__all__ == ["instrument", "uninstrument"]
    assert callable(otel.instrument) and callable(otel.uninstrument)
