"""Process-wide configuration: the model opt-in (`CacheConfig`) and the registry (`SQLModelCache`)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ._errors import ConfigurationError

if TYPE_CHECKING:
    from ._stats import CacheStats
    from .transport import RedisAsyncTransport, RedisSyncTransport

__all__ = ["CacheConfig", "SQLModelCache", "Settings", "current_settings"]

T = TypeVar("T")

DEFAULT_TTL: Final = 300
DEFAULT_KEY_PREFIX: Final = "sqlmodelcache"
# How long a reader's fill lease lives: longer than any sane SELECT by one primary key,
# short enough that a crashed reader blocks filling of its key only briefly.
DEFAULT_LEASE_MS: Final = 5_000


def _check_ttl(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{what} must be a positive number of seconds (an int), got {value!r}")


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Opt a model in to caching: ``__cache_config__ = CacheConfig(ttl=600)``.

    ``ttl=None`` uses the ``default_ttl`` given to ``SQLModelCache.configure()``;
    ``enabled=False`` keeps the model out of the cache without removing the line.
    """

    ttl: int | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.ttl is not None:
            _check_ttl(self.ttl, "CacheConfig(ttl=...)")
        if not isinstance(self.enabled, bool):
            raise ConfigurationError(f"CacheConfig(enabled=...) must be True or False, got {self.enabled!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``configure()`` was given, frozen so a session can hold it without locking."""

    transport: RedisSyncTransport | RedisAsyncTransport
    default_ttl: int
    key_prefix: str
    enabled: bool
    lease_ms: int


_lock = threading.Lock()
_settings: Settings | None = None


def current_settings() -> Settings | None:
    """The active configuration, or ``None`` before ``configure()`` / after ``reset()``."""
    return _settings


def _require_transport(kind: type[T], method: str, other: str) -> T:
    settings = _settings
    if settings is None:
        raise ConfigurationError(
            f"SQLModelCache is not configured; call SQLModelCache.configure(transport=...) before {method}()"
        )
    if not isinstance(settings.transport, kind):
        raise ConfigurationError(
            f"SQLModelCache.{method}() needs a {kind.__name__} but the cache is configured with a "
            f"{type(settings.transport).__name__}; use SQLModelCache.{other}()"
        )
    return settings.transport


class SQLModelCache:
    """The global registry: call ``configure()`` once at start-up, ``reset()`` in test teardown."""

    def __init__(self) -> None:  # pragma: no cover - guard
        raise TypeError("SQLModelCache is used through its class methods; do not instantiate it")

    @classmethod
    def configure(
        cls,
        *,
        transport: RedisSyncTransport | RedisAsyncTransport,
        default_ttl: int = DEFAULT_TTL,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        enabled: bool = True,
    ) -> None:
        """Install the transport and defaults that every cached session uses."""
        global _settings
        from .transport import RedisAsyncTransport, RedisSyncTransport

        if not isinstance(transport, (RedisSyncTransport, RedisAsyncTransport)):
            raise ConfigurationError(
                "SQLModelCache.configure(transport=...) needs a RedisSyncTransport(redis.Redis(...)) "
                "or a RedisAsyncTransport(redis.asyncio.Redis(...)) from sqlmodel_cache.transport, "
                f"got {type(transport).__name__}"
            )
        _check_ttl(default_ttl, "configure(default_ttl=...)")
        if not isinstance(key_prefix, str) or not key_prefix or any(c.isspace() for c in key_prefix):
            raise ConfigurationError(
                f"configure(key_prefix=...) must be a non-empty string without spaces, got {key_prefix!r}"
            )
        if not isinstance(enabled, bool):
            raise ConfigurationError(f"configure(enabled=...) must be True or False, got {enabled!r}")
        with _lock:
            if _settings is not None:
                raise ConfigurationError(
                    "SQLModelCache is already configured; call SQLModelCache.reset() before "
                    "configuring it again (in tests, reset it in a fixture after each test)"
                )
            _settings = Settings(
                transport=transport,
                default_ttl=default_ttl,
                key_prefix=key_prefix,
                enabled=enabled,
                lease_ms=DEFAULT_LEASE_MS,
            )

    @classmethod
    def reset(cls) -> None:
        """Forget the configuration and zero the counters; safe when nothing is configured."""
        global _settings
        from ._stats import reset_stats

        with _lock:
            previous, _settings = _settings, None
        close = getattr(previous.transport, "close", None) if previous is not None else None
        if close is not None:
            close()
        # Evictions that could not be sent are kept: a stale row must not outlive a reconfigure.
        reset_stats()

    @classmethod
    def is_configured(cls) -> bool:
        return _settings is not None

    @classmethod
    def evict(cls, model: type, *identities: Any) -> None:
        """Evict rows changed outside the ORM (raw SQL, other services), with a sync transport.

        ``SQLModelCache.evict(Hero, 1, 2)``; composite keys as tuples. If Redis fails, the
        keys are kept and evicted before this process reads the cache again.
        """
        from ._core import keys_for_identities
        from ._eviction import evict
        from .transport import RedisSyncTransport

        _require_transport(RedisSyncTransport, "evict", "aevict")
        evict(keys_for_identities(model, identities), RedisSyncTransport, RedisSyncTransport.delete_many)

    @classmethod
    async def aevict(cls, model: type, *identities: Any) -> None:
        """The asyncio twin of `evict`, for a `RedisAsyncTransport`."""
        from ._core import keys_for_identities
        from ._errors import TransportError
        from ._eviction import evicted, eviction_failed
        from .transport import RedisAsyncTransport

        transport = _require_transport(RedisAsyncTransport, "aevict", "evict")
        keys = keys_for_identities(model, identities)
        try:
            await transport.delete_many(keys)
        except TransportError as exc:
            eviction_failed(keys, exc)
        else:
            evicted(keys)

    @classmethod
    def stats(cls) -> CacheStats:
        """A snapshot of the counters: hits, misses, fills, skipped fills, evictions, errors."""
        from ._stats import counters

        snapshot = counters.copy()
        if _settings is not None:
            snapshot.breaker_state = _settings.transport.breaker_state
            snapshot.breaker_trips = _settings.transport.breaker_trips
        return snapshot
