"""Settings: owns the model opt-in (`CacheConfig`) and the checked values ``configure()`` takes.

A leaf: it imports nothing of the library but its errors, so every layer can depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

from ._errors import ConfigurationError

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_LEASE_WAIT",
    "DEFAULT_NEAR_CACHE_SIZE",
    "DEFAULT_TTL",
    "CacheConfig",
    "Settings",
    "unique_sets",
]

DEFAULT_TTL: Final = 300
DEFAULT_KEY_PREFIX: Final = "sqlmodelcache"
# How long a reader's fill lease lives: longer than any sane SELECT by one primary key,
# short enough that a crashed reader blocks filling of its key only briefly.
DEFAULT_LEASE_MS: Final = 5_000
# How long a reader that finds another's lease waits for that fill (single flight).
DEFAULT_LEASE_WAIT: Final = 0.1
# Decoded entries kept in process memory for CacheConfig(near=True) models.
DEFAULT_NEAR_CACHE_SIZE: Final = 10_000


def _check_ttl(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{what} must be a positive number of seconds (an int), got {value!r}")


def _check_flag(value: object, what: str) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{what} must be True or False, got {value!r}")


_UNIQUE_FORM = (
    "CacheConfig(unique=...) takes column sets: attribute names, one per set, or tuples of them for a "
    'set of several columns, e.g. unique=("email", ("tenant_id", "slug"))'
)


def unique_sets(value: object) -> tuple[tuple[str, ...], ...]:
    """``CacheConfig(unique=...)`` as tuples of attribute names, checked for form only (the
    table's constraints are checked when the model is first used)."""
    if isinstance(value, str) or not isinstance(value, (tuple, list)):
        raise ConfigurationError(f"{_UNIQUE_FORM}; got {value!r}")
    sets: list[tuple[str, ...]] = []
    for item in value:
        names = (item,) if isinstance(item, str) else item
        if (
            not isinstance(names, (tuple, list))
            or not names
            or not all(isinstance(name, str) and name for name in names)
            or len(set(names)) != len(names)
        ):
            raise ConfigurationError(f"{_UNIQUE_FORM}; got {item!r} in {value!r}")
        if any(set(names) == set(other) for other in sets):
            raise ConfigurationError(f"CacheConfig(unique=...) names the column set {item!r} twice")
        sets.append(tuple(names))
    return tuple(sets)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """Opt a model in to caching: ``__cache_config__ = CacheConfig(ttl=600)``.

    ``ttl=None`` uses the ``default_ttl`` given to ``SQLModelCache.configure()``;
    ``enabled=False`` keeps the model out of the cache without removing the line;
    ``negative_ttl=30`` also remembers, for 30 s, that a primary key has no row (a 404, a bot
    walking ids): a later ``get()`` of it answers ``None`` with no SQL, until an insert of it
    through a cached session commits.
    ``unique=("email", ("tenant_id", "slug"))`` names column sets that a unique constraint
    or unique index of the table covers; ``session.get_by(Model, email=...)`` then reads
    through the cache too.
    ``near=True`` also keeps the model's entries in process memory, in front of Redis, kept
    current by Redis's client tracking (``configure(near_cache_size=...)`` bounds them).
    """

    ttl: int | None = None
    enabled: bool = True
    negative_ttl: int | None = None
    unique: tuple[str | tuple[str, ...], ...] = ()
    near: bool = False

    def __post_init__(self) -> None:
        if self.ttl is not None:
            _check_ttl(self.ttl, "CacheConfig(ttl=...)")
        _check_flag(self.enabled, "CacheConfig(enabled=...)")
        if self.negative_ttl is not None:
            _check_ttl(self.negative_ttl, "CacheConfig(negative_ttl=...)")
        object.__setattr__(self, "unique", unique_sets(self.unique))  # one form: tuples of names
        _check_flag(self.near, "CacheConfig(near=...)")

    @property
    def unique_sets(self) -> tuple[tuple[str, ...], ...]:
        """The ``unique`` column sets, each a tuple of attribute names."""
        return cast("tuple[tuple[str, ...], ...]", self.unique)  # made so by __post_init__


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``configure()`` was given, checked, and frozen so a session reads it without a lock."""

    default_ttl: int = DEFAULT_TTL
    key_prefix: str = DEFAULT_KEY_PREFIX
    enabled: bool = True
    lease_ms: int = DEFAULT_LEASE_MS
    lease_wait: float = DEFAULT_LEASE_WAIT
    near_cache_size: int = DEFAULT_NEAR_CACHE_SIZE

    def __post_init__(self) -> None:
        size = self.near_cache_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ConfigurationError(
                f"configure(near_cache_size=...) must be a number of entries (an int, 0 for none), got {size!r}"
            )
        wait = self.lease_wait
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 10:
            raise ConfigurationError(
                f"configure(lease_wait=...) must be seconds from 0 (do not wait) to 10, got {wait!r}; "
                "it bounds how long a reader waits for another reader's fill of the same row"
            )
        _check_ttl(self.default_ttl, "configure(default_ttl=...)")
        prefix = self.key_prefix
        if not isinstance(prefix, str) or not prefix or any(c.isspace() for c in prefix):
            raise ConfigurationError(
                f"configure(key_prefix=...) must be a non-empty string without spaces, got {prefix!r}"
            )
        _check_flag(self.enabled, "configure(enabled=...)")
