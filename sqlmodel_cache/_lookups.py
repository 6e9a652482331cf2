"""Lookup evictions: owns which unique-lookup keys (``CacheConfig(unique=...)``) a change evicts.

A lookup key holds the row's whole entry, so any change to the row evicts its lookup keys,
under the values the row had before the change and those it has after. The values before a
flush are taken just before it (`remember_old_values`), with one SELECT per model for the
rows whose values the session never loaded (an expired instance deleted or changed). Where a
row's old values cannot be known (a cascade changed an unloaded row during the flush), every
lookup key of the model is purged instead: slower, never stale.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE
from sqlalchemy.orm.state import InstanceState

from ._index import LOOKUP_MARK
from ._keys import Purge
from ._model import ModelInfo, model_info
from ._runtime import Runtime

__all__ = ["every_lookup", "lookup_keys", "lookup_keys_of_flush", "read_lookup_values", "remember_old_values"]

Row = Mapping[str, Any]


def lookup_keys(runtime: Runtime, info: ModelInfo, rows: Iterable[Row]) -> set[str]:
    """The lookup keys of rows with these values (each row: every name in ``lookup_names``)."""
    stem = runtime.stem(info)
    keys = set()
    for row in rows:
        for index in info.uniques.values():
            part = index.of_dict(row)
            if part is not None:  # else a NULL or a value no key is made of
                keys.add(stem + part)
    return keys


def every_lookup(runtime: Runtime, info: ModelInfo) -> Purge:
    """All of the model's lookup keys, for a change whose rows' values are not known."""
    return Purge(runtime.keys.pattern_of(runtime.stem(info) + LOOKUP_MARK))


def _old_row(state: InstanceState[Any], names: Sequence[str]) -> dict[str, Any] | None:
    """The values the row had in the database before this flush, if the session knows them."""
    committed, current = state.committed_state, state.dict
    row = {}
    for name in names:
        if name in committed:
            value = committed[name]
            if value is NO_VALUE or value is NEVER_SET:
                return None  # changed before it was ever loaded
        elif name in current:
            value = current[name]
        else:
            return None  # unloaded (expired)
        row[name] = value
    return row


def read_lookup_values(session: Session, info: ModelInfo, pks: Sequence[Sequence[Any]]) -> dict[tuple[Any, ...], Row]:
    """The lookup columns' values of these rows, by primary key, as this transaction sees them."""
    pk_columns = list(info.mapper.primary_key)
    attributes = [getattr(info.cls, name) for name in info.lookup_names]
    found: dict[tuple[Any, ...], Row] = {}
    for start in range(0, len(pks), 500):
        chunk = [tuple(pk) for pk in pks[start : start + 500]]
        matched = tuple_(*pk_columns).in_(chunk) if len(pk_columns) > 1 else pk_columns[0].in_([pk[0] for pk in chunk])
        statement = select(*pk_columns, *attributes).where(matched)
        width = len(pk_columns)
        for row in session.execute(statement, bind_arguments={"mapper": info.mapper}):
            found[tuple(row[:width])] = dict(zip(info.lookup_names, row[width:], strict=True))
    return found


def remember_old_values(session: Session, remembered: dict[InstanceState[Any], Row]) -> None:
    """Before a flush: the lookup values of the rows it will change or delete."""
    unknown: dict[ModelInfo, list[InstanceState[Any]]] = {}
    for instance in (*session.dirty, *session.deleted):
        state = instance_state(instance)
        info = model_info(state.class_)
        if info is None or not info.uniques or state.key is None or state in remembered:
            continue
        row = _old_row(state, info.lookup_names)
        if row is None:
            unknown.setdefault(info, []).append(state)
        else:
            remembered[state] = row
    for info, states in unknown.items():
        identities = [state.key[1] for state in states if state.key is not None]
        found = read_lookup_values(session, info, identities)
        for state in states:
            values = found.get(tuple(state.key[1])) if state.key is not None else None
            if values is not None:
                remembered[state] = values


def lookup_keys_of_flush(
    session: Session,
    runtime: Runtime,
    flushed: Iterable[tuple[InstanceState[Any], bool]],
    remembered: dict[InstanceState[Any], Row],
) -> tuple[set[str], set[type]]:
    """After a flush: the lookup keys of the rows it inserted, changed or deleted (``flushed``:
    each state with whether it was deleted), old values and new; and the models some of whose
    rows' keys could not be named (their lookups are purged)."""
    keys: set[str] = set()
    unnamed: set[type] = set()
    unloaded: dict[ModelInfo, list[list[Any]]] = {}
    new_states = session.new
    for state, deleted in flushed:
        info = model_info(state.class_)
        if info is None or not info.uniques:
            continue
        names = info.lookup_names
        rows: list[Row] = []
        old: Row | None = remembered.pop(state, None)
        if old is None and state.obj() not in new_states:
            old = _old_row(state, names)  # a row the flush itself changed (a cascade)
            if old is None:
                keys.add(every_lookup(runtime, info))
                unnamed.add(info.cls)
        if old is not None:
            rows.append(old)
        if not deleted:
            current = state.dict
            if all(name in current for name in names):
                rows.append({name: current[name] for name in names})
            else:  # set by the database (a default) and not fetched back: read it
                pk = info.pk_of(current)
                if pk is None:
                    keys.add(every_lookup(runtime, info))
                    unnamed.add(info.cls)
                else:
                    unloaded.setdefault(info, []).append(pk)
        keys |= lookup_keys(runtime, info, rows)
    for info, pks in unloaded.items():
        keys |= lookup_keys(runtime, info, read_lookup_values(session, info, pks).values())
    return keys, unnamed
