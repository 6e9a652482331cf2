"""`SQLModelCache`: owns the public face of the registry (configure once, reset, evict,
stats); the state itself is the runtime's."""

from __future__ import annotations

from typing import Any

from . import _runtime
from ._config import DEFAULT_KEY_PREFIX, DEFAULT_LEASE_WAIT, DEFAULT_NEAR_CACHE_SIZE, DEFAULT_TTL, Settings
from ._errors import ConfigurationError
from ._eviction import deliver, key_for_lookup, keys_for_identities
from ._flow import run, run_async
from ._stats import CacheStats
from .transport import RedisAsyncTransport, RedisSyncTransport

__all__ = ["SQLModelCache"]


def _runtime_for(method: str, asynchronous: bool) -> _runtime.Runtime:
    runtime = _runtime.active()
    if runtime is None:
        raise ConfigurationError(
            f"SQLModelCache is not configured; call SQLModelCache.configure(transport=...) before {method}()"
        )
    if runtime.transport.is_async is not asynchronous:
        wanted, other = ("RedisAsyncTransport", "evict") if asynchronous else ("RedisSyncTransport", "aevict")
        raise ConfigurationError(
            f"SQLModelCache.{method}() needs a {wanted} but the cache is configured with a "
            f"{type(runtime.transport).__name__}; use SQLModelCache.{other}()"
        )
    return runtime


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
        lease_wait: float = DEFAULT_LEASE_WAIT,
        near_cache_size: int = DEFAULT_NEAR_CACHE_SIZE,
    ) -> None:
        """Install the transport and defaults that every cached session uses.

        ``lease_wait`` (seconds): a reader that finds another reader filling the same row
        waits up to this long for that fill and serves it, so N concurrent misses of a row
        cost one database read; ``0`` reads the database at once instead.

        ``near_cache_size``: how many decoded entries of ``CacheConfig(near=True)`` models this
        process keeps in memory in front of Redis (least recently used out first).
        """
        if not isinstance(transport, (RedisSyncTransport, RedisAsyncTransport)):
            raise ConfigurationError(
                "SQLModelCache.configure(transport=...) needs a RedisSyncTransport(redis.Redis(...)) "
                "or a RedisAsyncTransport(redis.asyncio.Redis(...)) from sqlmodel_cache.transport, "
                f"got {type(transport).__name__}"
            )
        settings = Settings(
            default_ttl=default_ttl,
            key_prefix=key_prefix,
            enabled=enabled,
            lease_wait=lease_wait,
            near_cache_size=near_cache_size,
        )
        _runtime.start(transport, settings)

    @classmethod
    def reset(cls, *, drop_pending_evictions: bool = False) -> None:
        """Forget the configuration and its counters; safe when nothing is configured.

        Evictions that could not be delivered are kept for the next ``configure()``, so a
        stale row never outlives a reconfiguration; a test fixture that starts every test
        from scratch passes ``drop_pending_evictions=True``.
        """
        previous = _runtime.stop(drop_pending_evictions=drop_pending_evictions)
        if previous is not None:
            previous.close()
        close = getattr(previous.transport, "close", None) if previous is not None else None
        if close is not None:
            close()

    @classmethod
    def is_configured(cls) -> bool:
        return _runtime.active() is not None

    @classmethod
    def cache_key(cls, model: type, identity: Any) -> str:
        """The Redis key of ``model``'s row with this primary key (as ``session.get()`` takes it),
        for operators and tests: every key the library writes is one of these, or a lease."""
        runtime = _runtime.active()
        if runtime is None:
            raise ConfigurationError(
                "SQLModelCache is not configured; call SQLModelCache.configure(transport=...) first"
            )
        return keys_for_identities(runtime, model, [identity])[0]

    @classmethod
    def lookup_key(cls, model: type, **columns: Any) -> str:
        """The Redis key of ``model``'s unique lookup with these values (as ``get_by()`` takes
        them), for operators and tests."""
        runtime = _runtime.active()
        if runtime is None:
            raise ConfigurationError(
                "SQLModelCache is not configured; call SQLModelCache.configure(transport=...) first"
            )
        return key_for_lookup(runtime, model, columns)

    @classmethod
    def evict(cls, model: type, *identities: Any) -> None:
        """Evict rows changed outside the ORM (raw SQL, other services), with a sync transport.

        ``SQLModelCache.evict(Hero, 1, 2)``; composite keys as tuples. For a model with unique
        lookups (``CacheConfig(unique=...)``), every lookup key of the model goes too (a scan:
        the rows' values are not known here). If Redis fails, the keys are kept and evicted
        before this process reads the cache again.
        """
        runtime = _runtime_for("evict", asynchronous=False)
        run(deliver(runtime, keys_for_identities(runtime, model, identities)), None)

    @classmethod
    async def aevict(cls, model: type, *identities: Any) -> None:
        """The asyncio twin of `evict`, for a `RedisAsyncTransport`."""
        runtime = _runtime_for("aevict", asynchronous=True)
        await run_async(deliver(runtime, keys_for_identities(runtime, model, identities)), None)

    @classmethod
    def stats(cls) -> CacheStats:
        """A snapshot of the counters: hits, misses, fills, skipped fills, evictions, errors."""
        runtime = _runtime.active()
        return runtime.stats() if runtime is not None else CacheStats()
