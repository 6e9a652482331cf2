"""Redis caching for SQLModel primary-key lookups that never serves a stale row."""

import importlib
from typing import TYPE_CHECKING, Any

from ._config import CacheConfig
from ._errors import CacheError, ConfigurationError
from ._facade import SQLModelCache
from ._session import CachedSession
from ._stats import CacheStats

if TYPE_CHECKING:
    from ._async_session import AsyncCachedSession

__all__ = [
    "AsyncCachedSession",
    "CacheConfig",
    "CacheError",
    "CacheStats",
    "CachedSession",
    "ConfigurationError",
    "SQLModelCache",
]

# The one place the version is written: the build reads it from here (pyproject.toml's
# [tool.hatch.version]), so the installed metadata and the module always agree.
__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> Any:
    # The async session needs SQLAlchemy's asyncio support (greenlet), an optional extra.
    if name == "AsyncCachedSession":
        try:
            # SQLAlchemy 2.0 imports its asyncio support without greenlet and fails only later.
            importlib.import_module("greenlet")
            from ._async_session import AsyncCachedSession
        except ImportError as exc:
            raise ImportError('AsyncCachedSession needs the async extra: pip install "sqlmodel-cache[async]"') from exc
        return AsyncCachedSession
    raise AttributeError(f"module 'sqlmodel_cache' has no attribute {name!r}")
