"""`AsyncCachedSession`: the asyncio twin of `CachedSession`.

Every decision comes from the same steps as the sync session (`_core`, `_read`,
`_tracking`, `_eviction`); only the I/O differs: Redis calls are awaited on the event
loop with the asyncio client, and the eviction that runs inside SQLAlchemy's greenlet at
commit awaits the same client through ``await_only``; no blocking Redis call ever runs in
the loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import util
from sqlalchemy.orm import Session as _SyncSession
from sqlalchemy.orm._typing import OrmExecuteOptionsParameter
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.orm.session import _EntityBindKey, _PKIdentityArgument
from sqlalchemy.sql.selectable import ForUpdateParameter
from sqlalchemy.util import await_only
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from ._config import current_settings
from ._core import plan_call, refreshes, unsent_evictions
from ._errors import TransportError
from ._eviction import evict, evicted, eviction_failed
from ._many import BatchRead
from ._read import prepare_read
from ._tracking import install_write_tracking
from .transport import RedisAsyncTransport

__all__ = ["AsyncCachedSession"]

_O = TypeVar("_O", bound=object)


class AsyncTrackedSession(Session):
    """The sync session inside `AsyncCachedSession`: tracks writes, evicts via asyncio Redis."""


def _delete_from_greenlet(transport: RedisAsyncTransport, keys: list[str]) -> None:
    await_only(transport.delete_many(keys))


def _evict(session: _SyncSession, keys: list[str]) -> None:
    evict(keys, RedisAsyncTransport, _delete_from_greenlet)


install_write_tracking(AsyncTrackedSession, _evict)


class AsyncCachedSession(AsyncSession):
    """A ``sqlmodel`` ``AsyncSession`` whose ``await get()`` of opted-in models reads through Redis."""

    sync_session_class: type[Session] = AsyncTrackedSession

    async def close(self) -> None:
        if not self.sync_session.in_transaction():
            # No transaction, so no connection to roll back or return: a session that only
            # served cache hits closes without a greenlet hop or a task.
            self.sync_session.close()
            return
        await super().close()

    async def __aexit__(self, type_: Any, value: Any, traceback: Any) -> None:
        if not self.sync_session.in_transaction():
            self.sync_session.close()
            return
        await super().__aexit__(type_, value, traceback)

    async def get(
        self,
        entity: _EntityBindKey[_O],
        ident: _PKIdentityArgument,
        *,
        options: Sequence[ORMOption] | None = None,
        populate_existing: bool | None = None,
        with_for_update: ForUpdateParameter = None,
        identity_token: Any | None = None,
        execution_options: OrmExecuteOptionsParameter = util.EMPTY_DICT,
    ) -> _O | None:
        call = plan_call(
            entity,
            options=options,
            populate_existing=populate_existing,
            with_for_update=with_for_update,
            identity_token=identity_token,
            execution_options=execution_options,
            transport_type=RedisAsyncTransport,
            session_name="AsyncCachedSession",
        )
        lookup = call.lookup(ident) if call is not None else None
        if lookup is None:
            return await super().get(
                entity,
                ident,
                options=options,
                populate_existing=refreshes(with_for_update, populate_existing),
                with_for_update=with_for_update,
                identity_token=identity_token,
                execution_options=execution_options,
            )

        async def from_database() -> _O | None:
            return await super(AsyncCachedSession, self).get(entity, ident, execution_options=execution_options)

        transport: RedisAsyncTransport = lookup.settings.transport  # type: ignore[assignment]
        if unsent_evictions:
            await _send_unsent_evictions(transport)
        plan = prepare_read(self.sync_session, lookup)
        if plan is None:
            return await from_database()
        if plan.needs_connection_check:
            connection = await self.connection(bind_arguments={"mapper": lookup.info.mapper})
            plan.check_connection(connection.sync_connection)  # type: ignore[arg-type]
        try:
            if plan.takes_lease:
                raw = await transport.lookup(lookup.key, lookup.lease, lookup.settings.lease_ms)
            else:
                raw = await transport.peek(lookup.key)
        except TransportError as exc:
            plan.redis_failed("lookup", exc)
            return await from_database()
        values = plan.hit(raw)
        if values is not None:
            return lookup.info.load_into(self.sync_session, values)  # type: ignore[no-any-return]
        loaded = await from_database()
        value = plan.fill_value(self.sync_session, loaded)
        if value is not None:
            try:
                plan.filled(await transport.fill(lookup.key, lookup.lease, value, lookup.ttl_ms))
            except TransportError as exc:
                plan.redis_failed("fill", exc)
        return loaded

    async def get_many(
        self,
        entity: type[_O],
        idents: Iterable[Any],
        *,
        execution_options: OrmExecuteOptionsParameter = util.EMPTY_DICT,
    ) -> list[_O | None]:
        """The rows with these primary keys, in the order asked, ``None`` where there is none.

        As `CachedSession.get_many`: identity map, Redis, one SELECT, fills.
        """
        batch = BatchRead(
            self.sync_session, entity, idents, execution_options, RedisAsyncTransport, "AsyncCachedSession"
        )
        for position, ident in batch.from_identity_map:
            batch.results[position] = await self.get(entity, ident, execution_options=execution_options)
        if batch.needs_connection_check:
            connection = await self.connection(bind_arguments={"mapper": batch.mapper})
            batch.check_connection(connection.sync_connection)  # type: ignore[arg-type]
        keys = batch.peek_requests()
        if keys:
            transport = _configured_transport()
            await _send_unsent_evictions(transport)
            try:
                batch.apply_peeks(await transport.peek_many(keys))
                keys, leases = batch.lease_requests()
                if keys:
                    batch.apply_leases(leases, await transport.lookup_many(keys, leases, batch.lease_ms))
            except TransportError as exc:
                batch.redis_failed(exc)
        statement = batch.select_statement()
        if statement is not None:
            batch.apply_rows((await self.exec(statement, execution_options=execution_options)).all())
        fills = batch.fill_requests()
        if fills:
            try:
                batch.filled(await _configured_transport().fill_many(fills))
            except TransportError as exc:
                batch.fill_failed(exc)
        return batch.results


def _configured_transport() -> RedisAsyncTransport:
    settings = current_settings()
    assert settings is not None and isinstance(settings.transport, RedisAsyncTransport)
    return settings.transport


async def _send_unsent_evictions(transport: RedisAsyncTransport) -> None:
    """Retry evictions that failed earlier; their keys stay unreadable until this succeeds."""
    if not unsent_evictions:
        return
    keys, prefixes = unsent_evictions.take()
    try:
        for prefix in prefixes:
            await transport.purge(prefix)
        await transport.delete_many(keys)
    except TransportError as exc:
        eviction_failed(keys, exc, retry=True)
    else:
        evicted(keys, prefixes)
