"""Statements that change rows without the unit of work: ORM bulk UPDATE / DELETE / INSERT.

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
from sqlalchemy.sql.elements import TextClause

from ._config import current_settings
from ._core import key_for_pk
from ._model import ModelInfo, model_info

__all__ = ["track_statement"]

Record = Callable[[Session, set[str], "type | None"], None]

_WRITE_VERBS = ("insert", "update", "delete", "merge", "upsert", "replace", "call", "truncate", "alter", "drop")


def _keys(info: ModelInfo, pks: Iterable[Sequence[Any]]) -> set[str]:
    settings = current_settings()
    if settings is None:
        return set()
    keys = set()
    for pk in pks:
        part = info.pk_part(list(pk))
        if part is not None:
            keys.add(key_for_pk(info, settings.key_prefix, part))
    return keys


def _pks_in_parameters(info: ModelInfo, parameters: Any) -> list[list[Any]]:
    rows = parameters if isinstance(parameters, list) else [parameters]
    names = [info.attr_keys[i] for i in info.pk_positions]
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
            record(state.session, set(), None)
        return None
    if not (state.is_update or state.is_delete or state.is_insert):
        return None
    mapper = state.bind_mapper
    info = model_info(mapper.class_) if mapper is not None else None
    if info is None:
        record(state.session, set(), None)  # even an uncached table's triggers may change ours
        return None

    session = state.session
    if state.is_insert or state.is_executemany:
        # Bulk INSERT (including upserts) and UPDATE by primary key name their rows. Run
        # the statement first: the keys belong to the transaction it begins.
        result = state.invoke_statement()
        record(session, _keys(info, _pks_in_parameters(info, state.parameters)), info.cls)
        return result

    dialect = _dialect(state)
    has_returning = dialect.update_returning if state.is_update else dialect.delete_returning
    if has_returning and not getattr(statement, "_returning", ()):
        with_keys = statement.return_defaults(*info.mapper.primary_key)  # type: ignore[attr-defined]
        result = state.invoke_statement(statement=with_keys)
        rows = getattr(result, "returned_defaults_rows", None) or []
        record(session, _keys(info, rows), info.cls)
        return result

    criteria = getattr(statement, "whereclause", None)
    matched = select(*info.mapper.primary_key)
    if criteria is not None:
        matched = matched.where(criteria)
    if dialect.name not in ("sqlite",):
        matched = matched.with_for_update()
    rows = session.execute(matched, state.parameters or None, bind_arguments=state.bind_arguments).all()
    record(session, _keys(info, rows), info.cls)
    return None
