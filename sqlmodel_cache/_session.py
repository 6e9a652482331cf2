"""`CachedSession`: ``sqlmodel.Session`` whose ``get()`` reads through Redis."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import util
from sqlalchemy.orm._typing import OrmExecuteOptionsParameter
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.orm.session import _EntityBindKey, _PKIdentityArgument
from sqlalchemy.sql.selectable import ForUpdateParameter
from sqlmodel import Session

from ._core import Lookup, plan_lookup, unsent_evictions
from ._errors import TransportError
from ._eviction import evict, send_unsent_evictions
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
        lookup = plan_lookup(
            entity,
            ident,
            options=options,
            populate_existing=populate_existing,
            with_for_update=with_for_update,
            identity_token=identity_token,
            execution_options=execution_options,
            transport_type=RedisSyncTransport,
            session_name="CachedSession",
        )
        if lookup is None:
            return super().get(
                entity,
                ident,
                options=options,
                populate_existing=populate_existing,
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
            instance = lookup.info.build_instance(values)
            self.add(instance)
            return instance  # type: ignore[no-any-return]
        loaded = from_database()
        value = plan.fill_value(self, loaded)
        if value is not None:
            try:
                plan.filled(transport.fill(lookup.key, lookup.lease, value, lookup.ttl_ms))
            except TransportError as exc:
                plan.redis_failed("fill", exc)
        return loaded


def _delete(transport: RedisSyncTransport, keys: list[str]) -> None:
    transport.delete_many(keys)


def _evict(session: Any, keys: list[str]) -> None:
    evict(keys, RedisSyncTransport, _delete)


install_write_tracking(CachedSession, _evict)
