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
from sqlalchemy.orm import ORMExecuteState, QueryableAttribute, Session
from sqlalchemy.sql.elements import BindParameter, ClauseElement, TextClause

from ._eviction import row_keys
from ._keys import KeyScheme
from ._lookups import every_lookup, lookup_keys, read_lookup_values
from ._model import ModelInfo, model_info
from ._runtime import Runtime, active
from ._stats import logger

__all__ = ["track_statement"]

Record = Callable[[Session, set[str], "KeyScheme | None", "type | None"], None]

_WRITE_VERBS = ("insert", "update", "delete", "merge", "upsert", "replace", "call", "truncate", "alter", "drop")


class _Changes:
    """The keys a statement's changed rows are cached under: by primary key and by lookup."""

    __slots__ = ("info", "keys", "runtime")

    def __init__(self, runtime: Runtime, info: ModelInfo) -> None:
        self.runtime, self.info = runtime, info
        self.keys: set[str] = set()

    def rows(self, pks: Iterable[Sequence[Any]]) -> None:
        self.keys |= row_keys(self.runtime, self.info, pks)

    def lookups(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self.keys |= lookup_keys(self.runtime, self.info, rows)

    def unknown_lookups(self) -> None:
        """Some changed row's lookup values are not known: every lookup key of the model goes."""
        self.keys.add(every_lookup(self.runtime, self.info))


def _attribute(info: ModelInfo, column: Any) -> str | None:
    """The attribute name of a column a statement sets (a name, a column or an attribute)."""
    if isinstance(column, str):
        return column
    if isinstance(column, QueryableAttribute):
        return column.key if column.class_ is info.cls else None
    if getattr(column, "table", None) is not info.mapper.local_table:
        return None
    return str(info.mapper.get_property_by_column(column).key)


def _literal(value: Any) -> Any:
    if isinstance(value, BindParameter):
        return value.value
    return _UNKNOWN if isinstance(value, ClauseElement) else value


def _given_rows(state: ORMExecuteState, info: ModelInfo) -> list[dict[str, Any]]:
    """The rows an INSERT (or an UPDATE by primary key) gives, by attribute name: its
    parameters, else its ``values()``; a value that is an SQL expression is `_UNKNOWN`."""
    parameters = state.parameters
    if parameters:
        given = parameters if isinstance(parameters, list) else [parameters]
        return [dict(row) for row in given if isinstance(row, Mapping)]
    statement = state.statement
    multi = getattr(statement, "_multi_values", None) or ()
    single = getattr(statement, "_values", None)
    rows = [row for values in multi for row in values] or ([single] if single else [])
    named = []
    for row in rows:
        attributes = {_attribute(info, column): _literal(value) for column, value in dict(row).items()}
        named.append({name: value for name, value in attributes.items() if name is not None})
    return named


def _pk_of(info: ModelInfo, row: Mapping[str, Any]) -> list[Any] | None:
    pk = [row.get(name, _UNKNOWN) for name in info.pk_names]
    return None if any(value is _UNKNOWN for value in pk) else pk


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
    runtime = active()
    if runtime is None:
        record(state.session, set(), None, info.cls)
        return None
    changes = _Changes(runtime, info)
    if state.is_insert or state.is_executemany:
        result = _given(state, info, changes)
    else:
        result = _matched(state, info, changes)
    record(state.session, changes.keys, runtime.keys, info.cls)
    return result


def _given(state: ORMExecuteState, info: ModelInfo, changes: _Changes) -> Any:
    """Bulk INSERT (including upserts) and UPDATE by primary key: they name their rows. The
    statement runs first, as the keys belong to the transaction it begins, except that an
    UPDATE's rows' lookup values are read before it changes them."""
    rows = _given_rows(state, info)
    row_pks = [_pk_of(info, row) for row in rows]
    pks = [pk for pk in row_pks if pk is not None]
    names = info.lookup_names
    old = read_lookup_values(state.session, info, pks) if names and state.is_update else {}
    result = state.invoke_statement()
    changes.rows(pks)
    if not names:
        return result
    if state.is_update:
        changes.lookups(old.values())
        for row, pk in zip(rows, row_pks, strict=True):
            before = old.get(tuple(pk)) if pk is not None else None
            if before is not None:
                changes.lookups([{**before, **{name: row[name] for name in names if name in row}}])
        return result
    if getattr(state.statement, "_post_values_clause", None) is not None:
        changes.unknown_lookups()  # an upsert may have changed a row it did not name
    unread = []
    for row in rows:
        if all(row.get(name, _UNKNOWN) is not _UNKNOWN for name in names):
            changes.lookups([row])
        elif (pk := _pk_of(info, row)) is not None:
            unread.append(pk)  # a value the database made (a default): read it back
        else:
            changes.unknown_lookups()
    if unread:
        changes.lookups(read_lookup_values(state.session, info, unread).values())
    if not rows:
        changes.unknown_lookups()  # INSERT ... SELECT
    return result


def _matched(state: ORMExecuteState, info: ModelInfo, changes: _Changes) -> Any:
    """Bulk UPDATE / DELETE by criteria: the matched rows' keys before, and after."""
    session, statement = state.session, state.statement
    dialect = _dialect(state)
    has_returning = dialect.update_returning if state.is_update else dialect.delete_returning
    returns_keys = has_returning and not getattr(statement, "_returning", ())  # else its own RETURNING
    set_names = _set_attributes(statement, info) if state.is_update else set()
    new_pks = _new_primary_keys(statement, info) if state.is_update else None
    names = info.lookup_names
    width = len(info.pk_names)
    old_rows: list[Any] = []
    if new_pks is not None or not returns_keys or names:
        # The rows as matched before the statement moves or changes them: their keys now.
        criteria = getattr(statement, "whereclause", None)
        matched = select(*info.mapper.primary_key, *(getattr(info.cls, name) for name in names))
        if criteria is not None:
            matched = matched.where(criteria)
        if dialect.name not in ("sqlite",):
            matched = matched.with_for_update()
        old_rows = list(session.execute(matched, state.parameters or None, bind_arguments=state.bind_arguments))
    old_pks = [tuple(row[:width]) for row in old_rows]
    # A moved row's new key: a literal from the statement, else from its RETURNING (which
    # leaves out the columns the statement sets to literals).
    moved = [_moved(pk, new_pks) for pk in old_pks] if new_pks else []
    known = [pk for pk in moved if pk is not None]
    returned: list[Any] = []
    if returns_keys:
        with_keys = statement.return_defaults(*info.mapper.primary_key)  # type: ignore[attr-defined]
        result = state.invoke_statement(statement=with_keys)
        returned = [tuple(row) for row in getattr(result, "returned_defaults_rows", None) or []]
    else:
        result = state.invoke_statement()
        if len(known) < len(moved):
            logger.warning(
                "a bulk UPDATE of %s sets its primary key to an expression this database cannot return; "
                "the rows' new keys are not evicted (their TTL bounds them)",
                info.table,
            )
    changes.rows([*old_pks, *known, *returned])
    if not names:
        return result
    changes.lookups(dict(zip(names, row[width:], strict=True)) for row in old_rows)
    before = set(old_pks)
    unmatched = [pk for pk in returned if pk not in before]  # matched only by the statement itself
    if state.is_delete:
        if unmatched:
            changes.unknown_lookups()
        return result
    if new_pks is None and not set_names & set(names):
        # Lookup values unchanged: the rows matched only by the statement have them still.
        changes.lookups(read_lookup_values(session, info, unmatched).values())
        return result
    if unmatched or len(known) < len(moved):
        changes.unknown_lookups()
    after = [*known, *returned] if new_pks else [*old_pks, *returned]
    changes.lookups(read_lookup_values(session, info, after).values())
    return result


def _set_attributes(statement: Any, info: ModelInfo) -> set[str]:
    """The attribute names an UPDATE sets."""
    values = dict(getattr(statement, "_ordered_values", None) or ()) or dict(getattr(statement, "_values", None) or {})
    return {name for name in (_attribute(info, column) for column in values) if name is not None}


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
