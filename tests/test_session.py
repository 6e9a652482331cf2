"""CachedSession behaviour, on every backend: SQLite and PostgreSQL, fakeredis and redis-server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from sqlmodel_cache import CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .conftest import SQLCounter
from .models import Disabled, Hero, Membership, NoTTL, Plain, Sidekick, Team, Token


@pytest.fixture
def r(any_redis: redis.Redis) -> redis.Redis:
    SQLModelCache.configure(transport=RedisSyncTransport(any_redis), default_ttl=60)
    return any_redis


def add(engine: sa.Engine, *rows: Any) -> None:
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()


def entries(r: redis.Redis) -> dict[bytes, bytes]:
    return {key: r.get(key) for key in r.keys("*")}  # type: ignore[misc]


def test_miss_fills_then_hit_runs_no_sql(
    engine: sa.Engine, r: redis.Redis, sql_counter: SQLCounter, stats: CacheStats
) -> None:
    add(engine, Hero(id=1, name="Deadpond", secret_name="Dive Wilson"))
    sql_counter.reset()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "Deadpond"
    assert len(sql_counter.selects) == 1
    assert stats.fills == 1
    assert len(r.keys("sqlmodelcache:hero:*")) == 1

    sql_counter.reset()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        assert (hero.id, hero.name, hero.secret_name) == (1, "Deadpond", "Dive Wilson")
    assert sql_counter.statements == []
    assert stats.hits == 1


def test_missing_row_is_none_and_not_cached(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    with CachedSession(engine) as session:
        assert session.get(Hero, 404) is None
    with CachedSession(engine) as session:
        assert session.get(Hero, 404) is None
    assert stats.hits == 0 and stats.fills == 0


def test_a_missing_row_leaves_no_key_behind(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    add(engine, Hero(id=1, name="a"))
    with CachedSession(engine) as session:
        assert session.get(Hero, 404) is None
        assert [h.name if h else None for h in session.get_many(Hero, [405, 1, 406])] == [None, "a", None]
    assert r.keys("*") == [SQLModelCache.cache_key(Hero, 1).encode()]  # the leases were released
    assert stats.misses == 4 and stats.fills == 1


def test_a_lease_is_released_when_the_row_may_not_be_published(
    engine: sa.Engine, r: redis.Redis, stats: CacheStats
) -> None:
    add(engine, Hero(id=1, name="a"), Hero(id=2, name="b"))
    with CachedSession(engine) as session:
        session.add(Hero(id=3, name="pending"))  # autoflushed by the load: nothing it reads may be published
        assert session.get(Hero, 1) is not None
        assert [h.name for h in session.get_many(Hero, [2]) if h] == ["b"]
        assert r.keys("*") == []  # no lease left behind for another reader to wait out
        session.rollback()
    assert stats.fills == 0 and stats.fills_skipped_own_writes == 2


def test_identity_map_first_no_redis_call(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    add(engine, Hero(id=1, name="a"))
    with CachedSession(engine) as session:
        first = session.get(Hero, 1)
        calls = stats.hits + stats.misses
        second = session.get(Hero, 1)
        assert second is first
        assert stats.hits + stats.misses == calls


def test_update_then_other_session_reads_new_value(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="old"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)  # fill
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "new"
        session.commit()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "new"


def test_delete_then_other_session_reads_none(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="doomed"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        session.delete(hero)
        session.commit()
    assert r.keys("sqlmodelcache:hero:*") == []
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is None


def test_plain_session_write_is_not_seen_by_cache_until_evicted(engine: sa.Engine, r: redis.Redis) -> None:
    """A write the library cannot see (plain Session) is bounded by the TTL: documented limit."""
    add(engine, Hero(id=1, name="cached"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    with Session(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "changed behind our back"
        session.commit()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "cached"
    assert 0 < r.pttl(r.keys("sqlmodelcache:hero:*")[0]) <= 600_000


def test_rollback_leaves_cache_unchanged(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="kept"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    before = entries(r)
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "discarded"
        session.flush()
        session.rollback()
    assert entries(r) == before
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None and hero.name == "kept"


def test_uncommitted_flush_never_reaches_redis(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    add(engine, Hero(id=1, name="committed"), Hero(id=2, name="other"))
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        fills_before_write = stats.fills
        hero.name = "uncommitted"
        session.flush()
        session.expunge(hero)  # the identity map no longer shields the row
        again = session.get(Hero, 1)
        assert again is not None and again.name == "uncommitted"
        other = session.get(Hero, 2)  # any read after a write in this transaction: no fill
        assert other is not None
        for value in entries(r).values():
            assert b"uncommitted" not in value
        assert stats.fills == fills_before_write
        session.rollback()
    assert entries(r) == {} or all(b"uncommitted" not in v for v in entries(r).values())


def test_own_write_is_not_read_from_cache(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    add(engine, Hero(id=1, name="cached"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "mine"
        session.flush()
        session.expunge_all()
        mine = session.get(Hero, 1)
        assert mine is not None and mine.name == "mine"
        session.commit()


def test_insert_is_visible_and_evicts(engine: sa.Engine, r: redis.Redis) -> None:
    with CachedSession(engine) as session:
        assert session.get(Hero, 7) is None
        session.add(Hero(id=7, name="new"))
        session.commit()
    with CachedSession(engine) as session:
        hero = session.get(Hero, 7)
        assert hero is not None and hero.name == "new"


def test_begin_context_manager_evicts(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="old"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    with CachedSession(engine) as session, session.begin():
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "new"
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "new"  # type: ignore[union-attr]


def test_sessionmaker_begin_evicts(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="old"))
    factory = sessionmaker(engine, class_=CachedSession)
    with factory() as session:
        session.get(Hero, 1)
    with factory.begin() as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "new"
    with factory() as session:
        assert session.get(Hero, 1).name == "new"  # type: ignore[union-attr]


def test_released_savepoint_evicts_on_outer_commit(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="old"), Hero(id=2, name="two"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
        session.get(Hero, 2)
    with CachedSession(engine) as session:
        with session.begin_nested():
            hero = session.get(Hero, 1)
            assert hero is not None
            hero.name = "released"
        savepoint = session.begin_nested()
        two = session.get(Hero, 2)
        assert two is not None
        two.name = "rolled back"
        session.flush()
        savepoint.rollback()
        assert len(r.keys("sqlmodelcache:hero:*")) == 2  # nothing evicted before the outer commit
        session.commit()
    keys = r.keys("sqlmodelcache:hero:*")
    assert len(keys) == 1 and keys[0].endswith(b":2")
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "released"  # type: ignore[union-attr]
        assert session.get(Hero, 2).name == "two"  # type: ignore[union-attr]


def test_cascade_and_orphans_evict_children(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Team(id=1, name="t"))
    add(engine, Hero(id=1, name="a", team_id=1), Hero(id=2, name="b", team_id=1))
    with CachedSession(engine) as session:
        for pk in (1, 2):
            session.get(Hero, pk)
    with CachedSession(engine) as session:
        team = session.get(Team, 1)
        session.delete(team)  # cascade_delete removes the heroes the flush discovers
        session.commit()
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is None
        assert session.get(Hero, 2) is None


def test_orphan_found_by_the_flush_is_evicted(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Team(id=1, name="t"))
    add(engine, Hero(id=1, name="a", team_id=1))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    with CachedSession(engine) as session:
        team = session.get(Team, 1)
        assert team is not None
        team.heroes.remove(team.heroes[0])  # delete-orphan: only the flush deletes the hero
        session.commit()
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is None


def test_removing_child_nulls_its_foreign_key(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="h"))
    add(engine, Sidekick(id=1, name="s", hero_id=1))
    with CachedSession(engine) as session:
        session.get(Sidekick, 1)
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        sidekick = hero.sidekicks[0]
        hero.sidekicks.remove(sidekick)  # the unit of work nulls sidekick.hero_id
        session.commit()
    with CachedSession(engine) as session:
        sidekick = session.get(Sidekick, 1)
        assert sidekick is not None and sidekick.hero_id is None


def test_primary_key_change_evicts_old_and_new(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="moving"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.id = 5
        session.commit()
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is None
        assert session.get(Hero, 5).name == "moving"  # type: ignore[union-attr]


def test_composite_and_uuid_keys(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    token = Token(label="x")
    token_id = token.id
    add(engine, Membership(org="a,b", user_id=1, role="admin"), Membership(org="a", user_id=1, role="user"), token)
    for _ in range(2):
        with CachedSession(engine) as session:
            assert session.get(Membership, ("a,b", 1)).role == "admin"  # type: ignore[union-attr]
            assert session.get(Membership, {"org": "a", "user_id": 1}).role == "user"  # type: ignore[union-attr]
            assert session.get(Membership, ("a", 2)) is None
            assert session.get(Token, token_id).label == "x"  # type: ignore[union-attr]
    assert stats.hits == 3
    values = [r.get(k) for k in r.keys("sqlmodelcache:membership:*")]
    assert len([v for v in values if v and not v.startswith(b"\x00")]) == 2


def test_a_key_in_another_exact_form_is_cached_like_the_typed_value(
    engine: sa.Engine, r: redis.Redis, stats: CacheStats, sql_counter: SQLCounter, caplog: pytest.LogCaptureFixture
) -> None:
    """A JWT ``sub`` is a UUID's string form: the database takes it, and so does the cache."""
    import uuid

    token = uuid.uuid4()
    add(engine, Hero(id=1, name="a"), Token(id=token, label="t"))
    forms = [str(token), token.hex, f"{{{token}}}", str(token).upper(), token.urn]
    with CachedSession(engine) as session:
        first = session.get(Token, forms[0])  # a miss, filled
        assert first is not None and first.label == "t"
        assert all(session.get(Token, form) is first for form in forms)  # the identity map, as with 1 form
    for form in forms:
        with CachedSession(engine) as session:
            assert session.get(Token, form).id == token  # type: ignore[union-attr]
    with CachedSession(engine) as session:
        hero = session.get(Hero, "1")
        assert hero is not None and hero is session.get(Hero, 1)
    assert stats.fills == 2 and stats.hits == len(forms) and stats.uncacheable == 0
    assert len(r.keys("sqlmodelcache:token:*")) == 1, "one row, one key, whatever form it was asked by"

    sql_counter.reset()
    with caplog.at_level(logging.DEBUG, logger="sqlmodel_cache"), CachedSession(engine) as session:
        assert session.get(Hero, "01").name == "a"  # type: ignore[union-attr]  # the database takes it; not exact
    assert stats.uncacheable == 1 and len(sql_counter.selects) == 1
    assert any("not cached" in record.message and "'01'" in record.message for record in caplog.records)


def test_execution_option_cache_false(engine: sa.Engine, r: redis.Redis, sql_counter: SQLCounter) -> None:
    add(engine, Hero(id=1, name="a"))
    with CachedSession(engine) as session:
        assert session.get(Hero, 1, execution_options={"cache": False}) is not None
    assert r.keys("*") == []
    with CachedSession(engine) as session:
        session.get(Hero, 1)  # fill
    sql_counter.reset()
    with CachedSession(engine) as session:
        assert session.get(Hero, 1, execution_options={"cache": False}) is not None
    assert len(sql_counter.selects) == 1


def test_ttl_precedence(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="a"), Hero(id=2, name="b"), NoTTL(id=1, name="c"))
    with CachedSession(engine) as session:
        session.get(Hero, 1, execution_options={"cache_ttl": 5})
        session.get(Hero, 2)
        session.get(NoTTL, 1)
    (per_call,) = r.keys("sqlmodelcache:hero:*:1")
    (model,) = r.keys("sqlmodelcache:hero:*:2")
    (default,) = r.keys("sqlmodelcache:nottl:*:1")
    assert 4_000 < r.pttl(per_call) <= 5_000
    assert 590_000 < r.pttl(model) <= 600_000
    assert 50_000 < r.pttl(default) <= 60_000


def test_ineligible_calls_pass_through(engine: sa.Engine, r: redis.Redis, sql_counter: SQLCounter) -> None:
    add(engine, Hero(id=1, name="a"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    sql_counter.reset()
    with CachedSession(engine) as session:
        assert session.get(Hero, 1, populate_existing=True) is not None
    with CachedSession(engine) as session:
        assert session.get(Hero, 1, options=[sa.orm.selectinload(Hero.team)]) is not None  # type: ignore[arg-type]
    with CachedSession(engine) as session:
        if engine.dialect.name == "postgresql":
            assert session.get(Hero, 1, with_for_update=True) is not None
    with CachedSession(engine) as session:
        assert session.exec(select(Hero)).all()
    expected = 4 if engine.dialect.name == "postgresql" else 3
    assert len(sql_counter.selects) == expected


def test_models_without_config_never_touch_the_cache(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Plain(id=1, name="p"), Disabled(id=1, name="d"))
    with CachedSession(engine) as session:
        assert session.get(Plain, 1) is not None
        assert session.get(Disabled, 1) is not None
        obj = session.get(Plain, 1)
        assert obj is not None
        obj.name = "changed"
        session.commit()
    assert r.keys("*") == []


def test_disabled_globally(engine: sa.Engine, any_redis: redis.Redis) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(any_redis), enabled=False)
    add(engine, Hero(id=1, name="a"))
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is not None
    assert any_redis.keys("*") == []


def test_key_prefix(engine: sa.Engine, any_redis: redis.Redis) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(any_redis), key_prefix="myapp")
    add(engine, Hero(id=1, name="a"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    (key,) = any_redis.keys("*")
    assert key.startswith(b"myapp:hero:")


def test_explicit_eviction_for_writes_outside_the_orm(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="a"), Hero(id=2, name="b"), Membership(org="o", user_id=1, role="r"))
    with CachedSession(engine) as session:
        for pk in (1, 2):
            session.get(Hero, pk)
        session.get(Membership, ("o", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hero SET name = 'raw'"))
        conn.execute(sa.text("UPDATE membership SET role = 'raw'"))
    SQLModelCache.evict(Hero, 1, 2)
    SQLModelCache.evict(Membership, ("o", 1))
    assert r.keys("*") == []
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "raw"  # type: ignore[union-attr]
        assert session.get(Membership, ("o", 1)).role == "raw"  # type: ignore[union-attr]


def test_explicit_eviction_rejects_bad_input(any_redis: redis.Redis) -> None:
    from sqlmodel_cache import ConfigurationError

    with pytest.raises(ConfigurationError, match="not configured"):
        SQLModelCache.evict(Hero, 1)
    SQLModelCache.configure(transport=RedisSyncTransport(any_redis))
    with pytest.raises(ConfigurationError, match="not a cached model"):
        SQLModelCache.evict(Plain, 1)
    with pytest.raises(ConfigurationError, match="not a primary key"):
        SQLModelCache.evict(Membership, "only-one-part")
    with pytest.raises(ConfigurationError, match="aevict"):
        asyncio.run(SQLModelCache.aevict(Hero, 1))


def test_autoflushed_changes_are_evicted_on_commit(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="old"), Hero(id=2, name="two"))
    with CachedSession(engine) as session:
        session.get(Hero, 1)
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        hero.name = "autoflushed"
        session.exec(select(Hero).where(Hero.id == 2)).all()  # this query autoflushes the change
        assert not session.dirty
        session.commit()
    with CachedSession(engine) as session:
        assert session.get(Hero, 1).name == "autoflushed"  # type: ignore[union-attr]


def test_get_one_goes_through_the_cache(engine: sa.Engine, r: redis.Redis, stats: CacheStats) -> None:
    add(engine, Hero(id=1, name="one"))
    for _ in range(2):
        with CachedSession(engine) as session:
            assert session.get_one(Hero, 1).name == "one"
    assert stats.hits == 1
    with CachedSession(engine) as session, pytest.raises(sa.exc.NoResultFound):
        session.get_one(Hero, 404)


def test_with_for_update_reads_the_database_and_refreshes(engine: sa.Engine, r: redis.Redis) -> None:
    add(engine, Hero(id=1, name="old"))
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)
        assert hero is not None
        with engine.begin() as conn:  # a write the session cannot see
            conn.execute(sa.text("UPDATE hero SET name = 'locked' WHERE id = 1"))
        locked = session.get(Hero, 1, with_for_update=True)
        assert locked is hero and hero.name == "locked"
