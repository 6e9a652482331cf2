"""Bulk statements: owns which rows an ORM bulk UPDATE / DELETE / INSERT changed, for eviction.

The rows such a statement matched are evicted at commit like flushed ones. Where the
dialect has RETURNING, the statement fetches its matched primary keys as a side channel
(``return_defaults()``, the mechanism SQLAlchemy's own ``synchronize_session="fetch"``
uses), so the caller's result keeps its shape; elsewhere the matched keys are selected in
the same transaction first, locking them where the database can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.elements import BindParameter, TextClause

from ._eviction import row_keys
from ._keys import KeyScheme
from ._model import ModelInfo, model_info
from ._runtime import active
from ._stats import logger

__all__ = ["track_statement"]

Record = Callable[[Session, set[str], "KeyScheme | None", "type | None"], None]

_WRITE_VERBS = ("insert", "update", "delete", "merge", "upsert", "replace", "call", "truncate", "alter", "drop")


def _record(state: ORMExecuteState, record: Record, info: ModelInfo, pks: Iterable[Sequence[Any]]) -> None:
    """Record the rows ``pks`` of ``info``'s model as changed by a bulk statement."""
    runtime = active()
    if runtime is None:
        record(state.session, set(), None, info.cls)
        return
    record(state.session, row_keys(runtime, info, pks), runtime.keys, info.cls)


def _pks_in_parameters(info: ModelInfo, parameters: Any) -> list[list[Any]]:
    rows = parameters if isinstance(parameters, list) else [parameters]
    names = info.pk_names
    pks = []
    for row in rows:
        if isinstance(row, Mapping) and all(name in row for name in names):
            pks.append([row[name] for name in names])
    return pks


def _dialect(state: ORMExecuteState) -> Any:
    return state.session.get_bind(**state.bind_arguments).dialect


def track_statement(state: ORMExecuteState, record: Record) -> Any:
    """Record what a bulk statement changes; returns its result if it had to run it."""
    if state.is_select:
        return None
    statement = state.statement
    if isinstance(statement, TextClause):
        # Raw SQL is not evicted (documented), but a write must still stop fills.
        if statement.text.lstrip().lower().startswith(_WRITE_VERBS):
            record(state.session, set(), None, None)
        return None
    if not (state.is_update or state.is_delete or state.is_insert):
        return None
    mapper = state.bind_mapper
    info = model_info(mapper.class_) if mapper is not None else None
    if info is None:
        record(state.session, set(), None, None)  # even an uncached table's triggers may change ours
        return None

    session = state.session
    if state.is_insert or state.is_executemany:
        # Bulk INSERT (including upserts) and UPDATE by primary key name their rows. Run
        # the statement first: the keys belong to the transaction it begins.
        result = state.invoke_statement()
        _record(state, record, info, _pks_in_parameters(info, state.parameters))
        return result

    dialect = _dialect(state)
    has_returning = dialect.update_returning if state.is_update else dialect.delete_returning
    returns_keys = has_returning and not getattr(statement, "_returning", ())  # else its own RETURNING
    new_pks = _new_primary_keys(statement, info) if state.is_update else None
    old_rows: list[Any] = []
    if new_pks is not None or not returns_keys:
        # The rows as matched before the statement moves or changes them: their keys now.
        criteria = getattr(statement, "whereclause", None)
        matched = select(*info.mapper.primary_key)
        if criteria is not None:
            matched = matched.where(criteria)
        if dialect.name not in ("sqlite",):
            matched = matched.with_for_update()
        old_rows = list(session.execute(matched, state.parameters or None, bind_arguments=state.bind_arguments))
    # A moved row's new key: a literal from the statement, else from its RETURNING (which
    # leaves out the columns the statement sets to literals).
    moved = [_moved(row, new_pks) for row in old_rows] if new_pks else []
    known = [pk for pk in moved if pk is not None]
    if returns_keys:
        with_keys = statement.return_defaults(*info.mapper.primary_key)  # type: ignore[attr-defined]
        result = state.invoke_statement(statement=with_keys)
        _record(state, record, info, [*old_rows, *known, *(getattr(result, "returned_defaults_rows", None) or [])])
        return result
    if len(known) < len(moved):
        logger.warning(
            "a bulk UPDATE of %s sets its primary key to an expression this database cannot return; "
            "the rows' new keys are not evicted (their TTL bounds them)",
            info.table,
        )
    _record(state, record, info, [*old_rows, *known])
    return None


def _new_primary_keys(statement: Any, info: ModelInfo) -> dict[int, Any] | None:
    """The primary-key columns an UPDATE sets, by position in the key, with their new value
    where it is a literal (else ``_UNKNOWN``); ``None`` if it sets none."""
    values = dict(getattr(statement, "_ordered_values", None) or ()) or dict(getattr(statement, "_values", None) or {})
    positions = {column.key: i for i, column in enumerate(info.mapper.primary_key)}
    positions.update({name: i for i, name in enumerate(info.pk_names)})
    new: dict[int, Any] = {}
    for column, value in values.items():
        name = column if isinstance(column, str) else getattr(column, "key", None)
        table = getattr(column, "table", None)
        if name in positions and (table is None or table is info.mapper.local_table):
            new[positions[name]] = value.value if isinstance(value, BindParameter) else _UNKNOWN
    return new or None


_UNKNOWN: Any = object()


def _moved(old: Sequence[Any], new: dict[int, Any]) -> list[Any] | None:
    """A matched row's key after the UPDATE, or ``None`` where it is not known."""
    pk = list(old)
    for position, value in new.items():
        if value is _UNKNOWN:
            return None
        pk[position] = value
    return pk
