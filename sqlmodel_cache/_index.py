"""Indexes: owns the ways a key names one row of a model, its primary key or a unique column
set (``CacheConfig(unique=...)``), and the check that the table really makes a set unique.

A key is the model's stem followed by an index's part: the encoded primary key, or
``@<columns>:<encoded values>`` for a unique column set, which no primary-key part can be
(an encoded value never holds ``@``). Every index can tell the part of a row it holds, so
that an entry is served, and published, only under the key of the values the row really has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from sqlalchemy import Column, PrimaryKeyConstraint, Table, UniqueConstraint
from sqlalchemy import Index as TableIndex
from sqlalchemy.types import CHAR, String, TypeDecorator

from ._config import CacheConfig
from ._errors import ConfigurationError
from ._keys import PkPart, pk_encoder, pk_part_function, pk_typer

__all__ = ["LOOKUP_MARK", "Index", "declared_set", "python_type", "row_index", "unique_indexes"]

# Begins the part of every unique lookup's key, after the model's stem.
LOOKUP_MARK = "@"

# The values of a decoded row (in the model's column order) to the part of the key it belongs at.
RowPart = Callable[[Sequence[Any]], "str | None"]


def python_type(column: Column[Any]) -> type | None:
    """The column's Python type, looking through TypeDecorators (which report ``object``)."""
    sa_type: Any = column.type
    while isinstance(sa_type, TypeDecorator):
        sa_type = sa_type.impl_instance
    try:
        found: type = sa_type.python_type
    except NotImplementedError:
        return None
    return None if found is object else found


@dataclass(frozen=True, slots=True, eq=False)
class Index:
    """One way of naming a row in a key: its columns, and how their values become the part."""

    names: tuple[str, ...]  # attribute names, in key order
    positions: tuple[int, ...]  # the columns' positions in the model's column order
    prefix: str  # starts every part of this index ("" for the primary key)
    encode: PkPart  # the values, in key order, to the encoded part after the prefix
    typed: Callable[[Sequence[Any]], list[Any] | None]  # values in their columns' own types
    of_row: RowPart  # a decoded row's part
    # May "no row has these values" be cached? Not where the database may match other
    # spellings of a value (a collation, a blank-padded CHAR): an insert of another spelling
    # would not evict it.
    remembers_absence: bool

    def part(self, values: Sequence[Any]) -> str | None:
        encoded = self.encode(values)
        return None if encoded is None else self.prefix + encoded

    def keyed(self, values: list[Any]) -> tuple[list[Any], str] | None:
        """The values in their columns' own types and their part: as given when they have
        a part, else converted when the conversion is exact (``"1"`` for an int column);
        ``None`` when neither."""
        part = self.part(values)
        if part is not None:
            return values, part
        typed = self.typed(values)
        part = self.part(typed) if typed is not None else None
        return None if typed is None or part is None else (typed, part)

    def of_dict(self, state_dict: Mapping[str, Any]) -> str | None:
        """The part of a loaded instance's values (``None`` if one is unloaded or uncacheable)."""
        try:
            values = [state_dict[name] for name in self.names]
        except KeyError:
            return None
        return self.part(values)


def _build(names: tuple[str, ...], positions: tuple[int, ...], columns: Sequence[Column[Any]], prefix: str) -> Index:
    encode = pk_part_function([pk_encoder(python_type(column)) for column in columns])
    if prefix:

        def of_row(row: Sequence[Any]) -> str | None:
            encoded = encode([row[position] for position in positions])
            return None if encoded is None else prefix + encoded

    elif len(positions) == 1:
        position = positions[0]
        single = pk_encoder(python_type(columns[0]))

        def of_row(row: Sequence[Any]) -> str | None:
            return single(row[position])

    else:

        def of_row(row: Sequence[Any]) -> str | None:
            return encode([row[position] for position in positions])

    return Index(
        names=names,
        positions=positions,
        prefix=prefix,
        encode=encode,
        typed=pk_typer([python_type(column) for column in columns]),
        of_row=of_row,
        remembers_absence=not any(_matches_other_spellings(column) for column in columns),
    )


def row_index(names: tuple[str, ...], positions: tuple[int, ...], columns: Sequence[Column[Any]]) -> Index:
    """The primary key's index."""
    return _build(names, positions, columns, "")


def _matches_other_spellings(column: Column[Any]) -> bool:
    sa_type: Any = column.type
    while isinstance(sa_type, TypeDecorator):
        sa_type = sa_type.impl_instance
    if isinstance(sa_type, CHAR) or type(sa_type).__name__.upper() == "CITEXT":
        return True
    return isinstance(sa_type, String) and sa_type.collation is not None


def _unique_sets(table: Table) -> list[frozenset[Column[Any]]]:
    """The column sets the table keeps unique over all its rows."""
    found: list[frozenset[Column[Any]]] = []
    for constraint in table.constraints:
        if isinstance(constraint, (UniqueConstraint, PrimaryKeyConstraint)) and len(constraint.columns):
            found.append(frozenset(constraint.columns))
    for index in table.indexes:
        partial = any(key.endswith("_where") and value is not None for key, value in index.dialect_kwargs.items())
        if (
            isinstance(index, TableIndex)
            and index.unique
            and not partial
            and all(isinstance(expression, Column) for expression in index.expressions)  # not lower(email)
        ):
            found.append(frozenset(index.columns))
    found.extend(frozenset([column]) for column in table.columns if column.unique)
    return found


def _describe(columns: frozenset[Column[Any]]) -> str:
    return "(" + ", ".join(sorted(column.name for column in columns)) + ")"


def unique_indexes(
    model: str, table: Table, sets: Sequence[tuple[str, ...]], column_of: Mapping[str, tuple[int, Column[Any]]]
) -> dict[frozenset[str], Index]:
    """The indexes of ``CacheConfig(unique=...)``; a `ConfigurationError` naming the model and
    the columns for a set the table does not keep unique."""
    indexes: dict[frozenset[str], Index] = {}
    unique = _unique_sets(table)
    for names in sets:
        unknown = [name for name in names if name not in column_of]
        if unknown:
            raise ConfigurationError(
                f"{model}: CacheConfig(unique=...) names {', '.join(map(repr, unknown))}, which is not a column "
                f"attribute of {model} (its columns: {', '.join(column_of)})"
            )
        columns = [column_of[name][1] for name in names]
        if not any(covered <= frozenset(columns) for covered in unique):
            known = ", ".join(sorted(map(_describe, unique))) or "none"
            raise ConfigurationError(
                f"{model}: CacheConfig(unique=...) names {names!r}, but no unique constraint or unique index of "
                f"table {table.name!r} covers those columns (the table's unique column sets: {known}); declare one "
                "(Field(unique=True), or UniqueConstraint(...) in __table_args__) or remove the set"
            )
        label = ",".join(quote(name, safe="") for name in names)
        positions = tuple(column_of[name][0] for name in names)
        indexes[frozenset(names)] = _build(names, positions, columns, f"{LOOKUP_MARK}{label}:")
    return indexes


def declared_set(entity: Any, columns: Mapping[str, Any]) -> frozenset[str]:
    """The declared unique column set that ``columns`` name exactly; an error naming the
    declared sets otherwise."""
    config = getattr(entity, "__cache_config__", None)
    name = getattr(entity, "__name__", repr(entity))
    sets = config.unique_sets if isinstance(config, CacheConfig) else ()
    if not sets:
        raise ConfigurationError(
            f"get_by({name}, ...) needs unique column sets declared on the model, e.g. "
            f'__cache_config__ = CacheConfig(unique=("email",)); {name} declares none'
        )
    asked = frozenset(columns)
    for names in sets:
        if frozenset(names) == asked:
            return asked
    declared = "; ".join(", ".join(names) for names in sets)
    raise TypeError(
        f"get_by({name}, {', '.join(sorted(columns)) or 'no columns'}): give exactly one declared "
        f"unique column set of {name} as keyword arguments ({declared})"
    )
