"""Eviction: owns which keys a change evicts and the delivery of evictions, as flows.

A commit's evictions go in one round trip. One that fails is kept by the runtime: retried
before this process reads the cache again, and its keys are not read from the cache until
it gets through. Sync and async sessions run the same flows with their own I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._errors import ConfigurationError, TransportError
from ._flow import Flow
from ._index import LOOKUP_MARK, declared_set
from ._keys import Purge, pk_values
from ._model import ModelInfo, model_info
from ._runtime import Runtime
from ._stats import logger

__all__ = ["deliver", "deliver_kept", "keys_for_identities", "keys_of_states", "row_keys"]


def _cached(model: type) -> ModelInfo:
    info = model_info(model) if isinstance(model, type) else None
    if info is None:
        raise ConfigurationError(
            f"{getattr(model, '__name__', model)!r} is not a cached model (it has no enabled __cache_config__)"
        )
    return info


def keys_for_identities(runtime: Runtime, model: type, identities: Iterable[Any]) -> list[str]:
    """Cache keys of ``model``'s rows with these primary keys (as ``get()`` accepts them), and
    the pattern of all its lookup keys if it has unique lookups."""
    info = _cached(model)
    stem = runtime.stem(info)
    keys = []
    for ident in identities:
        pk = pk_values(info.pk_names, ident)
        part = info.pk_part(pk) if pk is not None else None
        if part is None:
            raise ConfigurationError(
                f"{ident!r} is not a primary key of {model.__name__}: give the key columns' values, "
                "a tuple for composite keys, as session.get() takes them"
            )
        keys.append(stem + part)
    if info.uniques and keys:
        keys.append(runtime.keys.pattern_of(stem + LOOKUP_MARK))
    return keys


def key_for_lookup(runtime: Runtime, model: type, columns: Mapping[str, Any]) -> str:
    """The cache key of ``model``'s unique lookup with these values (as ``get_by()`` takes them)."""
    names = declared_set(model, columns)
    info = _cached(model)
    index = info.uniques[names]
    keyed = index.keyed([columns[name] for name in index.names])
    if keyed is None:
        raise ConfigurationError(f"{columns!r} are not values a key of {model.__name__}'s lookup can hold")
    return runtime.stem(info) + keyed[1]


def row_keys(runtime: Runtime, info: ModelInfo, pks: Iterable[Sequence[Any]]) -> set[str]:
    """Cache keys of ``info``'s rows with these primary keys (ones no key can hold are left out)."""
    stem = runtime.stem(info)
    parts = map(info.pk_part, pks)
    return {stem + part for part in parts if part is not None}


def keys_of_states(runtime: Runtime, states: Iterable[Any]) -> set[str]:
    """Cache keys of the rows behind ``states``: their old identity and current primary key."""
    keys: set[str] = set()
    for state in states:
        info = model_info(state.class_)
        if info is None:
            continue
        pks = [state.key[1]] if state.key is not None else []
        current = info.pk_of(state.dict)
        if current is not None:
            pks.append(current)
        keys |= row_keys(runtime, info, pks)
    return keys


def deliver(runtime: Runtime, keys: list[str]) -> Flow[None]:
    """Delete ``keys``; if Redis fails, keep them for a retry. Evictions kept from before go
    first: a process that commits often retries them at once, not only at its next read."""
    if runtime.evictions.pending:
        yield from deliver_kept(runtime)
    purges = [key for key in keys if type(key) is Purge]
    if purges:
        keys = [key for key in keys if type(key) is not Purge]
    _forget_near(runtime, keys, purges)
    try:
        if keys:
            yield (runtime.transport.delete_many, (keys,))
        for pattern in purges:
            yield (runtime.transport.purge, (pattern,))
        # Again once Redis has them: a read of this process that began meanwhile may have
        # kept the old value, and Redis's own word of the change may still be on its way.
        _forget_near(runtime, keys, purges)
    except TransportError as exc:
        runtime.counters.invalidations_failed += 1
        runtime.evictions.keep([*keys, *purges], runtime.keys)
        runtime.failures.failed("eviction", exc)
        return
    runtime.counters.invalidations += len(keys) + len(purges)
    logger.debug("evicted %d keys and %d patterns", len(keys), len(purges))
    yield from _fence(runtime, keys)


def _fence(runtime: Runtime, keys: list[str]) -> Flow[None]:
    """Return only once Redis has written out the invalidations of these deletions, if they
    concern near caches: Redis writes a commit's reply and its invalidations in one pass, in
    no set order, and a pass cut short by the scheduler must not let the commit return first."""
    if runtime.keys.any_near(keys):
        try:
            yield (runtime.transport.fence, (keys,))
        except TransportError as exc:  # deleted all the same: near readers need a live server anyway
            logger.debug("no answer to the fence after an eviction: %s", exc)


def _forget_near(runtime: Runtime, keys: list[str], purges: list[Purge]) -> None:
    near = runtime.near
    if near is not None:
        if purges:
            near.drop()
        else:
            near.invalidate(keys)


def deliver_kept(runtime: Runtime) -> Flow[None]:
    """Retry the evictions that failed earlier; their keys stay unreadable until this succeeds."""
    keys, schemes = runtime.evictions.take()
    try:
        for scheme in schemes:
            yield (runtime.transport.purge, (scheme.pattern,))
        if keys:
            yield (runtime.transport.delete_many, (keys,))
    except TransportError as exc:
        runtime.failures.failed("eviction retry", exc)
    else:
        runtime.evictions.done(keys, schemes)
        runtime.counters.invalidations += len(keys)
        logger.debug("evicted %d kept keys", len(keys))
        yield from _fence(runtime, keys)
