"""``get_many()``: many primary keys in one Redis round trip and one SELECT.

`BatchRead` takes every decision (which keys come from the identity map, which from
Redis, which from the database, what to fill) by the rules of ``get()``, decided once per
call where they hold for the whole call; the sessions only run its I/O steps.
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
        self._cached: dict[Identity, tuple[str, str, bytes | None]] = {}  # identity -> key, pk part, lease
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
        lease_base = new_lease()
        for position, ident in enumerate(idents):
            pk = normalized_pk(call.info, ident) if call is not None else _plain_pk(self.mapper, ident)
            if pk is None:
                raise sa.exc.InvalidRequestError(
                    f"{ident!r} is not a primary key of {entity.__name__}: give the key columns' values, "
                    "a tuple for composite keys"
                )
            identity = (self.mapper._identity_class, tuple(pk), None)
            if identity in identity_map:
                self.from_identity_map.append((position, ident))
                continue
            if identity in self._positions:
                self._positions[identity].append(position)
                continue
            self._positions[identity] = [position]
            part = call.info.pk_part(pk) if call is not None else None
            if call is None or part is None:
                self._database[identity] = pk
                continue
            key = call.stem + part
            if bulk_changed or key in written:
                counters.fills_skipped_own_writes += 1
                self._database[identity] = pk
            elif key in unsent_evictions:
                self._database[identity] = pk
            else:
                lease = None if self._no_fill_reason else lease_base + b"%d" % position
                self._cached[identity] = (key, part, lease)

    def check_connection(self, conn: Connection) -> None:
        """The snapshot rule, once for the call: the SELECT runs on this connection."""
        self.needs_connection_check = False
        if not connection_is_fresh(conn):
            self._no_fill_reason = "snapshot"
            self._cached = {identity: (key, part, None) for identity, (key, part, _) in self._cached.items()}

    def redis_requests(self) -> tuple[list[str], list[bytes | None]]:
        """Keys to read, each with its lease (``None``: read without taking one)."""
        entries = self._cached.values()
        return [key for key, _, _ in entries], [lease for _, _, lease in entries]

    @property
    def lease_ms(self) -> int:
        assert self._call is not None
        return self._call.settings.lease_ms

    def redis_failed(self, error: Exception) -> None:
        warn_redis_failure("lookup", error)
        counters.misses += len(self._cached)
        for identity in self._cached:
            self._database[identity] = list(identity[1])
        self._cached = {}  # nothing was leased: nothing may be filled

    def apply_redis(self, raws: list[bytes | None]) -> None:
        """Hits become instances; the rest go to the SELECT, keeping the leases this call took."""
        assert self._call is not None
        info, session = self._call.info, self.session
        hits = 0
        for (identity, (key, part, _lease)), raw in zip(list(self._cached.items()), raws, strict=True):
            if raw is not None and not is_lease(raw):
                values = info.decode_row(raw, part)
                if values is not None:
                    hits += 1
                    self._place(identity, info.load_into(session, values))
                    del self._cached[identity]
                    continue
                counters.corrupt_entries += 1
            if raw is not None:  # a value we cannot use, or another reader's lease: no fill
                if is_lease(raw):
                    counters.fills_skipped_lease_busy += 1
                self._cached[identity] = (key, part, None)
            self._database[identity] = list(identity[1])
        counters.hits += hits
        counters.misses += len(raws) - hits

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
        if self._call is None or not self._cached:
            return []
        log = peek_write_log(self.session)
        autoflushed = log is not None and log.has_writes  # the SELECT itself may have flushed
        requests = []
        for identity, (key, part, lease) in self._cached.items():
            instance = self._loaded.get(identity)
            if instance is None:
                continue
            if lease is None:
                if self._no_fill_reason is not None:
                    count_skipped(self._no_fill_reason)
                continue
            if autoflushed:
                count_skipped("own_writes")
                continue
            value = fill_value(self._call.info, part, instance.__dict__)
            if value is not None:
                requests.append((key, lease, value, self._call.ttl_ms))
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
