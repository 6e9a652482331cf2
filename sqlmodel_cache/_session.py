"""`CachedSession`: owns the blocking I/O of cached reads; every decision is the policy's."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import util
from sqlalchemy.orm._typing import OrmExecuteOptionsParameter
from sqlalchemy.orm.session import _EntityBindKey, _PKIdentityArgument
from sqlmodel import Session
from typing_extensions import Unpack

from ._flow import run
from ._options import SyncGetOptions, plain_get_options
from ._read import plan_get
from ._read_by import plan_get_by
from ._read_many import plan_many
from ._writes import install_write_tracking

__all__ = ["CachedSession"]

_O = TypeVar("_O", bound=object)


class CachedSession(Session):
    """A ``sqlmodel.Session`` whose ``get()`` of opted-in models is served from Redis.

    Everything else is the plain session: queries pass through, and a commit evicts the
    rows it changed before ``commit()`` returns.
    """

    def get(
        self, entity: _EntityBindKey[_O], ident: _PKIdentityArgument, **options: Unpack[SyncGetOptions]
    ) -> _O | None:
        """``Session.get``, through the cache for opted-in models; the same arguments."""
        read = plan_get(self, entity, ident, options, asynchronous=False)
        if read is None:
            return super().get(entity, ident, **plain_get_options(options))
        return run(read, self)  # type: ignore[no-any-return]

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
        return run(plan_many(self, entity, idents, execution_options, asynchronous=False), self)

    def get_by(
        self,
        entity: type[_O],
        *,
        execution_options: OrmExecuteOptionsParameter | None = None,
        bind_arguments: Any | None = None,
        **columns: Any,
    ) -> _O | None:
        """The row whose declared unique column set has these values, or ``None``:
        ``get_by(User, email="a@example.com")``, as ``select(User).where(...)`` would give
        it, through the cache (``CacheConfig(unique=...)``); the rules of ``get()`` apply."""
        options: SyncGetOptions = {"execution_options": execution_options or util.EMPTY_DICT}
        if bind_arguments is not None:
            options["bind_arguments"] = bind_arguments
        return run(plan_get_by(self, entity, columns, options, asynchronous=False), self)  # type: ignore[no-any-return]


install_write_tracking(CachedSession, asynchronous=False)
