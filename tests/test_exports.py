"""The public names the specification fixes, and the typing marker, are shipped."""

from __future__ import annotations

import importlib
import importlib.metadata
from importlib import resources

import sqlmodel_cache
import sqlmodel_cache.transport

PUBLIC_NAMES = [
    "AsyncCachedSession",
    "CacheConfig",
    "CacheError",
    "CacheStats",
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
    assert sqlmodel_cache.transport.__all__ == [
        "DEFAULT_TIMEOUT",
        "Answer",
        "Answers",
        "AsyncTransport",
        "RedisAsyncTransport",
        "RedisSyncTransport",
        "SyncTransport",
        "Transport",
        "TransportError",
    ]
    for name in sqlmodel_cache.transport.__all__:
        assert getattr(sqlmodel_cache.transport, name) is not None, name
    from sqlmodel_cache.transport import RedisSyncTransport

    assert RedisSyncTransport is sqlmodel_cache.transport.RedisSyncTransport


def test_version_is_the_installed_distributions_version() -> None:
    """``__version__`` is what the build wrote into the metadata: one source, read by hatchling."""
    assert sqlmodel_cache.__version__ == importlib.metadata.version("sqlmodel-cache")


def test_py_typed_is_shipped_in_the_package() -> None:
    marker = resources.files("sqlmodel_cache") / "py.typed"
    assert marker.is_file()


def test_the_base_install_works_without_the_async_extra() -> None:
    """Without greenlet (no ``[async]`` extra) the sync API works and the async one says why not."""
    import subprocess
    import sys

    script = """
import sys
sys.modules["greenlet"] = None  # as if the async extra were not installed
import fakeredis, sqlalchemy as sa
from sqlmodel import Field, SQLModel
import sqlmodel_cache
from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport

class Thing(SQLModel, table=True):
    __cache_config__ = CacheConfig()
    id: int = Field(primary_key=True)

engine = sa.create_engine("sqlite://")
SQLModel.metadata.create_all(engine)
SQLModelCache.configure(transport=RedisSyncTransport(fakeredis.FakeRedis()))
with CachedSession(engine) as session:
    session.add(Thing(id=1))
    session.commit()
for _ in range(2):
    with CachedSession(engine) as session:
        assert session.get(Thing, 1) is not None
assert SQLModelCache.stats().hits == 1
try:
    sqlmodel_cache.AsyncCachedSession
except ImportError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'pip install "sqlmodel-cache[async]"' in result.stdout
