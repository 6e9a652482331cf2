"""`AsyncCachedSession`: owns the asyncio I/O of cached reads; every decision is the policy's.

Redis calls are awaited on the event loop with the asyncio client. The eviction that runs
inside SQLAlchemy's greenlet at commit awaits the same client there, so no blocking Redis
call ever runs in the loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import util
from sqlalchemy.orm._typing import OrmExecuteOptionsParameter
from sqlalchemy.orm.session import _EntityBindKey, _PKIdentityArgument
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession
from typing_extensions import Unpack

from ._flow import run_async
from ._options import GetOptions, plain_get_options
from ._read import plan_get
from ._read_by import plan_get_by
from ._read_many import plan_many
from ._writes import install_write_tracking

__all__ = ["AsyncCachedSession"]

_O = TypeVar("_O", bound=object)


class AsyncTrackedSession(Session):
    """The sync session inside `AsyncCachedSession`: tracks writes, evicts via asyncio Redis."""


install_write_tracking(AsyncTrackedSession, asynchronous=True)


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
        self, entity: _EntityBindKey[_O], ident: _PKIdentityArgument, **options: Unpack[GetOptions]
    ) -> _O | None:
        """``AsyncSession.get``, through the cache for opted-in models; the same arguments."""
        read = plan_get(self.sync_session, entity, ident, options, asynchronous=True)
        if read is None:
            return await super().get(entity, ident, **plain_get_options(options))
        return await run_async(read, self)

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
        return await run_async(plan_many(self.sync_session, entity, idents, execution_options, asynchronous=True), self)

    async def get_by(
        self, entity: type[_O], *, execution_options: OrmExecuteOptionsParameter | None = None, **columns: Any
    ) -> _O | None:
        """The row whose declared unique column set has these values, or ``None``: as
        `CachedSession.get_by`."""
        options: GetOptions = {"execution_options": execution_options or util.EMPTY_DICT}
        flow = plan_get_by(self.sync_session, entity, columns, options, asynchronous=True)
        return await run_async(flow, self)
