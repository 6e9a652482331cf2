"""Models shared by the tests: one per shape of primary key and column type we promise."""

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any, Optional

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, Relationship, SQLModel

from sqlmodel_cache import CacheConfig


class Team(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    heroes: list["Hero"] = Relationship(back_populates="team", cascade_delete=True)


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    secret_name: str = ""
    age: int | None = None
    team_id: int | None = Field(default=None, foreign_key="team.id")
    team: Optional["Team"] = Relationship(back_populates="heroes")
    sidekicks: list["Sidekick"] = Relationship(back_populates="hero")


class Sidekick(SQLModel, table=True):
    """Child of a plain one-to-many: removing it from the collection nulls its foreign key."""

    __cache_config__ = CacheConfig(ttl=600)
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    hero_id: int | None = Field(default=None, foreign_key="hero.id")
    hero: Optional["Hero"] = Relationship(back_populates="sidekicks")


class Plain(SQLModel, table=True):
    """Not opted in: must never touch the cache."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = ""


class NoTTL(SQLModel, table=True):
    """Opted in without a TTL of its own: uses configure(default_ttl=...)."""

    __cache_config__ = CacheConfig()
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""


class Disabled(SQLModel, table=True):
    __cache_config__ = CacheConfig(enabled=False)
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""


class Membership(SQLModel, table=True):
    """A composite primary key of two types."""

    __cache_config__ = CacheConfig(ttl=600)
    org: str = Field(primary_key=True)
    user_id: int = Field(primary_key=True)
    role: str = ""


class Token(SQLModel, table=True):
    """A UUID primary key."""

    __cache_config__ = CacheConfig(ttl=600)
    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    label: str = ""


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(str, enum.Enum):
    SMALL = "s"
    LARGE = "l"


class AllTypes(SQLModel, table=True):
    """Every column type of the round-trip promise."""

    __cache_config__ = CacheConfig(ttl=600)
    id: int | None = Field(default=None, primary_key=True)
    small: int | None = None
    big: int | None = Field(default=None, sa_column=Column(sa.BigInteger))
    ratio: float | None = None
    flag: bool | None = None
    text: str | None = None
    blob: bytes | None = None
    amount: Decimal | None = Field(default=None, sa_column=Column(sa.Numeric(20, 6)))
    ident: uuid.UUID | None = None
    color: Color | None = None
    size: Size | None = None
    day: dt.date | None = None
    clock: dt.time | None = None
    moment: dt.datetime | None = None
    moment_tz: dt.datetime | None = Field(default=None, sa_column=Column(sa.DateTime(timezone=True)))
    span: dt.timedelta | None = None
    doc: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    items: list[Any] | None = Field(default=None, sa_column=Column(JSON))


class Versioned(SQLModel, table=True):
    """A row whose version only goes up: the stress test's witness of staleness."""

    __cache_config__ = CacheConfig()
    id: int = Field(primary_key=True)
    version: int = 0


class Article(SQLModel, table=True):
    """Negative caching: a lookup of an id with no row is answered from the cache too."""

    __cache_config__ = CacheConfig(ttl=600, negative_ttl=30)
    id: int = Field(primary_key=True)
    title: str = ""


class Account(SQLModel, table=True):
    """Unique secondary lookups: by email, and by a tenant's slug."""

    __cache_config__ = CacheConfig(ttl=600, negative_ttl=30, unique=("email", ("tenant_id", "slug")))
    __table_args__ = (sa.UniqueConstraint("tenant_id", "slug"),)
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True)
    tenant_id: int = 0
    slug: str = ""
    name: str = ""


class Note(SQLModel, table=True):
    """Kept near (in process memory) as well as in Redis; its JSON column is mutable."""

    __cache_config__ = CacheConfig(ttl=600, near=True, unique=("title",))
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(default="", unique=True)
    tags: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
