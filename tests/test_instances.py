"""Invariant 6: an instance served from the cache is an ordinary persistent instance of the session.

Every test compares a cache hit with the same row loaded from the database, on SQLite and
PostgreSQL, with the real redis-server.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import pydantic
import pytest
import redis
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient
from sqlalchemy import inspect
from sqlalchemy.orm import joinedload, selectinload
from sqlmodel import Session, SQLModel, select

from sqlmodel_cache import CachedSession, CacheStats

from .conftest import SQLCounter
from .models import AllTypes, Hero, Sidekick, Team
from .test_codec import assert_identical
from .test_types import ROWS
from .test_types import insert as insert_all_types

NO_CACHE = {"cache": False}


class HeroPublic(SQLModel):
    """A response model, as in the FastAPI tutorial."""

    id: int
    name: str
    age: int | None = None


class HeroOut(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(from_attributes=True)

    id: int
    name: str
    secret_name: str
    age: int | None
    team_id: int | None


@pytest.fixture
def db(engine: sa.Engine) -> Iterator[sa.Engine]:
    """``engine`` without pooled connections from earlier tests, and none left for later ones.

    psycopg prepares a statement it has run a few times; a prepared INSERT refers to types by
    oid, and every test drops and recreates them ("cache lookup failed for type").
    """
    engine.dispose()
    yield engine
    engine.dispose()


@pytest.fixture
def heroes(db: sa.Engine, cache: redis.Redis) -> sa.Engine:
    """A team with two heroes, a third hero on his own, two sidekicks; every row already in the cache."""
    with Session(db) as session:
        session.add(Team(id=1, name="Preventers"))
        session.add_all(
            [
                Hero(id=1, name="Deadpond", secret_name="Dive Wilson", age=30, team_id=1),
                Hero(id=2, name="Rusty-Man", secret_name="Tommy Sharp", age=None, team_id=1),
                Hero(id=3, name="Loner", secret_name="Nobody", age=99, team_id=None),
            ]
        )
        session.add_all([Sidekick(id=1, name="Kid", hero_id=1), Sidekick(id=2, name="Pup", hero_id=1)])
        session.commit()
    with CachedSession(db) as session:
        for model, pk in [(Team, 1), (Hero, 1), (Hero, 2), (Hero, 3), (Sidekick, 1), (Sidekick, 2)]:
            assert session.get(model, pk) is not None
    assert len(cache.keys("sqlmodelcache:*")) == 6
    return db


def hit(session: Session, model: type[Any], pk: Any, stats: CacheStats) -> Any:
    """``session.get`` that must be answered by the cache."""
    before = stats.hits
    obj = session.get(model, pk)
    assert obj is not None
    assert stats.hits == before + 1, "expected a cache hit"
    return obj


def from_database(session: Session, model: type[Any], pk: Any, stats: CacheStats) -> Any:
    """The same row, loaded from the database by the same kind of session."""
    before = stats.hits
    obj = session.get(model, pk, execution_options=NO_CACHE)
    assert obj is not None
    assert stats.hits == before
    return obj


def state_facts(session: Session, obj: Any) -> dict[str, Any]:
    state = inspect(obj)
    return {
        "persistent": state.persistent,
        "transient": state.transient,
        "pending": state.pending,
        "detached": state.detached,
        "deleted": state.deleted,
        "has_identity": state.has_identity,
        "session is ours": state.session is session,
        "in session": obj in session,
        "in identity map": session.identity_map.get(state.key) is obj,
        "dirty": obj in session.dirty,
        "new": obj in session.new,
        "is_modified": session.is_modified(obj),
        "modified": state.modified,
        "committed_state": dict(state.committed_state),
        "expired": set(state.expired_attributes),
        "unloaded": set(state.unloaded),
        "identity": state.identity,
    }


def test_hit_is_a_persistent_instance_of_the_session(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        loaded = from_database(session, Hero, 2, stats)
        facts = state_facts(session, cached)
        assert facts == {
            **state_facts(session, loaded),
            "identity": (1,),
        }
        assert facts["persistent"] and facts["in identity map"] and facts["session is ours"]
        assert not facts["dirty"] and not facts["is_modified"] and not facts["modified"]
        assert facts["unloaded"] == {"team", "sidekicks"}
        assert inspect(cached).key == session.identity_key(Hero, 1)
        assert session.get(Hero, 1) is cached  # the identity map answers now
        assert stats.hits == 1
        session.flush()
        assert not session.dirty and not session.new


def test_edit_of_a_hit_is_tracked_and_flushed(heroes: sa.Engine, stats: CacheStats, sql_counter: SQLCounter) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        loaded = from_database(session, Hero, 2, stats)
        cached.age = 31
        loaded.age = 31
        for obj, old in ((cached, 30), (loaded, None)):
            assert obj in session.dirty
            assert session.is_modified(obj)
            history = inspect(obj).attrs.age.history
            assert (list(history.added), list(history.unchanged), list(history.deleted)) == ([31], [], [old])
            assert not inspect(obj).attrs.name.history.has_changes()
        sql_counter.reset()
        session.commit()
    updates = [s for s in sql_counter.statements if s.lstrip().upper().startswith("UPDATE")]
    # Only the edited column is written, for the cached instance as for the loaded one.
    assert len(updates) in (1, 2)  # one executemany on some dialects, one statement per row on others
    for statement in updates:
        assert "age" in statement and "name" not in statement and "secret_name" not in statement
    with Session(heroes) as session:
        assert session.get(Hero, 1).age == 31  # type: ignore[union-attr]
        assert session.get(Hero, 2).age == 31  # type: ignore[union-attr]
    with CachedSession(heroes) as session:
        assert session.get(Hero, 1).age == 31  # type: ignore[union-attr]
    with CachedSession(heroes) as session:
        assert hit(session, Hero, 1, stats).age == 31


def test_setting_the_same_value_is_not_a_change(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        cached.name = "Deadpond"
        assert not session.is_modified(cached)
        cached.name = "Deadpool"
        cached.name = "Deadpond"
        assert not session.is_modified(cached)


def test_relationships_lazy_load_from_a_hit(heroes: sa.Engine, stats: CacheStats, sql_counter: SQLCounter) -> None:
    with CachedSession(heroes) as session:
        hero = hit(session, Hero, 1, stats)
        sql_counter.reset()
        team = hero.team  # many-to-one, not in the session yet: one SELECT
        assert team is not None and team.name == "Preventers"
        assert len(sql_counter.selects) == 1
        assert sorted(s.name for s in hero.sidekicks) == ["Kid", "Pup"]
        assert all(s.hero is hero for s in hero.sidekicks)  # back-references find the cached instance
        members = team.heroes
        assert sorted(h.id for h in members) == [1, 2]
        assert any(h is hero for h in members)  # the loaded collection holds the very instance
        assert session.get(Team, 1) is team

    with CachedSession(heroes) as session:
        team = hit(session, Team, 1, stats)
        hero = hit(session, Hero, 2, stats)
        sql_counter.reset()
        assert hero.team is team  # many-to-one answered from the identity map: no SQL
        assert sql_counter.statements == []
        assert sorted(h.name for h in team.heroes) == ["Deadpond", "Rusty-Man"]
        assert hero in team.heroes
        loner = hit(session, Hero, 3, stats)
        assert loner.team is None and loner.sidekicks == []


def test_later_query_with_eager_loading_fills_a_hit(
    heroes: sa.Engine, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    for through_cache in (True, False):
        with CachedSession(heroes) as session:
            hero = hit(session, Hero, 1, stats) if through_cache else from_database(session, Hero, 1, stats)
            query = select(Hero).where(Hero.id == 1).options(selectinload(Hero.sidekicks), joinedload(Hero.team))
            assert session.exec(query).one() is hero  # the query finds the instance in the identity map
            sql_counter.reset()
            assert sorted(s.name for s in hero.sidekicks) == ["Kid", "Pup"]
            assert hero.team is not None and hero.team.name == "Preventers"
            assert sql_counter.statements == [], through_cache


def test_pickled_hit_is_like_a_pickled_database_instance(heroes: sa.Engine, stats: CacheStats) -> None:
    def round_trip(obj: Any) -> tuple[Any, ...]:
        copy = pickle.loads(pickle.dumps(obj))
        state = inspect(copy)
        return copy.model_dump(), list(copy.__dict__), state.detached, state.identity

    with CachedSession(heroes) as session:
        cached = round_trip(hit(session, Hero, 1, stats))
    with Session(heroes) as session:
        loaded = round_trip(session.get(Hero, 1))
    assert cached == loaded
    assert cached[0]["name"] == "Deadpond" and cached[2] is True


def test_relationship_edits_on_hits_are_flushed(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes) as session:
        loner = hit(session, Hero, 3, stats)
        team = hit(session, Team, 1, stats)
        sidekick = hit(session, Sidekick, 2, stats)
        loner.team = team
        loner.sidekicks.append(sidekick)
        session.commit()
    with Session(heroes) as session:
        assert session.get(Hero, 3).team_id == 1  # type: ignore[union-attr]
        assert session.get(Sidekick, 2).hero_id == 3  # type: ignore[union-attr]
    with CachedSession(heroes) as session:
        assert session.get(Hero, 3).team_id == 1  # type: ignore[union-attr]
        assert session.get(Sidekick, 2).hero_id == 3  # type: ignore[union-attr]


def test_refresh_of_a_hit_reloads_from_the_database(
    heroes: sa.Engine, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        with Session(heroes) as other:
            row = other.get(Hero, 1)
            assert row is not None
            row.name = "Renamed elsewhere"
            other.commit()
        assert cached.name == "Deadpond"  # still the row as it was read
        sql_counter.reset()
        session.refresh(cached)
        assert len(sql_counter.selects) == 1
        assert cached.name == "Renamed elsewhere"
        assert inspect(cached).persistent and not session.is_modified(cached)
        cached.secret_name = "local edit"
        session.refresh(cached, attribute_names=["secret_name"])
        assert cached.secret_name == "Dive Wilson"
        assert not session.is_modified(cached)


def test_expire_of_a_hit_reloads_on_access(heroes: sa.Engine, stats: CacheStats, sql_counter: SQLCounter) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        session.expire(cached)
        assert "name" not in cached.__dict__
        sql_counter.reset()
        assert cached.name == "Deadpond"
        assert len(sql_counter.selects) == 1


def test_delete_of_a_hit_deletes_the_row(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes) as session:
        hero = hit(session, Hero, 2, stats)
        session.delete(hero)
        assert hero in session.deleted
        session.commit()
        assert inspect(hero).was_deleted and inspect(hero).detached
    with Session(heroes) as session:
        assert session.get(Hero, 2) is None
    with CachedSession(heroes) as session:
        assert session.get(Hero, 2) is None


def test_delete_of_a_hit_with_children_nulls_their_foreign_keys(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes) as session:
        hero = hit(session, Hero, 1, stats)
        session.delete(hero)  # the unit of work loads hero.sidekicks and nulls their hero_id
        session.commit()
    with Session(heroes) as session:
        assert session.get(Hero, 1) is None
        assert session.get(Sidekick, 1).hero_id is None  # type: ignore[union-attr]
    with CachedSession(heroes) as session:
        assert session.get(Hero, 1) is None
        assert session.get(Sidekick, 1).hero_id is None  # type: ignore[union-attr]
        assert session.get(Sidekick, 2).hero_id is None  # type: ignore[union-attr]


def test_delete_of_a_cached_team_cascades(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes) as session:
        team = hit(session, Team, 1, stats)
        hero = hit(session, Hero, 1, stats)
        session.delete(team)
        session.commit()
        assert inspect(hero).was_deleted
    with CachedSession(heroes) as session:
        assert session.get(Team, 1) is None
        assert session.get(Hero, 1) is None
        assert session.get(Hero, 2) is None
        assert session.get(Hero, 3) is not None


# --- serialization: exactly as a database-loaded instance -------------------------------------


def outcome(serialize: Callable[[], Any]) -> Any:
    """What a serializer returns, or which error it raises (bytes that are not UTF-8 cannot be JSON)."""
    try:
        return serialize()
    except ValueError as error:
        return f"{type(error).__name__}: {error}"


def serialized(obj: Any) -> dict[str, Any]:
    return {
        "model_dump": obj.model_dump(),
        "model_dump json mode": outcome(lambda: obj.model_dump(mode="json")),
        "model_dump_json": outcome(obj.model_dump_json),
        "model_dump exclude_unset": obj.model_dump(exclude_unset=True),
        "model_dump exclude_none": obj.model_dump(exclude_none=True),
        "fields set": set(obj.model_fields_set),
        "__dict__ keys": [key for key in obj.__dict__ if key != "_sa_instance_state"],
        "repr": repr(obj),
        "jsonable_encoder": outcome(lambda: jsonable_encoder(obj)),
    }


@pytest.mark.parametrize("pk", [1, 2, 3])
def test_hero_serializes_like_a_database_instance(heroes: sa.Engine, stats: CacheStats, pk: int) -> None:
    with Session(heroes) as session:
        expected = serialized(session.get(Hero, pk))
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, pk, stats)
        assert_identical(serialized(cached), expected)
    with CachedSession(heroes) as session:
        loaded = from_database(session, Hero, pk, stats)
        assert_identical(serialized(loaded), expected)


@pytest.mark.parametrize("name", list(ROWS))
def test_every_type_serializes_like_a_database_instance(
    db: sa.Engine, cache: redis.Redis, stats: CacheStats, name: str
) -> None:
    insert_all_types(db)
    pk = ROWS[name]["id"]
    with Session(db) as session:
        expected = serialized(session.get(AllTypes, pk))
    with CachedSession(db) as session:
        session.get(AllTypes, pk)
    with CachedSession(db) as session:
        assert_identical(serialized(hit(session, AllTypes, pk, stats)), expected)


def response_models(session: Session, obj: Any) -> dict[str, Any]:
    result = {
        "HeroPublic": HeroPublic.model_validate(obj).model_dump_json(),
        "HeroPublic from_attributes": HeroPublic.model_validate(obj, from_attributes=True).model_dump_json(),
        "pydantic from_attributes": HeroOut.model_validate(obj).model_dump_json(),
        "list": pydantic.TypeAdapter(list[HeroPublic]).dump_json([obj]).decode(),
    }
    # Validating into the table model copies the relationships too (lazy-loading them), and the
    # copy joins the session through the team's back-reference: keep it out of any flush.
    with session.no_autoflush:
        copy = Hero.model_validate(obj)
        result["Hero"] = copy.model_dump_json()
    if copy in session:
        session.expunge(copy)
    return result


@pytest.mark.parametrize("pk", [1, 2])
def test_response_models_validate_hits_like_database_instances(heroes: sa.Engine, stats: CacheStats, pk: int) -> None:
    with Session(heroes) as session:
        expected = response_models(session, session.get(Hero, pk))
    assert '"name":"' in expected["HeroPublic"]
    with CachedSession(heroes) as session:
        assert response_models(session, hit(session, Hero, pk, stats)) == expected


def cached_session(request: Request) -> Iterator[Session]:
    with CachedSession(request.app.state.engine) as session:
        yield session


def plain_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


CachedSessionDep = Annotated[Session, Depends(cached_session)]
PlainSessionDep = Annotated[Session, Depends(plain_session)]


def test_fastapi_response_model_over_http(heroes: sa.Engine, stats: CacheStats) -> None:
    app = FastAPI()
    app.state.engine = heroes

    @app.get("/cached/heroes/{hero_id}", response_model=HeroPublic)
    def cached_hero(hero_id: int, session: CachedSessionDep) -> Any:
        return session.get(Hero, hero_id)

    @app.get("/plain/heroes/{hero_id}", response_model=HeroPublic)
    def plain_hero(hero_id: int, session: PlainSessionDep) -> Any:
        return session.get(Hero, hero_id)

    @app.get("/cached/full/{hero_id}", response_model=Hero)
    def cached_full(hero_id: int, session: CachedSessionDep) -> Any:
        return session.get(Hero, hero_id)

    @app.get("/plain/full/{hero_id}", response_model=Hero)
    def plain_full(hero_id: int, session: PlainSessionDep) -> Any:
        return session.get(Hero, hero_id)

    with TestClient(app) as client:
        for hero_id in (1, 2, 3):
            for kind in ("heroes", "full"):
                hits = stats.hits
                cached = client.get(f"/cached/{kind}/{hero_id}")
                assert stats.hits == hits + 1
                plain = client.get(f"/plain/{kind}/{hero_id}")
                assert cached.status_code == plain.status_code == 200
                assert cached.content == plain.content
                assert cached.json()["id"] == hero_id


# --- expire_on_commit ---------------------------------------------------------------------------


def test_commit_expires_a_hit_like_a_database_instance(
    heroes: sa.Engine, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        loaded = from_database(session, Hero, 2, stats)
        session.commit()
        assert state_facts(session, cached) == {**state_facts(session, loaded), "identity": (1,)}
        assert inspect(cached).expired_attributes >= {"id", "name", "secret_name", "age", "team_id"}
        assert "name" not in cached.__dict__
        with Session(heroes) as other:
            for pk in (1, 2):
                row = other.get(Hero, pk)
                assert row is not None
                row.name = f"changed {pk}"
            other.commit()
        sql_counter.reset()
        assert cached.name == "changed 1"
        assert loaded.name == "changed 2"
        assert len(sql_counter.selects) == 2
        assert not session.is_modified(cached)


def test_commit_after_editing_a_hit_reloads_the_committed_row(
    heroes: sa.Engine, stats: CacheStats, sql_counter: SQLCounter
) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        cached.secret_name = "Wade"
        session.commit()
        assert "secret_name" not in cached.__dict__
        sql_counter.reset()
        assert (cached.name, cached.secret_name) == ("Deadpond", "Wade")
        assert len(sql_counter.selects) == 1


def test_without_expire_on_commit_a_hit_keeps_its_values(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes, expire_on_commit=False) as session:
        cached = hit(session, Hero, 1, stats)
        loaded = from_database(session, Hero, 2, stats)
        session.commit()
        assert not inspect(cached).expired_attributes
        assert inspect(cached).expired_attributes == inspect(loaded).expired_attributes
        assert cached.name == "Deadpond"


def test_rollback_expires_a_hit_like_a_database_instance(heroes: sa.Engine, stats: CacheStats) -> None:
    with CachedSession(heroes) as session:
        cached = hit(session, Hero, 1, stats)
        loaded = from_database(session, Hero, 2, stats)
        cached.name = "discarded"
        session.rollback()
        assert state_facts(session, cached) == {**state_facts(session, loaded), "identity": (1,)}
        assert cached.name == "Deadpond"


def test_hits_fire_the_load_events_a_database_row_fires(heroes: sa.Engine, stats: CacheStats) -> None:
    """``load`` on the class and ``loaded_as_persistent`` on the session, as SQLAlchemy's loader fires them."""
    loaded: list[Any] = []
    persistent: list[tuple[Any, Any]] = []

    def on_load(target: Any, context: Any) -> None:
        loaded.append(target)

    def on_loaded_as_persistent(session: Any, instance: Any) -> None:
        persistent.append((session, instance))

    with CachedSession(heroes) as warm:
        warm.get_many(Hero, [1, 2])
    sa.event.listen(Hero, "load", on_load)
    try:
        with CachedSession(heroes) as session:
            sa.event.listen(session, "loaded_as_persistent", on_loaded_as_persistent)
            one = hit(session, Hero, 1, stats)
            (two,) = session.get_many(Hero, [2])
            assert loaded == [one, two]
            assert persistent == [(session, one), (session, two)]
            assert all(inspect(obj).persistent for obj in (one, two))
    finally:
        sa.event.remove(Hero, "load", on_load)
