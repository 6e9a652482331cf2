"""The read policy: owns every decision of a cached read, for ``get()``, ``get_many()`` and
every read built on them. It does no I/O; `_read` sequences its steps as flows.

Per call: is it eligible at all, its TTL, may it fill (own writes, snapshot rule). Per key:
may the cache answer it (own writes, identity map, kept evictions), what a value read back
means (hit, empty, another reader's lease, unusable), and what to publish for a loaded row.
Every counter of a read is counted here (the lookup counters by model too, while metrics
are exported).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Final

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.util import EMPTY_DICT

from ._entry import NO_ROW, NoRowMark, Unusable, decode_entry, encode_entry, encode_no_row
from ._errors import ConfigurationError, TransportError
from ._flow import Database
from ._index import Index
from ._keys import pk_values
from ._lease import is_lease
from ._model import ModelInfo, model_info
from ._near import NearCache
from ._options import GetOptions, ttl_ms
from ._runtime import Runtime, active
from ._snapshot import connection_is_fresh
from ._stats import Skip, logger
from ._writes import WriteLog, peek_write_log

__all__ = ["BUSY", "UNANSWERED", "ReadPolicy", "Verdict"]


class _Verdict:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


# What a value read back is, when it is not a hit (a list of column values), empty (None)
# or a value no reader may serve (an `Unusable` reason, replaced by a reader that may fill).
BUSY: Final = _Verdict("BUSY")  # another reader's lease: it will fill, this reader must not
UNANSWERED: Final = _Verdict("UNANSWERED")  # no server lifetime vouches for it (its node failed)

Verdict = list[Any] | _Verdict | NoRowMark | Unusable | None


def _verdict(info: ModelInfo, raw: bytes | None, part: str, epoch: bytes | None, index: Index) -> Verdict:
    if raw is None:
        return None
    if epoch is None:
        return UNANSWERED
    if is_lease(raw):
        return BUSY
    return decode_entry(info, raw, part, epoch, index)


def _runtime_for(entity: type, asynchronous: bool) -> Runtime:
    runtime = active()
    if runtime is None:
        raise ConfigurationError(
            f"SQLModelCache is not configured, but {entity.__name__} has __cache_config__; call "
            "SQLModelCache.configure(transport=...) at start-up (in FastAPI, in the lifespan) "
            "before the first get()"
        )
    if runtime.transport.is_async is not asynchronous:
        wanted, session = (
            ("RedisAsyncTransport", "AsyncCachedSession") if asynchronous else ("RedisSyncTransport", "CachedSession")
        )
        raise ConfigurationError(
            f"{session} needs a {wanted} but SQLModelCache is configured with a "
            f"{type(runtime.transport).__name__}; configure transport={wanted}(...) or use the matching session class"
        )
    return runtime


class ReadPolicy:
    """The decisions of one cached read call (one ``get()``, ``get_many()`` or ``get_by()``)."""

    __slots__ = ("index", "info", "log", "needs_connection_check", "no_fill", "runtime", "session", "stem", "ttl_ms")

    def __init__(self, session: Session, info: ModelInfo, runtime: Runtime, ttl_ms: int) -> None:
        self.session = session
        self.info = info
        # How the call's keys name rows: by primary key, or by a unique column set (`by`).
        self.index: Index = info.primary
        self.runtime = runtime
        self.ttl_ms = ttl_ms
        self.stem = runtime.stem(info)
        self.log: WriteLog | None = peek_write_log(session)
        # Once this transaction has written, nothing it reads may be published.
        self.no_fill: Skip | None = Skip.OWN_WRITES if self.log is not None and self.log.has_writes else None
        # Inside an open transaction the snapshot rule needs the connection the SELECT runs
        # on; without one, the SELECT begins a transaction whose snapshot follows the lease.
        self.needs_connection_check = self.no_fill is None and session.get_transaction() is not None

    @classmethod
    def begin(cls, session: Session, entity: Any, call: GetOptions, *, asynchronous: bool) -> ReadPolicy | None:
        """The policy of a call through the cache, given the call's keyword arguments as
        ``Session.get`` takes them; ``None`` when it must go straight to SQLAlchemy."""
        if not isinstance(entity, type):
            return None
        info = model_info(entity)
        if info is None:
            return None
        runtime = _runtime_for(entity, asynchronous)
        if not runtime.settings.enabled:
            return None
        if not call:  # a plain get(Model, pk), the usual call
            return cls(session, info, runtime, ttl_ms(info, runtime, EMPTY_DICT))
        execution_options: Mapping[str, Any] = call.get("execution_options") or EMPTY_DICT
        if (
            call.get("options")
            or call.get("populate_existing")
            or call.get("with_for_update") not in (None, False)
            or call.get("identity_token") is not None
            or execution_options.get("cache", True) is False
            or execution_options.get("populate_existing")
        ):
            return None
        return cls(session, info, runtime, ttl_ms(info, runtime, execution_options))

    def by(self, names: frozenset[str]) -> ReadPolicy:
        """Name rows by the declared unique column set ``names`` instead of the primary key."""
        self.index = self.info.uniques[names]
        return self

    # Per key ------------------------------------------------------------------------------

    def target(self, ident: Any) -> tuple[list[Any], str, str] | None:
        """The key's values (in their columns' own types), the key and its primary-key part for
        an identity as ``get()`` takes it; ``None``, counted and logged, when it is not cacheable."""
        pk = pk_values(self.info.pk_names, ident)
        if pk is None:
            self._uncacheable(ident, "it is not one value per primary-key column")
            return None
        return self.keyed(pk)

    def keyed(self, values: list[Any]) -> tuple[list[Any], str, str] | None:
        """`target` for the index's values, in its order."""
        keyed = self.index.keyed(values)
        if keyed is None:
            self._uncacheable(values, "a value is not of its column's type and does not convert to it exactly")
            return None
        values, part = keyed
        return values, self.stem + part, part

    def _uncacheable(self, ident: Any, reason: str) -> None:
        self.runtime.counters.uncacheable += 1
        logger.debug("not cached: %s %r: %s", self.info.cls.__name__, ident, reason)

    def in_identity_map(self, pk: Sequence[Any]) -> bool:
        identity = (self.info.identity_class, tuple(pk), None)
        return identity in self.session.identity_map

    def in_session(self, row: list[Any]) -> Database | None:
        """For a row found by a unique lookup that the session already holds: the step that
        answers it as ``Session.get`` does (the held instance, refreshed if expired)."""
        info = self.info
        identity = info.identity_of(row)
        if (info.identity_class, identity, None) not in self.session.identity_map:
            return None
        ident = identity[0] if len(identity) == 1 else identity
        return Database(lambda session: Session.get(session, info.cls, ident))

    def near_cache(self) -> NearCache | None:
        """The near cache, made current, if this model keeps near entries and tracking is live."""
        near = self.runtime.near
        if near is None or not self.info.config.near:
            return None
        return near if self.runtime.tracking(near).current() else None

    def near_hit(self, verdict: Any) -> Any:
        """A near entry's values for this session (a copy where instances could share one)."""
        self.runtime.counters.near_hits += 1
        if (per_model := self.runtime.per_model) is not None:
            per_model.of(self.info.cls).near_hits += 1
        if type(verdict) is list and not self.info.shareable:
            return copy.deepcopy(verdict)
        return verdict

    def near_keep(self, near: NearCache, found: Sequence[tuple[str, Verdict]], started: int) -> None:
        """Keep what a read of Redis that began at ``started`` found (each key and its hit),
        unless a change of the key reached the process since (tracking made current first).
        Mutable values are kept as a copy: the instance made from the read holds them, and
        its session may change them in place."""
        if not self.runtime.tracking(near).current():
            return
        copied = not self.info.shareable
        for key, verdict in found:
            near.keep(key, copy.deepcopy(verdict) if copied and type(verdict) is list else verdict, started)

    def cache_may_answer(self, key: str) -> bool:
        """May the cache answer for ``key``, or only the database?"""
        log = self.log
        if log is not None and (key in log.written_keys or self.info.cls in log.bulk_changed):
            self.runtime.counters.skipped(Skip.OWN_WRITES)
            return False  # this transaction changed the row: only the database has it
        evictions = self.runtime.evictions
        return not (evictions.pending and key in evictions)

    def check_connection(self, connection: Connection) -> None:
        """The snapshot rule, for the connection the SELECT will run on."""
        self.needs_connection_check = False
        if not connection_is_fresh(connection):
            self.no_fill = Skip.SNAPSHOT

    def judge(self, raw: bytes | None, part: str, epoch: bytes | None) -> Verdict:
        """What ``raw``, read at the key of ``part`` from the server lifetime ``epoch``, is:
        column values for a hit, ``None`` when the key is empty, else why it is not served.
        Counts hits and the values no reader may serve."""
        if raw is None:
            return None
        verdict = _verdict(self.info, raw, part, epoch, self.index)
        if type(verdict) is list:
            self.runtime.counters.hits += 1
            if (per_model := self.runtime.per_model) is not None:
                per_model.of(self.info.cls).hits += 1
        elif verdict is NO_ROW:
            self.runtime.counters.negative_hits += 1
            if (per_model := self.runtime.per_model) is not None:
                per_model.of(self.info.cls).negative_hits += 1
        elif isinstance(verdict, Unusable):
            self._unusable([verdict])
        return verdict

    def judge_many(
        self, raws: Sequence[bytes | None], parts: Sequence[str], epochs: Sequence[bytes | None]
    ) -> list[Verdict]:
        """`judge` for many keys at once."""
        info, index = self.info, self.index
        verdicts = [
            _verdict(info, raw, part, epoch, index) for raw, part, epoch in zip(raws, parts, epochs, strict=True)
        ]
        hits, negative_hits = sum(type(verdict) is list for verdict in verdicts), verdicts.count(NO_ROW)
        counters = self.runtime.counters
        counters.hits += hits
        counters.negative_hits += negative_hits
        if (per_model := self.runtime.per_model) is not None:
            counts = per_model.of(self.info.cls)
            counts.hits += hits
            counts.negative_hits += negative_hits
        unusable = [verdict for verdict in verdicts if isinstance(verdict, Unusable)]
        if unusable:
            self._unusable(unusable)
        return verdicts

    def _unusable(self, reasons: list[Unusable]) -> None:
        counters = self.runtime.counters
        for reason in reasons:
            if reason is Unusable.OTHER_LIFETIME:
                counters.other_lifetime_entries += 1
            else:
                counters.corrupt_entries += 1
        self.runtime.notices.warn(
            reasons[0].name,
            "not serving %s in %s; the next reader that may fill replaces it",
            reasons[0].value,
            self.info.table,
        )

    def missed(self, count: int = 1) -> None:
        self.runtime.counters.misses += count
        if (per_model := self.runtime.per_model) is not None:
            per_model.of(self.info.cls).misses += count

    def redis_failed(self, operation: str, error: TransportError) -> None:
        self.runtime.failures.failed(operation, error)

    # Filling ------------------------------------------------------------------------------

    def _fill_blocked(self) -> Skip | None:
        if self.no_fill is None:
            log = peek_write_log(self.session)
            if log is not None and log.has_writes:  # the load itself autoflushed
                self.no_fill = Skip.OWN_WRITES
        return self.no_fill

    def may_publish(self, verdict: Verdict) -> bool:
        """May a row just loaded for a key whose read gave ``verdict`` be published (``None``:
        the key was empty and this call leased it)? Counts why not."""
        reason = self._fill_blocked() or (Skip.LEASE_BUSY if verdict is BUSY else None)
        if reason is not None:
            self.runtime.counters.skipped(reason)
            return False
        return verdict is None

    def settle_with(self, instance: Any, part: str, epoch: bytes | None) -> tuple[bytes | None, int]:
        """What a reader settles the lease it holds with, and for how long: the loaded row's
        entry, a negative entry when there is no row (``negative_ttl``), or ``None`` to
        release the key; by the rules of ``get()``."""
        if instance is not None:
            return (self.entry_for(instance, part, epoch) if self.may_publish(None) else None), self.ttl_ms
        negative_ttl = self.info.config.negative_ttl
        if negative_ttl is None or epoch is None or not self.index.remembers_absence or self._fill_blocked():
            return None, 0
        return encode_no_row(self.info, part, epoch), negative_ttl * 1000

    def entry_for(self, instance: Any, part: str, epoch: bytes | None) -> bytes | None:
        """The entry to publish for a loaded row, if it really is the row ``part`` names (not one
        a collation matched to other values), for the server lifetime ``epoch`` its lease was
        taken in."""
        if epoch is None:
            return None
        state_dict = instance.__dict__
        value = encode_entry(self.info, state_dict, epoch) if self.index.of_dict(state_dict) == part else None
        if value is None:
            self.runtime.counters.skipped(Skip.UNSTORABLE)
        return value

    def filled(self, published: int, lost: int) -> None:
        counters = self.runtime.counters
        counters.fills += published
        if lost:
            counters.skipped(Skip.LEASE_LOST, lost)
