"""Redis caching for SQLModel primary-key lookups that never serves a stale row."""

from ._config import CacheConfig, SQLModelCache
from ._errors import CacheError, ConfigurationError
from ._session import CachedSession

__all__ = [
    "CacheConfig",
    "CacheError",
    "CachedSession",
    "ConfigurationError",
    "SQLModelCache",
]
