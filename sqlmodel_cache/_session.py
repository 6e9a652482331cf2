"""`CachedSession`: ``sqlmodel.Session`` whose ``get()`` reads through Redis."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import util
from sqlalchemy.orm._typing import OrmExecuteOptionsParameter
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.orm.session import _EntityBindKey, _PKIdentityArgument
from sqlalchemy.sql.selectable import ForUpdateParameter
from sqlmodel import Session

from ._config import current_settings
from ._core import Lookup, plan_call, refreshes, unsent_evictions
from ._errors import TransportError
from ._eviction import evict, send_unsent_evictions
from ._many import BatchRead
from ._read import prepare_read
from ._tracking import install_write_tracking
from .transport import RedisSyncTransport

__all__ = ["CachedSession"]

_O = TypeVar("_O", bound=object)


class CachedSession(Session):
    """A ``sqlmodel.Session`` whose ``get()`` of opted-in models is served from Redis.

    Everything else is the plain session: queries pass through, and a commit evicts the
    rows it changed before ``commit()`` returns.
    """

    def get(
        self,
        entity: _EntityBindKey[_O],
        ident: _PKIdentityArgument,
        *,
        options: Sequence[ORMOption] | None = None,
        populate_existing: bool | None = None,
        with_for_update: ForUpdateParameter = None,
        identity_token: Any | None = None,
        execution_options: OrmExecuteOptionsParameter = util.EMPTY_DICT,
        bind_arguments: Any | None = None,
    ) -> _O | None:
        call = plan_call(
            entity,
            options=options,
            populate_existing=populate_existing,
            with_for_update=with_for_update,
            identity_token=identity_token,
            execution_options=execution_options,
            transport_type=RedisSyncTransport,
            session_name="CachedSession",
        )
        lookup = call.lookup(ident) if call is not None else None
        if lookup is None:
            return super().get(
                entity,
                ident,
                options=options,
                populate_existing=refreshes(with_for_update, populate_existing),
                with_for_update=with_for_update,
                identity_token=identity_token,
                execution_options=execution_options,
                bind_arguments=bind_arguments,
            )
        return self._get_through_cache(lookup, entity, ident, execution_options, bind_arguments)

    def _get_through_cache(
        self,
        lookup: Lookup,
        entity: _EntityBindKey[_O],
        ident: _PKIdentityArgument,
        execution_options: OrmExecuteOptionsParameter,
        bind_arguments: Any | None,
    ) -> _O | None:
        def from_database() -> _O | None:
            return super(CachedSession, self).get(
                entity, ident, execution_options=execution_options, bind_arguments=bind_arguments
            )

        transport: RedisSyncTransport = lookup.settings.transport  # type: ignore[assignment]
        if unsent_evictions:
            send_unsent_evictions(transport)
        plan = prepare_read(self, lookup)
        if plan is None:
            return from_database()
        if plan.needs_connection_check:
            plan.check_connection(self.connection(bind_arguments={"mapper": lookup.info.mapper}))
        try:
            if plan.takes_lease:
                raw = transport.lookup(lookup.key, lookup.lease, lookup.settings.lease_ms)
            else:
                raw = transport.peek(lookup.key)
        except TransportError as exc:
            plan.redis_failed("lookup", exc)
            return from_database()
        values = plan.hit(raw)
        if values is not None:
            return lookup.info.load_into(self, values)  # type: ignore[no-any-return]
        loaded = from_database()
        value = plan.fill_value(self, loaded)
        if value is not None:
            try:
                plan.filled(transport.fill(lookup.key, lookup.lease, value, lookup.ttl_ms))
            except TransportError as exc:
                plan.redis_failed("fill", exc)
        return loaded

    def get_many(
        self,
        entity: type[_O],
        idents: Iterable[Any],
        *,
        execution_options: OrmExecuteOptionsParameter = util.EMPTY_DICT,
    ) -> list[_O | None]:
        """The rows with these primary keys, in the order asked, ``None`` where there is none.

        The identity map first, then one Redis read for the rest (one round trip; one per
        node on a cluster), leases for the misses in one more, one ``SELECT ... WHERE pk IN
        (...)`` for what Redis did not have, and the fills in one more; the rules of
        ``get()`` apply to every key.
        """
        batch = BatchRead(self, entity, idents, execution_options, RedisSyncTransport, "CachedSession")
        for position, ident in batch.from_identity_map:
            batch.results[position] = self.get(entity, ident, execution_options=execution_options)
        if batch.needs_connection_check:
            batch.check_connection(self.connection(bind_arguments={"mapper": batch.mapper}))
        keys = batch.peek_requests()
        if keys:
            transport = _configured_transport()
            if unsent_evictions:
                send_unsent_evictions(transport)
            try:
                batch.apply_peeks(transport.peek_many(keys))
                keys, leases = batch.lease_requests()
                if keys:
                    batch.apply_leases(leases, transport.lookup_many(keys, leases, batch.lease_ms))
            except TransportError as exc:
                batch.redis_failed(exc)
        statement = batch.select_statement()
        if statement is not None:
            batch.apply_rows(self.exec(statement, execution_options=execution_options).all())
        fills = batch.fill_requests()
        if fills:
            try:
                batch.filled(_configured_transport().fill_many(fills))
            except TransportError as exc:
                batch.fill_failed(exc)
        return batch.results


def _configured_transport() -> RedisSyncTransport:
    settings = current_settings()
    assert settings is not None and isinstance(settings.transport, RedisSyncTransport)
    return settings.transport


def _delete(transport: RedisSyncTransport, keys: list[str]) -> None:
    transport.delete_many(keys)


def _evict(session: Any, keys: list[str]) -> None:
    evict(keys, RedisSyncTransport, _delete)


install_write_tracking(CachedSession, _evict)
