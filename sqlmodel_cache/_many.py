"""``get_many()``: many primary keys in one Redis round trip and one SELECT.

`BatchRead` takes every decision (which keys come from the identity map, which from
Redis, which from the database, what to fill) with the same per-key rules as ``get()``
(`plan_lookup`, `prepare_read`, `ReadPlan`); the sessions only run its I/O steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapper, Session
from sqlmodel import select
from sqlmodel.sql.expression import SelectOfScalar

from ._core import normalized_pk, plan_lookup
from ._model import model_info
from ._read import ReadPlan, prepare_read

__all__ = ["BatchRead"]


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
        # Positions waiting for each database identity key.
        self._positions: dict[tuple[Any, ...], list[int]] = {}
        self._plans: dict[tuple[Any, ...], ReadPlan] = {}
        self._database: dict[tuple[Any, ...], list[Any]] = {}
        self._loaded: dict[Any, Any] = {}
        self._filling: list[ReadPlan] = []
        info = model_info(entity)
        for position, ident in enumerate(idents):
            pk = normalized_pk(info, ident) if info is not None else _plain_pk(self.mapper, ident)
            if pk is None:
                raise sa.exc.InvalidRequestError(
                    f"{ident!r} is not a primary key of {entity.__name__}: give the key columns' values, "
                    "a tuple for composite keys"
                )
            identity = self.mapper.identity_key_from_primary_key(tuple(pk))
            if identity in session.identity_map:
                self.from_identity_map.append((position, ident))
                continue
            if identity in self._positions:
                self._positions[identity].append(position)
                continue
            self._positions[identity] = [position]
            lookup = plan_lookup(
                entity,
                ident,
                options=None,
                populate_existing=None,
                with_for_update=None,
                identity_token=None,
                execution_options=execution_options,
                transport_type=transport_type,
                session_name=session_name,
            )
            plan = prepare_read(session, lookup) if lookup is not None else None
            if plan is None:
                self._database[identity] = pk
            else:
                self._plans[identity] = plan

    @property
    def needs_connection_check(self) -> bool:
        return any(plan.needs_connection_check for plan in self._plans.values())

    def check_connection(self, conn: Connection) -> None:
        for plan in self._plans.values():
            plan.check_connection(conn)

    def redis_requests(self) -> tuple[list[str], list[bytes | None]]:
        """Keys to read, each with its lease (``None``: read without taking one)."""
        plans = self._plans.values()
        return [p.lookup.key for p in plans], [p.lookup.lease if p.takes_lease else None for p in plans]

    @property
    def lease_ms(self) -> int:
        return next(iter(self._plans.values())).lookup.settings.lease_ms

    def redis_failed(self, error: Exception) -> None:
        for plan in self._plans.values():
            plan.redis_failed("lookup", error)
        for identity, plan in self._plans.items():
            self._database[identity] = plan.lookup.pk
            plan.takes_lease = False  # nothing was leased: nothing may be filled

    def apply_redis(self, raws: list[bytes | None]) -> None:
        for (identity, plan), raw in zip(self._plans.items(), raws, strict=True):
            values = plan.hit(raw)
            if values is None:
                self._database[identity] = plan.lookup.pk
                continue
            self._place(identity, plan.lookup.info.load_into(self.session, values))

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
        """What to publish: loaded rows whose readers hold their leases, by the rules of ``get()``."""
        requests = []
        for identity, plan in self._plans.items():
            if identity not in self._database:
                continue  # a hit
            value = plan.fill_value(self.session, self._loaded.get(identity))
            if value is not None:
                lookup = plan.lookup
                requests.append((lookup.key, lookup.lease, value, lookup.ttl_ms))
                self._filling.append(plan)
        return requests

    def filled(self, published: list[bool]) -> None:
        for plan, ok in zip(self._filling, published, strict=True):
            plan.filled(ok)

    def fill_failed(self, error: Exception) -> None:
        if self._filling:
            self._filling[0].redis_failed("fill", error)

    def _place(self, identity: tuple[Any, ...], instance: Any) -> None:
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
