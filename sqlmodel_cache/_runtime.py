"""The runtime: owns the live state of one configuration (transport, settings, key scheme,
counters, kept evictions, the near cache), which ``configure()`` creates and ``reset()`` drops.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Final

from ._config import Settings
from ._errors import ConfigurationError
from ._keys import KeyScheme, Purge
from ._near import NearCache, Tracking
from ._stats import CacheStats, FailureLog, Notices, PerModelCounts, logger

if TYPE_CHECKING:
    from ._model import ModelInfo
    from .transport import AsyncTransport, SyncTransport

__all__ = ["KeptEvictions", "Runtime", "active", "count_per_model", "keep_undeliverable", "start", "stop"]


class KeptEvictions:
    """Keys whose eviction failed: retried before the next read, never read meanwhile.

    The set is bounded. Past ``limit`` keys it stops naming keys and instead marks the whole
    key scheme for a purge: until that purge succeeds, no key under the prefix is read from
    the cache, so nothing is ever served stale, only more slowly.
    """

    limit: int = 100_000

    def __init__(self) -> None:
        self._keys: set[str] = set()
        self._purge: set[KeyScheme] = set()
        self._lock = threading.Lock()
        # Is anything kept? Read by every cached read: an attribute, not a method call.
        self.pending = False

    def keep(self, keys: Collection[str], scheme: KeyScheme) -> None:
        with self._lock:
            named = [key for key in keys if type(key) is not Purge]
            self._keys.update(named)
            if len(self._keys) <= self.limit:
                if len(named) < len(keys):  # a pattern: kept as the whole scheme's purge
                    self._purge.add(scheme)
                self.pending = bool(self._keys or self._purge)
                return
            self._keys.clear()
            self._purge.add(scheme)
            self.pending = True
        logger.error(
            "more than %d cache evictions could not be sent to Redis; the cache is bypassed until "
            "every key under %s: is purged, which is retried before each read",
            self.limit,
            scheme.prefix,
        )

    def take(self) -> tuple[list[str], list[KeyScheme]]:
        """The keys to evict and the key schemes to purge, as they stand now."""
        with self._lock:
            return list(self._keys), list(self._purge)

    def done(self, keys: Iterable[str], purged: Iterable[KeyScheme]) -> None:
        with self._lock:
            self._keys.difference_update(keys)
            self._purge.difference_update(purged)
            self.pending = bool(self._keys or self._purge)

    def __contains__(self, key: str) -> bool:
        if self._purge and any(scheme.owns(key) for scheme in self._purge):
            return True
        return key in self._keys

    def count_into(self, stats: CacheStats) -> None:
        stats.evictions_pending = len(self._keys)
        stats.purge_pending = bool(self._purge)


class Runtime:
    """One configuration, live. Sessions take it once per call and use nothing global."""

    __slots__ = (
        "_stems",
        "_tracking_lock",
        "counters",
        "evictions",
        "failures",
        "keys",
        "near",
        "notices",
        "per_model",
        "settings",
        "transport",
    )

    def __init__(
        self,
        transport: SyncTransport | AsyncTransport,
        settings: Settings,
        evictions: KeptEvictions,
        per_model: PerModelCounts | None = None,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.keys = KeyScheme(settings.key_prefix)
        self.counters = CacheStats()
        # The lookup counters by model as well, while metrics are exported (else ``None``).
        self.per_model = per_model
        self.evictions = evictions
        self.notices = Notices()
        self.failures = FailureLog(self.counters, self.notices)
        size = settings.near_cache_size
        self.near: NearCache | None = NearCache(size, self.counters) if size else None
        self._tracking_lock = threading.Lock()
        self._stems: dict[ModelInfo, str] = {}

    def stem(self, info: ModelInfo) -> str:
        """The key stem of the model's rows (asked by every read: made once)."""
        stem = self._stems.get(info)
        if stem is None:
            stem = self._stems[info] = self.keys.stem(info.table, info.fingerprint, info.config.near)
        return stem

    def tracking(self, near: NearCache) -> Tracking:
        """The near cache's tracking, started by the first read of a near model."""
        tracking = near.tracking
        if tracking is None:
            with self._tracking_lock:
                tracking = near.tracking
                if tracking is None:
                    tracking = near.tracking = self.transport.track(near, self.keys.prefix + ":")
        return tracking

    def close(self) -> None:
        """Stop what runs beside the requests (the near cache's tracking)."""
        near = self.near
        if near is not None and near.tracking is not None:
            near.tracking.close()
            near.drop()

    def stats(self) -> CacheStats:
        snapshot = self.counters.copy()
        self.evictions.count_into(snapshot)
        snapshot.breaker_state = self.transport.breaker_state
        snapshot.breaker_trips = self.transport.breaker_trips
        return snapshot


_lock: Final = threading.Lock()
_active: Runtime | None = None
# Evictions a dropped runtime could not deliver: the next one retries them, so a stale row
# never outlives a reconfiguration.
_orphaned = KeptEvictions()
# The counts by model while metrics are exported: every runtime started meanwhile counts into
# them, so they outlive a reconfiguration.
_per_model: PerModelCounts | None = None


def active() -> Runtime | None:
    """The configured runtime, or ``None`` before ``configure()`` / after ``reset()``."""
    return _active


def start(transport: SyncTransport | AsyncTransport, settings: Settings) -> Runtime:
    global _active
    with _lock:
        if _active is not None:
            raise ConfigurationError(
                "SQLModelCache is already configured; call SQLModelCache.reset() before "
                "configuring it again (in tests, reset it in a fixture after each test)"
            )
        _active = Runtime(transport, settings, _orphaned, _per_model)
        return _active


def count_per_model(counts: PerModelCounts | None) -> None:
    """Count lookups by model into ``counts`` from now on, in this runtime and the next ones
    (``None``: stop counting by model)."""
    global _per_model
    with _lock:
        _per_model = counts
        if _active is not None:
            _active.per_model = counts


def keep_undeliverable(keys: list[str], scheme: KeyScheme) -> None:
    """Keep evictions (of keys under ``scheme``) that no configured transport can deliver now."""
    (_active.evictions if _active is not None else _orphaned).keep(keys, scheme)


def stop(*, drop_pending_evictions: bool = False) -> Runtime | None:
    """Drop the runtime; its undelivered evictions pass to the next one unless dropped too."""
    global _active, _orphaned
    with _lock:
        previous, _active = _active, None
        if drop_pending_evictions:
            _orphaned = KeptEvictions()
        elif previous is not None:
            _orphaned = previous.evictions
    return previous
