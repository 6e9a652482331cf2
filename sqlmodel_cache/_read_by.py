"""Unique lookups as flows: owns ``get_by()``, a read by a declared unique column set.

The lookup's key holds the row's entry itself, so a hit is one round trip like ``get()``'s,
and it runs through `_read.read_one` under the same read policy: the lease against the
stale-set race, own writes, the snapshot rule, negative entries, single flight. A commit
that changes the row evicts its lookup keys for the old and the new values (`_lookups`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.util import EMPTY_DICT
from sqlmodel import Session

from ._flow import Database, Flow
from ._index import declared_set
from ._options import GetOptions
from ._policy import ReadPolicy
from ._read import read_one

__all__ = ["plan_get_by"]


def plan_get_by(
    session: Session, entity: Any, columns: Mapping[str, Any], options: GetOptions, *, asynchronous: bool
) -> Flow[Any]:
    """The flow of a ``get_by()``: through the cache when it may, else the plain query."""
    names = declared_set(entity, columns)
    execution_options = options.get("execution_options") or EMPTY_DICT
    bind_arguments: Any = options.get("bind_arguments")

    def query(session: Session) -> Any:
        # Built only when run: the model's declaration is checked first (a clear error).
        statement = select(entity).where(*(getattr(entity, name) == value for name, value in columns.items()))
        return (
            session.execute(statement, execution_options=execution_options, bind_arguments=bind_arguments)
            .scalars()
            .one_or_none()
        )

    from_database = Database(query)
    return _get_by(session, entity, names, columns, options, from_database, asynchronous)


def _get_by(
    session: Session,
    entity: Any,
    names: frozenset[str],
    columns: Mapping[str, Any],
    options: GetOptions,
    from_database: Database,
    asynchronous: bool,
) -> Flow[Any]:
    if session.autoflush and not session._is_clean():
        # As the query would: the session's pending changes go first, so that a change
        # to the row is this transaction's own write, which only the database answers.
        yield Database(_autoflush)
    policy = ReadPolicy.begin(session, entity, options, asynchronous=asynchronous)
    if policy is None:
        return (yield from_database)
    policy.by(names)
    target = policy.keyed([columns[name] for name in policy.index.names])
    if target is None:
        return (yield from_database)
    _, key, part = target
    return (yield from read_one(policy, None, key, part, from_database))


def _autoflush(session: Session) -> None:
    session._autoflush()
