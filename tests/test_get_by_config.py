"""``CacheConfig(unique=...)``: its form is checked when the config is made, the table's
constraints at the first cached use; and lookups on columns whose database matches other
spellings of a value (a case-insensitive collation) store entries only under the values the
rows really hold, and never remember an absence."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import sqlalchemy as sa
from sqlalchemy import Index, UniqueConstraint, text
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel

from sqlmodel_cache import CacheConfig, CachedSession, CacheStats, ConfigurationError, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

from .models import Account


class _IsolatedBase(SQLModel, registry=registry()):
    """Models with deliberately wrong declarations, in their own metadata."""


class NotUnique(_IsolatedBase, table=True):
    __cache_config__ = CacheConfig(ttl=60, unique=("name",))
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""


class UnknownColumn(_IsolatedBase, table=True):
    __cache_config__ = CacheConfig(ttl=60, unique=("mail",))
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(default="", unique=True)


class PartialIndex(_IsolatedBase, table=True):
    __cache_config__ = CacheConfig(ttl=60, unique=("email",))
    __table_args__ = (Index("partial_email", "email", unique=True, postgresql_where=text("active")),)
    id: int | None = Field(default=None, primary_key=True)
    email: str = ""
    active: bool = True


class ExpressionIndex(_IsolatedBase, table=True):
    __cache_config__ = CacheConfig(ttl=60, unique=("email",))
    id: int | None = Field(default=None, primary_key=True)
    email: str = ""


Index("lower_email", sa.func.lower(ExpressionIndex.__table__.c.email), unique=True)  # type: ignore[attr-defined]


class Covered(_IsolatedBase, table=True):
    """Every accepted way a table keeps a set unique, and a set wider than a unique one."""

    __cache_config__ = CacheConfig(
        ttl=60, unique=("email", ("tenant", "slug"), "code", ("tenant", "slug", "name"), ("id", "name"))
    )
    __table_args__ = (UniqueConstraint("tenant", "slug"), Index("by_code", "code", unique=True))
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(default="", unique=True)
    tenant: int = 0
    slug: str = ""
    code: str = ""
    name: str = ""


@pytest.fixture
def isolated_sqlite(tmp_path: Any) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'isolated.db'}")
    _IsolatedBase.metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    client = fakeredis.FakeRedis()
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=60)
    return client


@pytest.mark.parametrize(
    ("unique", "complaint"),
    [
        ("email", "takes column sets"),
        (("email", ()), "got ()"),
        ((("tenant", 1),), "got ('tenant', 1)"),
        ((("slug", "slug"),), "got ('slug', 'slug')"),
        (("email", "email"), "twice"),
        ((("tenant", "slug"), ("slug", "tenant")), "twice"),
        (("",), "got ''"),
        (None, "takes column sets"),
    ],
)
def test_a_malformed_unique_declaration_is_refused_when_made(unique: Any, complaint: str) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        CacheConfig(ttl=60, unique=unique)
    assert complaint in str(excinfo.value)
    assert 'unique=("email", ("tenant_id", "slug"))' in str(excinfo.value) or "twice" in str(excinfo.value)


@pytest.mark.parametrize(
    ("model", "complaints"),
    [
        (NotUnique, ["NotUnique", "('name',)", "no unique constraint or unique index", "Field(unique=True)"]),
        (UnknownColumn, ["UnknownColumn", "'mail'", "not a column attribute", "email"]),
        (PartialIndex, ["PartialIndex", "('email',)", "no unique constraint"]),
        (ExpressionIndex, ["ExpressionIndex", "('email',)", "no unique constraint"]),
    ],
)
def test_a_set_the_table_does_not_keep_unique_is_refused_at_first_use(
    isolated_sqlite: sa.Engine, fake: fakeredis.FakeRedis, model: Any, complaints: list[str]
) -> None:
    lookup = {model.__cache_config__.unique_sets[0][0]: "x"}
    with CachedSession(isolated_sqlite) as session:
        for use in (lambda: session.get(model, 1), lambda: session.get_by(model, **lookup)):
            with pytest.raises(ConfigurationError) as excinfo:
                use()
            for complaint in complaints:
                assert complaint in str(excinfo.value)
    assert fake.keys("*") == []


def test_every_way_of_keeping_a_set_unique_is_accepted(isolated_sqlite: sa.Engine, fake: fakeredis.FakeRedis) -> None:
    with Session(isolated_sqlite) as session:
        session.add(Covered(id=1, email="a@example.com", tenant=1, slug="s", code="c", name="n"))
        session.commit()
    lookups: list[dict[str, Any]] = [
        {"email": "a@example.com"},
        {"tenant": 1, "slug": "s"},
        {"code": "c"},
        {"tenant": 1, "slug": "s", "name": "n"},
        {"id": 1, "name": "n"},
    ]
    for columns in lookups:
        for _ in range(2):  # a miss that fills, then a hit
            with CachedSession(isolated_sqlite) as session:
                found = session.get_by(Covered, **columns)
                assert found is not None and found.id == 1
        assert fake.get(SQLModelCache.lookup_key(Covered, **columns)) is not None, columns


# Case-insensitive collations ------------------------------------------------------------------


def _collated_model(collation: str) -> Any:
    base: Any = type("_CollatedBase", (SQLModel,), {}, registry=registry())

    class Member(base, table=True):  # type: ignore[misc, valid-type]
        __tablename__ = "member"
        __cache_config__ = CacheConfig(ttl=60, negative_ttl=60, unique=("email",))
        id: int | None = Field(default=None, primary_key=True)
        email: str = Field(sa_type=sa.String(100, collation=collation), unique=True)  # type: ignore[call-overload]

    return base, Member


@pytest.fixture(params=["sqlite", "postgresql"])
def collated(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[tuple[sa.Engine, Any]]:
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'collated.db'}")
        base, model = _collated_model("NOCASE")
    else:
        engine = request.getfixturevalue("_postgres_engine")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "CREATE COLLATION IF NOT EXISTS nocase "
                    "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
                )
            )
        base, model = _collated_model("nocase")
    base.metadata.drop_all(engine)
    base.metadata.create_all(engine)
    yield engine, model
    base.metadata.drop_all(engine)
    if request.param == "sqlite":
        engine.dispose()


def test_a_collated_lookup_stores_only_the_values_rows_hold(
    collated: tuple[sa.Engine, Any], fake: fakeredis.FakeRedis, stats: CacheStats
) -> None:
    engine, member = collated
    with Session(engine) as session:
        session.add(member(id=1, email="ada@example.com"))
        session.commit()

    def get_by(email: str) -> int | None:
        with CachedSession(engine) as session:
            found = session.get_by(member, email=email)
            return None if found is None else int(found.id)

    # The database matches another spelling; the row is not stored under that spelling, whose
    # entry an update of the row to "ADA@example.com" would not evict.
    assert get_by("ADA@Example.com") == 1
    assert fake.get(SQLModelCache.lookup_key(member, email="ADA@Example.com")) is None
    hits = stats.hits
    assert get_by("ADA@Example.com") == 1
    assert stats.hits == hits  # read from the database again
    # The spelling the row holds is cached.
    assert get_by("ada@example.com") == 1
    assert get_by("ada@example.com") == 1
    assert stats.hits == hits + 1
    # No absence is remembered: an insert of another spelling would not evict it.
    assert get_by("bob@example.com") is None
    assert fake.get(SQLModelCache.lookup_key(member, email="bob@example.com")) is None
    with CachedSession(engine) as session:
        session.add(member(id=2, email="BOB@example.com"))
        session.commit()
    assert get_by("bob@example.com") == 2


def test_a_lookup_key_names_the_model_and_the_values() -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(fakeredis.FakeRedis()), key_prefix="app:cache")
    key = SQLModelCache.lookup_key(Account, tenant_id=7, slug="a b")
    assert key.startswith("app:cache:") and "@tenant_id,slug:" in key
    assert SQLModelCache.lookup_key(Account, slug="a b", tenant_id=7) == key  # keyword order does not matter
    assert SQLModelCache.lookup_key(Account, email="x@example.com") != key
    with pytest.raises(TypeError) as excinfo:
        SQLModelCache.lookup_key(Account, slug="a b")
    assert "email; tenant_id, slug" in str(excinfo.value)
