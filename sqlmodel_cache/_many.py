"""``get_many()``: many primary keys in a few Redis round trips and one SELECT.

`BatchRead` takes every decision (which keys come from the identity map, which from
Redis, which from the database, what to fill) by the rules of ``get()``, decided once per
call where they hold for the whole call; the sessions only run its I/O steps:

1. ``peek_many`` of every key the cache may answer (one MGET; one round trip per node on
   a cluster): the hits become instances.
2. ``lookup_many`` of the misses, where this call may fill: a lease for each, as ``get()``
   takes it; a key that got a value meanwhile is a hit after all.
3. One ``SELECT ... WHERE pk IN (...)`` for the rest.
4. ``fill_many`` of the rows whose leases this call holds.

All hits cost one round trip; misses cost three, each carrying every key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper, Session
from sqlmodel import select
from sqlmodel.sql.expression import SelectOfScalar

from ._core import CallPlan, fill_value, is_lease, new_lease, normalized_pk, plan_call, unsent_evictions
from ._read import count_skipped
from ._snapshot import connection_is_fresh
from ._stats import counters, warn_redis_failure
from ._tracking import peek_write_log

__all__ = ["BatchRead"]

Identity = tuple[Any, ...]


class BatchRead:
    """One ``get_many()`` call, from the identities asked for to the list returned."""

    def __init__(
        self,
        session: Session,
        entity: type,
        idents: Iterable[Any],
        execution_options: Mapping[str, Any],
        transport_type: type,
        session_name: str,
    ) -> None:
        self.session = session
        self.entity = entity
        self.mapper: Mapper[Any] = sa.inspect(entity)
        idents = list(idents)
        self.results: list[Any] = [None] * len(idents)
        # Identities already in the identity map: ``get()`` answers those exactly.
        self.from_identity_map: list[tuple[int, Any]] = []
        self._positions: dict[Identity, list[int]] = {}
        self._database: dict[Identity, list[Any]] = {}  # identity -> primary key, read by SELECT
        self._cached: dict[Identity, tuple[str, str]] = {}  # identity -> key, pk part: asked of Redis
        self._to_lease: dict[Identity, tuple[str, str]] = {}  # missed: lease them before the SELECT
        self._leased: dict[Identity, tuple[str, str, bytes]] = {}  # leases this call holds
        self._missed_unleased: list[Identity] = []  # missed where this call may not fill
        self._loaded: dict[Any, Any] = {}
        call = plan_call(
            entity,
            options=None,
            populate_existing=None,
            with_for_update=None,
            identity_token=None,
            execution_options=execution_options,
            transport_type=transport_type,
            session_name=session_name,
        )
        self._call: CallPlan | None = call
        log = peek_write_log(session)
        # Per call, as for every get() in this transaction: the own-writes and snapshot rules.
        bulk_changed = call is not None and log is not None and call.info.cls in log.bulk_changed
        written = log.written_keys if log is not None else frozenset()
        self._no_fill_reason = "own_writes" if log is not None and log.has_writes else None
        self.needs_connection_check = self._no_fill_reason is None and session.get_transaction() is not None
        identity_map = session.identity_map
        mapped = len(identity_map) > 0  # a new session (the usual case) has nothing to look up
        unsent = unsent_evictions if unsent_evictions else ()
        identity_class = self.mapper._identity_class
        positions, database, cached = self._positions, self._database, self._cached
        for position, ident in enumerate(idents):
            pk = normalized_pk(call.info, ident) if call is not None else _plain_pk(self.mapper, ident)
            if pk is None:
                raise sa.exc.InvalidRequestError(
                    f"{ident!r} is not a primary key of {entity.__name__}: give the key columns' values, "
                    "a tuple for composite keys"
                )
            identity = (identity_class, tuple(pk), None)
            if mapped and identity in identity_map:
                self.from_identity_map.append((position, ident))
                continue
            if identity in positions:
                positions[identity].append(position)
                continue
            positions[identity] = [position]
            part = call.info.pk_part(pk) if call is not None else None
            if call is None or part is None:
                database[identity] = pk
                continue
            key = call.stem + part
            if bulk_changed or key in written:
                counters.fills_skipped_own_writes += 1
                database[identity] = pk
            elif key in unsent:
                database[identity] = pk
            else:
                cached[identity] = (key, part)

    def check_connection(self, conn: Connection) -> None:
        """The snapshot rule, once for the call: the SELECT runs on this connection."""
        self.needs_connection_check = False
        if not connection_is_fresh(conn):
            self._no_fill_reason = "snapshot"

    def peek_requests(self) -> list[str]:
        """Keys to read from Redis."""
        return [key for key, _ in self._cached.values()]

    def lease_requests(self) -> tuple[list[str], list[bytes]]:
        """Keys that missed, each with the lease to take there."""
        base = new_lease()
        keys = [key for key, _ in self._to_lease.values()]
        return keys, [base + b"%d" % index for index in range(len(keys))]

    @property
    def lease_ms(self) -> int:
        assert self._call is not None
        return self._call.settings.lease_ms

    def redis_failed(self, error: Exception) -> None:
        """Redis did not answer: every key it was asked for goes to the SELECT, unleased."""
        warn_redis_failure("lookup", error)
        asked = {**self._cached, **self._to_lease}  # whichever step failed, what it was asked
        counters.misses += len(asked)
        self._to_database(asked)
        self._cached, self._to_lease = {}, {}

    def apply_peeks(self, raws: list[bytes | None]) -> None:
        """Hits become instances; misses are leased next where this call may fill."""
        may_fill = self._no_fill_reason is None
        missed = self._apply(self._cached, raws)
        if may_fill:
            self._to_lease = missed
        else:
            counters.misses += len(missed)
            self._missed_unleased = list(missed)
            self._to_database(missed)
        self._cached = {}

    def apply_leases(self, leases: list[bytes], raws: list[bytes | None]) -> None:
        """Keys still empty now hold this call's lease; one filled meanwhile is a hit."""
        leased = self._apply(self._to_lease, raws)
        counters.misses += len(leased)
        lease_of = dict(zip(self._to_lease, leases, strict=True))
        for identity, (key, part) in leased.items():
            self._leased[identity] = (key, part, lease_of[identity])
        self._to_database(leased)
        self._to_lease = {}

    def _apply(self, asked: dict[Identity, tuple[str, str]], raws: list[bytes | None]) -> dict[Identity, Any]:
        """Place the hits among ``raws``, send the unusable to the SELECT; the empty keys are returned."""
        assert self._call is not None
        info = self._call.info
        decode = info.decode_row
        hits: list[Identity] = []
        rows: list[list[Any]] = []
        empty: dict[Identity, tuple[str, str]] = {}
        for (identity, key_and_part), raw in zip(asked.items(), raws, strict=True):
            if raw is None:
                empty[identity] = key_and_part
                continue
            values = None if is_lease(raw) else decode(raw, key_and_part[1])
            if values is not None:
                hits.append(identity)
                rows.append(values)
                continue
            # Another reader's lease, or a value we cannot use: the database, and no fill.
            counters.misses += 1
            if is_lease(raw):
                counters.fills_skipped_lease_busy += 1
            else:
                counters.corrupt_entries += 1
            self._database[identity] = list(identity[1])
        counters.hits += len(hits)
        for identity, instance in zip(hits, info.load_rows(self.session, rows), strict=True):
            self._place(identity, instance)
        return empty

    def _to_database(self, identities: Iterable[Identity]) -> None:
        for identity in identities:
            self._database[identity] = list(identity[1])

    def select_statement(self) -> SelectOfScalar[Any] | None:
        """One SELECT for every identity that Redis did not answer."""
        if not self._database:
            return None
        columns = list(self.mapper.primary_key)
        pks = [tuple(pk) for pk in self._database.values()]
        criterion = columns[0].in_([pk[0] for pk in pks]) if len(columns) == 1 else sa.tuple_(*columns).in_(pks)
        return select(self.entity).where(criterion)

    def apply_rows(self, instances: Iterable[Any]) -> None:
        """Place the rows the SELECT returned (absent ones stay ``None``)."""
        self._loaded = {sa.inspect(instance).identity_key: instance for instance in instances}
        for identity in self._database:
            self._place(identity, self._loaded.get(identity))

    def fill_requests(self) -> list[tuple[str, bytes, bytes, int]]:
        """What to publish: loaded rows whose leases this call holds, by the rules of ``get()``."""
        if self._call is None:
            return []
        reason = self._no_fill_reason
        if reason is None and self._leased:
            log = peek_write_log(self.session)
            if log is not None and log.has_writes:  # the SELECT itself may have flushed
                reason = "own_writes"
        if reason is not None:
            for identity in (*self._missed_unleased, *self._leased):
                if self._loaded.get(identity) is not None:
                    count_skipped(reason)
            return []
        info, ttl_ms = self._call.info, self._call.ttl_ms
        requests = []
        for identity, (key, part, lease) in self._leased.items():
            instance = self._loaded.get(identity)
            if instance is not None:
                value = fill_value(info, part, instance.__dict__)
                if value is not None:
                    requests.append((key, lease, value, ttl_ms))
        return requests

    def filled(self, published: list[bool]) -> None:
        stored = sum(published)
        counters.fills += stored
        counters.fills_skipped_lease_lost += len(published) - stored

    def fill_failed(self, error: Exception) -> None:
        warn_redis_failure("fill", error)

    def _place(self, identity: Identity, instance: Any) -> None:
        for position in self._positions[identity]:
            self.results[position] = instance


def _plain_pk(mapper: Mapper[Any], ident: Any) -> list[Any] | None:
    if isinstance(ident, (tuple, list)):
        pk = list(ident)
    elif isinstance(ident, Mapping):
        try:
            pk = [ident[mapper.get_property_by_column(col).key] for col in mapper.primary_key]
        except KeyError:
            return None
    else:
        pk = [ident]
    return pk if len(pk) == len(mapper.primary_key) else None
