"""OpenTelemetry metrics: owns the instruments that export `SQLModelCache.stats()`, and the
lookup counters by model, read from the configured cache whenever the metrics are collected.

Call ``instrument()`` once at start-up, before or after ``SQLModelCache.configure()``::

    from sqlmodel_cache.otel import instrument

    instrument()  # the global meter provider; or instrument(meter_provider=provider)

The exported counters count from ``instrument()`` on and never go down: the counts of a
configuration that ``SQLModelCache.reset()`` drops are carried over to the next one.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from typing import Final

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
except ImportError as exc:
    raise ImportError(
        'sqlmodel_cache.otel needs OpenTelemetry: pip install "sqlmodel-cache[otel]" (opentelemetry-api)'
    ) from exc

from . import _runtime
from ._errors import ConfigurationError
from ._stats import CacheStats, PerModelCounts

__all__ = ["instrument", "uninstrument"]

_METER_NAME: Final = "sqlmodel_cache"


@dataclass(frozen=True, slots=True)
class _Instrument:
    """One exported instrument: ``name`` is ``sqlmodel_cache.`` and the `CacheStats` field."""

    field: str
    kind: str  # "counter", "updowncounter" or "gauge" (all observable)
    unit: str
    description: str
    per_model: bool = False  # one series per model, attribute ``model`` (the class name)

    @property
    def name(self) -> str:
        return f"{_METER_NAME}.{self.field}"


_INSTRUMENTS: Final = (
    _Instrument("hits", "counter", "{lookup}", "Lookups answered from Redis with a row", per_model=True),
    _Instrument(
        "negative_hits", "counter", "{lookup}", "Lookups answered 'no such row' by a negative entry", per_model=True
    ),
    _Instrument(
        "near_hits", "counter", "{lookup}", "Lookups answered from process memory (near cache)", per_model=True
    ),
    _Instrument(
        "misses", "counter", "{lookup}", "Lookups the cache could not answer, read from the database", per_model=True
    ),
    _Instrument("lease_waits", "counter", "{lookup}", "Lookups that waited for another reader filling their row"),
    _Instrument("lease_wait_hits", "counter", "{lookup}", "Lookups that waited and were served by that fill"),
    _Instrument("near_invalidations", "counter", "{entry}", "Near-cache entries dropped because their key changed"),
    _Instrument("uncacheable", "counter", "{lookup}", "Lookups the cache could not key, sent to the database"),
    _Instrument("fills", "counter", "{entry}", "Rows read from the database and published to Redis"),
    _Instrument(
        "fills_skipped_lease_lost", "counter", "{entry}", "Fills not published: an eviction took the key meanwhile"
    ),
    _Instrument("fills_skipped_lease_busy", "counter", "{entry}", "Fills not published: another reader held the key"),
    _Instrument(
        "fills_skipped_snapshot", "counter", "{entry}", "Fills not published: the SELECT may have read an old snapshot"
    ),
    _Instrument(
        "fills_skipped_own_writes", "counter", "{entry}", "Fills not published: the transaction had written rows"
    ),
    _Instrument(
        "fills_skipped_unstorable", "counter", "{entry}", "Fills not published: a value the entry format cannot hold"
    ),
    _Instrument("corrupt_entries", "counter", "{entry}", "Entries that could not be decoded, not served"),
    _Instrument(
        "other_lifetime_entries", "counter", "{entry}", "Entries of an earlier Redis server lifetime, not served"
    ),
    _Instrument("invalidations", "counter", "{key}", "Cache keys deleted from Redis after writes"),
    _Instrument("invalidations_failed", "counter", "{eviction}", "Evictions Redis failed, kept to be retried"),
    _Instrument("redis_errors", "counter", "{error}", "Redis calls that failed; the database answered instead"),
    _Instrument("breaker_skips", "counter", "{call}", "Redis calls not made because the circuit breaker was open"),
    _Instrument("breaker_trips", "counter", "{trip}", "Times the circuit breaker opened"),
    _Instrument("evictions_pending", "updowncounter", "{key}", "Keys whose eviction failed, waiting to be retried"),
    _Instrument("purge_pending", "gauge", "1", "1 while the whole key prefix waits for a purge, else 0"),
    _Instrument(
        "breaker_state", "gauge", "1", "1 for the circuit breaker's state (attribute state), 0 for the other states"
    ),
)

_BREAKER_STATES: Final = ("closed", "half-open", "open")
# Counted by the runtime (or its transport) since configure(): summed over configurations.
_SUMMED: Final = tuple(item.field for item in _INSTRUMENTS if item.kind == "counter" and not item.per_model)


class _Export:
    """What one ``instrument()`` exports: the counters summed over every configuration since
    (a dropped runtime's last counts carried over), and the counts by model."""

    def __init__(self, provider: MeterProvider, is_global: bool) -> None:
        self.provider = provider
        # The global provider may be OpenTelemetry's proxy, which forwards to the one set later.
        self.is_global = is_global
        self.per_model = PerModelCounts()
        self._lock = threading.Lock()
        self._runtime = _runtime.active()
        start = self._runtime.stats() if self._runtime is not None else CacheStats()
        self._carried = {name: -getattr(start, name) for name in _SUMMED}
        # A transport outlives its runtime when configured again: its breaker trips counted
        # when its runtime was dropped are not counted twice.
        self._trips_left: weakref.WeakKeyDictionary[object, int] = weakref.WeakKeyDictionary()

    def stats(self) -> tuple[CacheStats | None, dict[str, int]]:
        """The current runtime's stats (``None`` when not configured) and the summed counters."""
        with self._lock:
            current = _runtime.active()
            previous = self._runtime
            if current is not previous:
                if previous is not None:
                    final = previous.stats()
                    for name in _SUMMED:
                        self._carried[name] += getattr(final, name)
                    self._trips_left[previous.transport] = final.breaker_trips
                if current is not None:
                    self._carried["breaker_trips"] -= self._trips_left.pop(current.transport, 0)
                self._runtime = current
            stats = current.stats() if current is not None else None
            carried = dict(self._carried)
        if stats is not None:
            for name in _SUMMED:
                carried[name] += getattr(stats, name)
        return stats, carried


_lock: Final = threading.Lock()
_export: _Export | None = None


def instrument(meter_provider: MeterProvider | None = None) -> None:
    """Export the cache's counters as OpenTelemetry instruments through ``meter_provider``
    (``None``: the global one, which may be set after this call), and start counting lookups
    by model.

    Calling it again with the same provider does nothing; another provider needs
    ``uninstrument()`` first.
    """
    global _export
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    with _lock:
        if _export is not None:
            if _export.provider is provider or (meter_provider is None and _export.is_global):
                return
            raise ConfigurationError(
                "sqlmodel_cache.otel is already instrumented with another meter provider; "
                "call sqlmodel_cache.otel.uninstrument() first"
            )
        _export = _Export(provider, is_global=meter_provider is None)
        _runtime.count_per_model(_export.per_model)
    meter = provider.get_meter(_METER_NAME, _version())
    for item in _INSTRUMENTS:
        callbacks = [_callback(provider, item)]
        if item.kind == "counter":
            meter.create_observable_counter(item.name, callbacks, item.unit, item.description)
        elif item.kind == "updowncounter":
            meter.create_observable_up_down_counter(item.name, callbacks, item.unit, item.description)
        else:
            meter.create_observable_gauge(item.name, callbacks, item.unit, item.description)


def uninstrument() -> None:
    """Stop exporting and counting by model; safe when not instrumented.

    OpenTelemetry cannot remove instruments from a meter provider: they stay registered and
    report nothing. A later ``instrument()`` counts from zero again.
    """
    global _export
    with _lock:
        _export = None
        _runtime.count_per_model(None)


def _version() -> str | None:
    try:
        return metadata.version("sqlmodel-cache")
    except metadata.PackageNotFoundError:  # run from a source tree
        return None


def _callback(provider: MeterProvider, item: _Instrument) -> Callable[[CallbackOptions], Iterable[Observation]]:
    # Bound to the provider, not to one instrument() call: a provider that is instrumented
    # again keeps the instruments (and callbacks) it was given the first time.
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        export = _export
        if export is None or export.provider is not provider:
            return []
        if item.per_model:
            return [
                Observation(getattr(counts, item.field), {"model": model})
                for model, counts in export.per_model.by_model().items()
            ]
        stats, summed = export.stats()
        if item.field in summed:
            return [Observation(summed[item.field])]
        if stats is None:  # not configured: no current value to report
            return []
        if item.field == "breaker_state":
            return [Observation(int(stats.breaker_state == state), {"state": state}) for state in _BREAKER_STATES]
        return [Observation(int(getattr(stats, item.field)))]

    return observe
