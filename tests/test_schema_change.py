"""An entry written by an older schema of a model is never decoded into the new one."""

from __future__ import annotations

from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel

from sqlmodel_cache import CacheConfig, CachedSession, CacheStats, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


def gadget_model(with_color: bool) -> Any:
    """The same table, before and after a migration that adds a column."""

    class Base(SQLModel, registry=registry()):
        pass

    if with_color:

        class GadgetV2(Base, table=True):
            __tablename__ = "gadget"
            __cache_config__ = CacheConfig(ttl=600)
            id: int = Field(primary_key=True)
            name: str
            color: str | None = None

        return GadgetV2

    class GadgetV1(Base, table=True):
        __tablename__ = "gadget"
        __cache_config__ = CacheConfig(ttl=600)
        id: int = Field(primary_key=True)
        name: str

    return GadgetV1


def test_new_schema_never_reads_old_entries(engine: sa.Engine, real_redis: redis.Redis, stats: CacheStats) -> None:
    old, new = gadget_model(False), gadget_model(True)
    old.metadata.drop_all(engine)
    old.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            session.add(old(id=1, name="lamp"))
            session.commit()
        SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
        with CachedSession(engine) as session:
            session.get(old, 1)
        (old_key,) = real_redis.keys("sqlmodelcache:gadget:*")
        old_entry = real_redis.get(old_key)

        with engine.begin() as conn:  # the migration
            conn.execute(sa.text("ALTER TABLE gadget ADD COLUMN color VARCHAR"))
            conn.execute(sa.text("UPDATE gadget SET color = 'red'"))
        with CachedSession(engine) as session:
            gadget = session.get(new, 1)  # a different key: the fingerprint changed
            assert gadget is not None and gadget.color == "red"
        new_keys = set(real_redis.keys("sqlmodelcache:gadget:*")) - {old_key}
        assert len(new_keys) == 1

        # Even the old entry copied under the new key is not decoded into the new model.
        (new_key,) = new_keys
        real_redis.set(new_key, old_entry)  # type: ignore[arg-type]
        corrupt = stats.corrupt_entries
        with CachedSession(engine) as session:
            gadget = session.get(new, 1)
            assert gadget is not None and gadget.color == "red"
        assert stats.corrupt_entries == corrupt + 1
    finally:
        old.metadata.drop_all(engine)
