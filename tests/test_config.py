"""Configuration errors: every mistake fails early with a ConfigurationError that says how to fix it."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel

from sqlmodel_cache import CacheConfig, CachedSession, CacheError, ConfigurationError, SQLModelCache
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport

from .models import Hero, Plain


class _IsolatedBase(SQLModel, registry=registry()):
    """Models with a broken opt-in live in their own metadata, out of the shared test schema."""


class WronglyOptedIn(_IsolatedBase, table=True):
    __cache_config__ = {"ttl": 5}  # a dict, not a CacheConfig
    id: int | None = Field(default=None, primary_key=True)
    name: str = ""


def add(engine: sa.Engine, *rows: Any) -> None:
    with Session(engine) as session:
        session.add_all(rows)
        session.commit()


# --- configure() / reset() lifecycle -------------------------------------------------------


def test_configure_twice_without_reset_raises(fake_redis: fakeredis.FakeRedis) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis))
    with pytest.raises(ConfigurationError) as excinfo:
        SQLModelCache.configure(transport=RedisSyncTransport(fake_redis))
    assert str(excinfo.value).startswith("SQLModelCache is already configured")
    assert "reset()" in str(excinfo.value)
    assert SQLModelCache.is_configured()  # the failed call left the first configuration in place


def test_reset_then_configure_again(fake_redis: fakeredis.FakeRedis) -> None:
    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis))
    SQLModelCache.reset()
    assert not SQLModelCache.is_configured()
    SQLModelCache.configure(transport=RedisSyncTransport(fake_redis), default_ttl=10)
    assert SQLModelCache.is_configured()


def test_reset_when_not_configured_is_safe() -> None:
    assert not SQLModelCache.is_configured()
    SQLModelCache.reset()
    SQLModelCache.reset()
    assert not SQLModelCache.is_configured()


def test_get_of_opted_in_model_while_unconfigured_raises(sqlite_engine: sa.Engine) -> None:
    add(sqlite_engine, Hero(id=1, name="a"))
    with CachedSession(sqlite_engine) as session, pytest.raises(ConfigurationError) as excinfo:
        session.get(Hero, 1)
    message = str(excinfo.value)
    assert message.startswith("SQLModelCache is not configured")
    assert "Hero" in message
    assert "SQLModelCache.configure(" in message


def test_models_without_cache_config_work_unconfigured(sqlite_engine: sa.Engine) -> None:
    add(sqlite_engine, Plain(id=1, name="before"))
    with CachedSession(sqlite_engine) as session:
        plain = session.get(Plain, 1)
        assert plain is not None and plain.name == "before"
        plain.name = "after"
        session.add(Plain(id=2, name="new"))
        session.commit()
    with CachedSession(sqlite_engine) as session:
        assert session.get(Plain, 1).name == "after"  # type: ignore[union-attr]
        assert session.get(Plain, 2).name == "new"  # type: ignore[union-attr]
        assert session.get(Plain, 3) is None
        doomed = session.get(Plain, 2)
        session.delete(doomed)
        session.commit()
    with CachedSession(sqlite_engine) as session:
        assert session.get(Plain, 2) is None


def test_cache_error_is_the_base_class() -> None:
    assert issubclass(ConfigurationError, CacheError)
    assert issubclass(CacheError, Exception)
    with pytest.raises(CacheError):
        CacheConfig(ttl=0)


# --- bad inputs ------------------------------------------------------------------------------


def test_configure_with_a_raw_client_instead_of_a_transport(fake_redis: fakeredis.FakeRedis) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        SQLModelCache.configure(transport=fake_redis)  # type: ignore[arg-type]
    message = str(excinfo.value)
    assert "RedisSyncTransport" in message and "RedisAsyncTransport" in message
    assert "sqlmodel_cache.transport" in message
    assert not SQLModelCache.is_configured()


@pytest.mark.parametrize("ttl", [0, -1, 1.5, "300", True, None])
def test_configure_rejects_bad_default_ttl(fake_redis: fakeredis.FakeRedis, ttl: Any) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        SQLModelCache.configure(transport=RedisSyncTransport(fake_redis), default_ttl=ttl)
    message = str(excinfo.value)
    assert "default_ttl" in message
    assert "positive" in message
    assert repr(ttl) in message
    assert not SQLModelCache.is_configured()


@pytest.mark.parametrize("prefix", ["", "has space", None])
def test_configure_rejects_bad_key_prefix(fake_redis: fakeredis.FakeRedis, prefix: Any) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        SQLModelCache.configure(transport=RedisSyncTransport(fake_redis), key_prefix=prefix)
    message = str(excinfo.value)
    assert "key_prefix" in message
    assert repr(prefix) in message
    assert not SQLModelCache.is_configured()


@pytest.mark.parametrize("ttl", [0, -5, "60", 2.5, False])
def test_cache_config_rejects_bad_ttl(ttl: Any) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        CacheConfig(ttl=ttl)
    message = str(excinfo.value)
    assert "CacheConfig(ttl=...)" in message
    assert "positive" in message
    assert repr(ttl) in message


def test_cache_config_accepts_good_values() -> None:
    assert CacheConfig().ttl is None
    assert CacheConfig(ttl=1).ttl == 1
    assert CacheConfig(enabled=False).enabled is False


@pytest.mark.parametrize("ttl", [-1, 0, "60", 1.5])
def test_per_call_cache_ttl_must_be_positive_int(
    sqlite_engine: sa.Engine, fake_cache: fakeredis.FakeRedis, ttl: Any
) -> None:
    add(sqlite_engine, Hero(id=1, name="a"))
    with CachedSession(sqlite_engine) as session, pytest.raises(ConfigurationError) as excinfo:
        session.get(Hero, 1, execution_options={"cache_ttl": ttl})
    message = str(excinfo.value)
    assert "cache_ttl" in message
    assert "positive" in message
    assert repr(ttl) in message
    assert fake_cache.keys("*") == []  # nothing was stored with the rejected TTL


def test_sync_transport_refuses_an_asyncio_client() -> None:
    client = redis.asyncio.Redis()
    with pytest.raises(ConfigurationError) as excinfo:
        RedisSyncTransport(client)  # type: ignore[arg-type]
    message = str(excinfo.value)
    assert "RedisSyncTransport" in message
    assert "RedisAsyncTransport" in message


def test_async_transport_refuses_a_sync_client() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        RedisAsyncTransport(redis.Redis())
    assert "RedisSyncTransport" in str(excinfo.value)


def test_sync_transport_refuses_decode_responses() -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        RedisSyncTransport(redis.Redis(decode_responses=True))
    assert "decode_responses" in str(excinfo.value)


def test_cache_config_that_is_not_a_cache_config(sqlite_engine: sa.Engine, fake_cache: fakeredis.FakeRedis) -> None:
    _IsolatedBase.metadata.create_all(sqlite_engine)
    add(sqlite_engine, WronglyOptedIn(id=1, name="x"))
    with CachedSession(sqlite_engine) as session, pytest.raises(ConfigurationError) as excinfo:
        session.get(WronglyOptedIn, 1)
    message = str(excinfo.value)
    assert "WronglyOptedIn.__cache_config__" in message
    assert "CacheConfig" in message
    assert "dict" in message
    assert fake_cache.keys("*") == []


def test_cached_session_with_async_transport_names_the_sync_one(sqlite_engine: sa.Engine) -> None:
    SQLModelCache.configure(transport=RedisAsyncTransport(redis.asyncio.Redis()))
    add(sqlite_engine, Hero(id=1, name="a"), Plain(id=1, name="p"))
    with CachedSession(sqlite_engine) as session:
        with pytest.raises(ConfigurationError) as excinfo:
            session.get(Hero, 1)
        message = str(excinfo.value)
        assert "CachedSession" in message
        assert "RedisSyncTransport" in message
        assert "RedisAsyncTransport" in message
        # Models that are not cached are unaffected by the wrong transport.
        assert session.get(Plain, 1).name == "p"  # type: ignore[union-attr]
