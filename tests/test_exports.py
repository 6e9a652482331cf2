"""The public names the specification fixes, and the typing marker, are shipped."""

from __future__ import annotations

import importlib
from importlib import resources

import sqlmodel_cache
import sqlmodel_cache.transport

PUBLIC_NAMES = [
    "AsyncCachedSession",
    "CacheConfig",
    "CacheError",
    "CachedSession",
    "ConfigurationError",
    "SQLModelCache",
]


def test_all_lists_exactly_the_public_names_sorted() -> None:
    assert sqlmodel_cache.__all__ == PUBLIC_NAMES
    assert sqlmodel_cache.__all__ == sorted(sqlmodel_cache.__all__)


def test_every_public_name_is_importable() -> None:
    module = importlib.import_module("sqlmodel_cache")
    for name in sqlmodel_cache.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec("from sqlmodel_cache import *", namespace)
    assert set(PUBLIC_NAMES) <= namespace.keys()


def test_public_names_are_what_the_spec_says() -> None:
    from sqlmodel import Session
    from sqlmodel.ext.asyncio.session import AsyncSession

    assert issubclass(sqlmodel_cache.CachedSession, Session)
    assert issubclass(sqlmodel_cache.AsyncCachedSession, AsyncSession)
    assert issubclass(sqlmodel_cache.ConfigurationError, sqlmodel_cache.CacheError)
    assert callable(sqlmodel_cache.SQLModelCache.configure)
    assert callable(sqlmodel_cache.SQLModelCache.reset)


def test_transport_module_exports() -> None:
    assert "RedisSyncTransport" in sqlmodel_cache.transport.__all__
    for name in sqlmodel_cache.transport.__all__:
        assert getattr(sqlmodel_cache.transport, name) is not None, name
    from sqlmodel_cache.transport import RedisSyncTransport

    assert RedisSyncTransport is sqlmodel_cache.transport.RedisSyncTransport


def test_py_typed_is_shipped_in_the_package() -> None:
    marker = resources.files("sqlmodel_cache") / "py.typed"
    assert marker.is_file()
