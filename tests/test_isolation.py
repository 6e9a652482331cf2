"""No global SQLAlchemy event listeners: a plain Session behaves as if the library were absent.

The listener census runs in a fresh interpreter, so the baseline is taken before
``sqlmodel_cache`` is ever imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
from sqlmodel import Session, select

from sqlmodel_cache import CachedSession, CacheStats, SQLModelCache

from .models import Hero, Membership, Team
from .servers import RedisServer

CENSUS_SCRIPT = textwrap.dedent(
    '''
    import json
    import sys

    import sqlalchemy as sa
    import sqlalchemy.event.registry as event_registry
    import sqlmodel
    from sqlalchemy import orm
    from sqlalchemy.orm import instrumentation
    from sqlmodel import Field, SQLModel

    redis_url, db_path = sys.argv[1], sys.argv[2]


    def dispatch_counts(dispatch):
        """Listeners per event on an instance-level dispatch (class-level ones included)."""
        return {name: len(getattr(dispatch, name)) for name in sorted(dispatch._event_names)}


    def class_counts(cls):
        """Listeners per event registered on the class itself (and inherited from its bases)."""
        counts = {}
        for name in sorted(cls.dispatch._event_names):
            level = getattr(cls.dispatch, name)._clslevel
            counts[name] = len(level.get(cls, ()))
        return counts


    def model_counts(model):
        mapper = sa.inspect(model)
        counts = {"mapper": dispatch_counts(mapper.dispatch)}
        counts["instance"] = dispatch_counts(instrumentation.manager_of_class(model).dispatch)
        counts["table"] = dispatch_counts(model.__table__.dispatch)
        for prop in mapper.column_attrs:
            counts["attribute " + prop.key] = dispatch_counts(getattr(model, prop.key).dispatch)
        return counts


    def census(engine, model, models_by_name):
        return {
            "class sqlalchemy.orm.Session": class_counts(orm.Session),
            "class sqlmodel.Session": class_counts(sqlmodel.Session),
            "class sqlalchemy.orm.Mapper": class_counts(orm.Mapper),
            "class sqlalchemy.engine.Engine": class_counts(sa.engine.Engine),
            "class sqlalchemy.engine.Connection": class_counts(sa.engine.Connection),
            "class sqlalchemy.pool.Pool": class_counts(sa.pool.Pool),
            "instance sqlalchemy.orm.Session": dispatch_counts(orm.Session(engine).dispatch),
            "instance sqlmodel.Session": dispatch_counts(sqlmodel.Session(engine).dispatch),
            "instance sessionmaker": dispatch_counts(orm.sessionmaker(engine)().dispatch),
            "instance Engine": dispatch_counts(engine.dispatch),
            "instance Pool": dispatch_counts(engine.pool.dispatch),
            "registry": dispatch_counts(SQLModel._sa_registry.dispatch)
            if hasattr(SQLModel._sa_registry, "dispatch")
            else {},
            "model": model_counts(model),
        }


    class Before(SQLModel, table=True):
        id: int | None = Field(default=None, primary_key=True)
        name: str = ""


    engine = sa.create_engine(f"sqlite:///{db_path}")
    baseline = census(engine, Before, {})
    before_keys = set(event_registry._key_to_collection)

    import redis

    import sqlmodel_cache
    from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
    from sqlmodel_cache.transport import RedisSyncTransport


    class Cached(SQLModel, table=True):
        __cache_config__ = CacheConfig(ttl=60)
        id: int | None = Field(default=None, primary_key=True)
        name: str = ""


    client = redis.Redis.from_url(redis_url)
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add_all([Cached(id=1, name="a"), Before(id=1, name="b")])
        session.commit()
    for name in ("x", "y"):
        with CachedSession(engine) as session:
            session.get(Cached, 1)  # a miss that fills
        with CachedSession(engine) as session:
            row = session.get(Cached, 1)  # a hit
            session.get(Before, 1)
            row.name = name
            session.commit()
    with CachedSession(engine) as session:
        session.delete(session.get(Cached, 1))
        session.commit()
    with CachedSession(engine) as session:
        assert session.get(Cached, 1) is None
        session.rollback()
    second_engine = sa.create_engine(f"sqlite:///{db_path}")
    with sqlmodel.Session(second_engine) as session:
        session.get(Cached, 1)

    after_old_engine = census(engine, Before, {})
    after_new_engine = census(second_engine, Before, {})
    cached_model = model_counts(Cached)

    library_targets = []
    for key, collections in event_registry._key_to_collection.items():
        if key in before_keys:
            continue
        for fn_ref in collections.values():
            fn = fn_ref()
            fn = getattr(fn, "func", fn)  # functools.partial
            module = getattr(fn, "__module__", "") or ""
            if module.startswith("sqlmodel_cache"):
                target = "CachedSession" if key[0] == id(CachedSession) else f"id {key[0]}"
                library_targets.append([target, key[1]])

    print(
        json.dumps(
            {
                "baseline": baseline,
                "after_old_engine": after_old_engine,
                "after_new_engine": after_new_engine,
                "cached_model": cached_model,
                "library_targets": library_targets,
                "hits": SQLModelCache.stats().hits,
                "fills": SQLModelCache.stats().fills,
                "invalidations": SQLModelCache.stats().invalidations,
            }
        )
    )
    client.close()
    '''
)


def _run_census(redis_url: str, tmp_path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", CENSUS_SCRIPT, redis_url, str(tmp_path / "census.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    census: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return census


def _nonzero_differences(before: dict[str, Any], after: dict[str, Any], where: str = "") -> list[str]:
    differences = []
    for name in sorted(set(before) | set(after)):
        left, right = before.get(name), after.get(name)
        if isinstance(left, dict) or isinstance(right, dict):
            differences += _nonzero_differences(left or {}, right or {}, f"{where}{name}: ")
        elif left != right:
            differences.append(f"{where}{name}: {left} -> {right}")
    return differences


def test_no_listeners_outside_cached_session(redis_proc: RedisServer, real_redis: redis.Redis, tmp_path: Path) -> None:
    census = _run_census(redis_proc.url, tmp_path)

    # The cycle really ran through the cache (otherwise the census would prove little).
    assert census["fills"] >= 1 and census["hits"] >= 1 and census["invalidations"] >= 1

    baseline = census["baseline"]
    assert baseline["class sqlalchemy.orm.Session"], "the census found no Session events to inspect"
    assert _nonzero_differences(baseline, census["after_old_engine"]) == []
    assert _nonzero_differences(baseline, census["after_new_engine"]) == []
    # An opted-in model's mapper, instrumentation, table and attributes carry exactly the
    # listeners of a model defined before the library was imported.
    assert _nonzero_differences(baseline["model"], census["cached_model"]) == []
    # Whatever the library registers, it registers on CachedSession and nowhere else.
    assert all(target == "CachedSession" for target, _ in census["library_targets"]), census["library_targets"]


def test_plain_session_does_not_see_cached_session_listeners() -> None:
    """Class-level listeners of CachedSession do not leak into the classes it derives from."""
    engine = sa.create_engine("sqlite://")
    try:
        cached = CachedSession(engine)
        plain = Session(engine)
        base = sa.orm.Session(engine)
        names = sorted(sa.orm.Session.dispatch._event_names)
        for name in names:
            assert len(getattr(plain.dispatch, name)) == len(getattr(base.dispatch, name)), name
        assert sum(len(getattr(plain.dispatch, name)) for name in names) == 0
        assert sum(len(getattr(base.dispatch, name)) for name in names) == 0
        cached.close()
        plain.close()
        base.close()
    finally:
        engine.dispose()


def _command_calls(r: redis.Redis) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in r.info("commandstats").items()}


def _commands_since(r: redis.Redis, before: dict[str, int]) -> dict[str, int]:
    after = _command_calls(r)
    delta = {name: calls - before.get(name, 0) for name, calls in after.items() if calls != before.get(name, 0)}
    # The INFO that took the "before" reading is counted by this one.
    delta["cmdstat_info"] = delta.get("cmdstat_info", 0) - 1
    return {name: calls for name, calls in delta.items() if calls}


def add(engine: sa.Engine, *rows: Any) -> None:
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()


def test_plain_session_never_touches_redis(engine: sa.Engine, cache: redis.Redis, stats: CacheStats) -> None:
    add(engine, Team(id=1, name="t"))
    before_stats = stats.copy()
    before = _command_calls(cache)

    with Session(engine) as session:
        session.add_all([Hero(id=1, name="a", team_id=1), Membership(org="o", user_id=1, role="r")])
        session.commit()
    with Session(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "a"
        assert hero.team is not None and hero.team.name == "t"
        assert session.get(Membership, ("o", 1)) is not None
        assert session.get(Hero, 2) is None
        hero.name = "b"
        session.commit()
    with Session(engine) as session, session.begin():
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "b"
        session.exec(sa.update(Hero).where(Hero.id == 1).values(age=3))  # type: ignore[call-overload,arg-type]
    with Session(engine) as session:
        hero = session.exec(select(Hero)).one()
        assert hero.age == 3
        session.delete(hero)
        session.delete(session.get(Membership, ("o", 1)))
        session.commit()
    with Session(engine) as session:
        assert session.get(Hero, 1) is None
        savepoint = session.begin_nested()
        session.add(Hero(id=9, name="gone"))
        session.flush()
        savepoint.rollback()
        session.rollback()

    assert _commands_since(cache, before) == {}
    assert cache.dbsize() == 0
    assert SQLModelCache.stats() == before_stats

    # The same measurement sees a CachedSession at work.
    add(engine, Hero(id=5, name="cached"))
    before = _command_calls(cache)
    with CachedSession(engine) as session:
        assert session.get(Hero, 5) is not None
    assert _commands_since(cache, before) != {}
    assert cache.dbsize() == 1


def test_event_contains_finds_our_listeners_only_on_our_classes() -> None:
    """``sqlalchemy.event.contains`` on Session, Mapper and Engine: none of our listeners."""
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Mapper

    from sqlmodel_cache._async_session import AsyncTrackedSession  # the sync session inside the async one

    engine = sa.create_engine("sqlite://")
    try:
        ours: list[tuple[str, Any]] = []
        for session in (CachedSession(engine), AsyncTrackedSession(engine)):
            for name in sorted(sa.orm.Session.dispatch._event_names):
                ours += [(name, fn) for fn in getattr(session.dispatch, name)]
            session.close()
        assert {name for name, _ in ours} >= {"after_flush", "after_commit", "do_orm_execute"}
        for name, fn in ours:
            for session_class in (sa.orm.Session, Session):
                assert not sa.event.contains(session_class, name, fn), (session_class, name)
            for other in (Mapper, Engine):
                for other_name in other.dispatch._event_names:  # type: ignore[attr-defined]
                    assert not sa.event.contains(other, other_name, fn), (other, other_name)
        assert any(sa.event.contains(CachedSession, name, fn) for name, fn in ours)
    finally:
        engine.dispose()
