"""The read policy: owns every decision of a cached read, for ``get()``, ``get_many()`` and
every read built on them. It does no I/O; `_read` sequences its steps as flows.

Per call: is it eligible at all, its TTL, may it fill (own writes, snapshot rule). Per key:
may the cache answer it (own writes, identity map, kept evictions), what a value read back
means (hit, empty, another reader's lease, unusable), and what to publish for a loaded row.
Every counter of a read is counted here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, TypedDict, TypeVar, cast

from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.orm._typing import OrmExecuteOptionsParameter
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.sql.selectable import ForUpdateParameter
from sqlalchemy.util import EMPTY_DICT

from ._entry import NO_ROW, NoRowMark, Unusable, decode_entry, encode_entry, encode_no_row
from ._errors import ConfigurationError, TransportError
from ._keys import pk_values
from ._lease import is_lease
from ._model import ModelInfo, model_info
from ._runtime import Runtime, active
from ._snapshot import connection_is_fresh
from ._stats import Skip, logger
from ._writes import WriteLog, peek_write_log

__all__ = ["BUSY", "UNANSWERED", "GetOptions", "ReadPolicy", "SyncGetOptions", "Verdict", "plain_get_options"]


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


class GetOptions(TypedDict, total=False):
    """The keyword arguments of ``AsyncSession.get`` (its own and `CachedSession`'s)."""

    options: Sequence[ORMOption] | None
    populate_existing: bool | None
    with_for_update: ForUpdateParameter
    identity_token: Any | None
    execution_options: OrmExecuteOptionsParameter


class SyncGetOptions(GetOptions, total=False):
    """The keyword arguments of ``Session.get``."""

    bind_arguments: Any | None


_Options = TypeVar("_Options", bound=GetOptions)


def plain_get_options(options: _Options) -> _Options:
    """The arguments for the plain ``get()`` of a call the cache does not take: a row read
    under lock must not be an older copy."""
    if options.get("with_for_update") not in (None, False) and options.get("populate_existing") is None:
        return cast("_Options", {**options, "populate_existing": True})
    return options


def _verdict(info: ModelInfo, raw: bytes | None, part: str, epoch: bytes | None) -> Verdict:
    if raw is None:
        return None
    if epoch is None:
        return UNANSWERED
    if is_lease(raw):
        return BUSY
    return decode_entry(info, raw, part, epoch)


def _ttl_ms(info: ModelInfo, runtime: Runtime, execution_options: Mapping[str, Any]) -> int:
    ttl = execution_options.get("cache_ttl")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ConfigurationError(
                f'execution_options={{"cache_ttl": ...}} must be a positive number of seconds (an int), got {ttl!r}'
            )
        return ttl * 1000
    return (info.config.ttl or runtime.settings.default_ttl) * 1000


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
    """The decisions of one cached read call (one ``get()`` or one ``get_many()``)."""

    __slots__ = ("info", "log", "needs_connection_check", "no_fill", "runtime", "session", "stem", "ttl_ms")

    def __init__(self, session: Session, info: ModelInfo, runtime: Runtime, ttl_ms: int) -> None:
        self.session = session
        self.info = info
        self.runtime = runtime
        self.ttl_ms = ttl_ms
        self.stem = runtime.keys.stem(info.table, info.fingerprint)
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
            return cls(session, info, runtime, _ttl_ms(info, runtime, EMPTY_DICT))
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
        return cls(session, info, runtime, _ttl_ms(info, runtime, execution_options))

    # Per key ------------------------------------------------------------------------------

    def target(self, ident: Any) -> tuple[list[Any], str, str] | None:
        """The key's values (in their columns' own types), the key and its primary-key part for
        an identity as ``get()`` takes it; ``None``, counted and logged, when it is not cacheable."""
        info = self.info
        pk = pk_values(info.pk_names, ident)
        if pk is None:
            self._uncacheable(ident, "it is not one value per primary-key column")
            return None
        part = info.pk_part(pk)
        if part is None:
            typed = info.pk_typed(pk)
            part = info.pk_part(typed) if typed is not None else None
            if typed is None or part is None:
                self._uncacheable(ident, "a value is not of its column's type and does not convert to it exactly")
                return None
            pk = typed
        return pk, self.stem + part, part

    def _uncacheable(self, ident: Any, reason: str) -> None:
        self.runtime.counters.uncacheable += 1
        logger.debug("not cached: %s %r: %s", self.info.cls.__name__, ident, reason)

    def in_identity_map(self, pk: Sequence[Any]) -> bool:
        identity = (self.info.identity_class, tuple(pk), None)
        return identity in self.session.identity_map

    def cache_may_answer(self, key: str) -> bool:
        """May the cache answer for ``key``, or only the database?"""
        log = self.log
        if log is not None and (key in log.written_keys or self.info.cls in log.bulk_changed):
            self.runtime.counters.skipped(Skip.OWN_WRITES)
            return False  # this transaction changed the row: only the database has it
        evictions = self.runtime.evictions
        return not (evictions and key in evictions)

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
        verdict = _verdict(self.info, raw, part, epoch)
        if type(verdict) is list:
            self.runtime.counters.hits += 1
        elif verdict is NO_ROW:
            self.runtime.counters.negative_hits += 1
        elif isinstance(verdict, Unusable):
            self._unusable([verdict])
        return verdict

    def judge_many(
        self, raws: Sequence[bytes | None], parts: Sequence[str], epochs: Sequence[bytes | None]
    ) -> list[Verdict]:
        """`judge` for many keys at once."""
        info = self.info
        verdicts = [_verdict(info, raw, part, epoch) for raw, part, epoch in zip(raws, parts, epochs, strict=True)]
        counters = self.runtime.counters
        counters.hits += sum(type(verdict) is list for verdict in verdicts)
        counters.negative_hits += verdicts.count(NO_ROW)
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
        if negative_ttl is None or epoch is None or self._fill_blocked() is not None:
            return None, 0
        return encode_no_row(self.info, part, epoch), negative_ttl * 1000

    def entry_for(self, instance: Any, part: str, epoch: bytes | None) -> bytes | None:
        """The entry to publish for a loaded row, if it really is the row ``part`` names, for
        the server lifetime ``epoch`` its lease was taken in."""
        info = self.info
        if epoch is None:
            return None
        pk = info.pk_of(instance.__dict__)
        value = encode_entry(info, instance.__dict__, epoch) if pk is not None and info.pk_part(pk) == part else None
        if value is None:
            self.runtime.counters.skipped(Skip.UNSTORABLE)
        return value

    def filled(self, published: int, lost: int) -> None:
        counters = self.runtime.counters
        counters.fills += published
        if lost:
            counters.skipped(Skip.LEASE_LOST, lost)
