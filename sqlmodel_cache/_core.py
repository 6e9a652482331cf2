"""The I/O-free policy both sessions share: which calls are cached, under which key, for
how long, and what a value read back from Redis means. Only the I/O differs between the
sync and async sessions; every decision is made here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ._config import Settings, current_settings
from ._errors import ConfigurationError
from ._model import ModelInfo, model_info
from ._stats import counters, logger

__all__ = [
    "CallPlan",
    "Lookup",
    "is_lease",
    "key_for_pk",
    "plan_call",
    "unsent_evictions",
]

# Values are msgpack arrays (first byte 0x9X/0xDC/0xDD); a lease starts with a zero byte,
# so a reader tells the two apart from the first byte without decoding anything.
LEASE_MARK: Final = b"\x00"
_LEASE_PREFIX: Final = LEASE_MARK + b"lease:"


def new_lease() -> bytes:
    return _LEASE_PREFIX + os.urandom(12)


def is_lease(raw: bytes) -> bool:
    return raw[:1] == LEASE_MARK


@dataclass(slots=True)
class Lookup:
    """One cache-eligible ``get()``: where its entry lives and how long a fill may live."""

    info: ModelInfo
    settings: Settings
    pk: list[Any]
    pk_part: str
    key: str
    ttl_ms: int
    lease: bytes


_stems: dict[tuple[ModelInfo, str], str] = {}


def key_for_pk(info: ModelInfo, prefix: str, pk_part: str) -> str:
    stem_key = (info, prefix)
    stem = _stems.get(stem_key)
    if stem is None:
        stem = _stems[stem_key] = info.key_stem(prefix)
    return stem + pk_part


def normalized_pk(info: ModelInfo, ident: Any) -> list[Any] | None:
    if isinstance(ident, (tuple, list)):
        pk = list(ident)
    elif isinstance(ident, Mapping):
        try:
            pk = [ident[info.attr_keys[i]] for i in info.pk_positions]
        except KeyError:
            return None
    else:
        pk = [ident]
    return pk if len(pk) == len(info.pk_positions) else None


def _resolve_ttl(info: ModelInfo, settings: Settings, execution_options: Mapping[str, Any]) -> int:
    ttl = execution_options.get("cache_ttl")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ConfigurationError(
                f'execution_options={{"cache_ttl": ...}} must be a positive number of seconds (an int), got {ttl!r}'
            )
        return ttl * 1000
    return (info.config.ttl or settings.default_ttl) * 1000


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What holds for every key of one ``get()`` / ``get_many()`` call through the cache."""

    info: ModelInfo
    settings: Settings
    ttl_ms: int
    stem: str

    def lookup(self, ident: Any) -> Lookup | None:
        """The plan for one identity, or ``None`` when it is not a key of the cache."""
        info = self.info
        pk = normalized_pk(info, ident)
        if pk is None:
            return None
        pk_part = info.pk_part(pk)
        if pk_part is None:
            return None
        return Lookup(
            info=info,
            settings=self.settings,
            pk=pk,
            pk_part=pk_part,
            key=self.stem + pk_part,
            ttl_ms=self.ttl_ms,
            lease=new_lease(),
        )


def refreshes(with_for_update: Any, populate_existing: bool | None) -> bool | None:
    """``populate_existing`` for a ``get()``: a row read under lock must not be an older copy."""
    if with_for_update not in (None, False) and populate_existing is None:
        return True
    return populate_existing


def plan_call(
    entity: Any,
    *,
    options: Sequence[Any] | None,
    populate_existing: bool | None,
    with_for_update: Any,
    identity_token: Any,
    execution_options: Mapping[str, Any],
    transport_type: type,
    session_name: str,
) -> CallPlan | None:
    """The checks that hold for a whole call; ``None`` when it must go straight to SQLAlchemy."""
    if not isinstance(entity, type):
        return None
    info = model_info(entity)
    if info is None:
        return None
    settings = current_settings()
    if settings is None:
        raise ConfigurationError(
            f"SQLModelCache is not configured, but {entity.__name__} has __cache_config__; call "
            "SQLModelCache.configure(transport=...) at start-up (in FastAPI, in the lifespan) "
            "before the first get()"
        )
    if not isinstance(settings.transport, transport_type):
        raise ConfigurationError(
            f"{session_name} needs a {transport_type.__name__} but SQLModelCache is configured with "
            f"a {type(settings.transport).__name__}; configure "
            f"transport={transport_type.__name__}(...) or use the matching session class"
        )
    if (
        not settings.enabled
        or options
        or populate_existing
        or with_for_update not in (None, False)
        or identity_token is not None
        or execution_options.get("cache", True) is False
        or execution_options.get("populate_existing")
    ):
        return None
    return CallPlan(
        info=info,
        settings=settings,
        ttl_ms=_resolve_ttl(info, settings, execution_options),
        stem=key_for_pk(info, settings.key_prefix, ""),
    )


def decode_hit(lookup: Lookup, raw: bytes) -> list[Any] | None:
    """The row's values if ``raw`` is this lookup's entry; counts what it was."""
    values = lookup.info.decode_row(raw, lookup.pk_part)
    if values is None:
        counters.corrupt_entries += 1
        counters.misses += 1
    else:
        counters.hits += 1
    return values


def fill_value(info: ModelInfo, pk_part: str, state_dict: dict[str, Any]) -> bytes | None:
    """The entry to publish for a freshly loaded row, if it really is the row ``pk_part`` names."""
    pk = info.pk_of(state_dict)
    if pk is None or info.pk_part(pk) != pk_part:
        counters.fills_skipped_unstorable += 1
        return None
    value = info.encode_row(state_dict)
    if value is None:
        counters.fills_skipped_unstorable += 1
    return value


def keys_for_identities(model: type, identities: Iterable[Any]) -> list[str]:
    """Cache keys of ``model``'s rows with these primary keys (as ``get()`` accepts them)."""
    info = model_info(model) if isinstance(model, type) else None
    if info is None:
        raise ConfigurationError(
            f"{getattr(model, '__name__', model)!r} is not a cached model (it has no enabled __cache_config__)"
        )
    settings = current_settings()
    if settings is None:
        raise ConfigurationError("SQLModelCache is not configured; call SQLModelCache.configure(transport=...) first")
    keys = []
    for ident in identities:
        pk = normalized_pk(info, ident)
        part = info.pk_part(pk) if pk is not None else None
        if part is None:
            raise ConfigurationError(
                f"{ident!r} is not a primary key of {model.__name__}: give the key columns' values, "
                "a tuple for composite keys, as session.get() takes them"
            )
        keys.append(key_for_pk(info, settings.key_prefix, part))
    return keys


def keys_of_states(states: Iterable[Any]) -> set[str]:
    """Cache keys of the rows behind ``states``: old identity and current primary key."""
    settings = current_settings()
    keys: set[str] = set()
    if settings is None:
        return keys
    prefix = settings.key_prefix
    for state in states:
        info = model_info(state.class_)
        if info is None:
            continue
        candidates = []
        if state.key is not None:
            candidates.append(list(state.key[1]))
        current = info.pk_of(state.dict)
        if current is not None:
            candidates.append(current)
        for pk in candidates:
            part = info.pk_part(pk)
            if part is not None:
                keys.add(key_for_pk(info, prefix, part))
    return keys


class UnsentEvictions:
    """Keys whose eviction failed: retried before the next read, never read meanwhile.

    The set is bounded. Past ``limit`` keys it stops naming keys and instead marks the
    whole key prefix for a purge: until that purge succeeds, no key under the prefix is
    read from the cache, so nothing is ever served stale, only more slowly.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._keys: set[str] = set()
        self._purge: set[str] = set()
        self._lock = threading.Lock()

    def add(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._keys.update(keys)
            if len(self._keys) <= self.limit:
                return
            prefixes = {key.split(":", 1)[0] for key in self._keys}
            self._keys.clear()
            self._purge.update(prefixes)
        logger.error(
            "more than %d cache evictions could not be sent to Redis; the cache is bypassed until "
            "every key under %s is purged, which is retried before each read",
            self.limit,
            ", ".join(sorted(prefixes)),
        )

    def take(self) -> tuple[list[str], list[str]]:
        """The keys to evict and the prefixes to purge, as they stand now."""
        with self._lock:
            return list(self._keys), list(self._purge)

    def done(self, keys: Iterable[str], purged: Iterable[str] = ()) -> None:
        with self._lock:
            self._keys.difference_update(keys)
            self._purge.difference_update(purged)

    def __contains__(self, key: object) -> bool:
        if self._purge and isinstance(key, str) and key.split(":", 1)[0] in self._purge:
            return True
        return key in self._keys

    def __bool__(self) -> bool:
        return bool(self._keys or self._purge)

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._purge.clear()


unsent_evictions: Final = UnsentEvictions()
