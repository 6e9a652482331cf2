"""The model layer: owns what the cache knows of one model class (columns, primary key,
fingerprint) and how a cached row becomes a persistent instance, computed once per class.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import operator
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Column, Table, inspect
from sqlalchemy.orm import ColumnProperty, Mapper, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.types import Enum as SAEnum

from ._config import CacheConfig
from ._errors import ConfigurationError
from ._index import Index, python_type, row_index, unique_indexes
from ._keys import PkPart

__all__ = ["ModelInfo", "model_info"]

# Bump when the stored layout changes: old entries then live under other keys.
LAYOUT_VERSION: Final = 3


@dataclass(frozen=True, slots=True, eq=False)
class ModelInfo:
    """A cacheable model's layout: which columns, in what order, under which key."""

    cls: type
    mapper: Mapper[Any]
    config: CacheConfig
    table: str
    fingerprint: bytes
    attr_keys: tuple[str, ...]
    pk_positions: tuple[int, ...]
    pk_names: tuple[str, ...]  # the primary key's attribute names, in key order
    pk_part: PkPart  # the key's primary-key part of the key's values (`_keys`)
    pk_typed: Callable[[Sequence[Any]], list[Any] | None]  # the key's values in their columns' types
    primary: Index  # the primary key as a key's part
    uniques: dict[frozenset[str], Index]  # ``CacheConfig(unique=...)`` by attribute names
    lookup_names: tuple[str, ...]  # every attribute a unique lookup's key is made of
    enum_columns: tuple[tuple[int, type[enum.Enum]], ...]
    # Attribute keys in the order SQLAlchemy's loader fills ``__dict__`` (SQLModel serializes
    # in ``__dict__`` order, so a cached instance must be filled the same way), and a
    # function that takes their values from a decoded row in that order.
    fill_keys: tuple[str, ...]
    fill_values: Callable[[list[Any]], tuple[Any, ...]]
    identity_class: type
    identity_of: Callable[[list[Any]], tuple[Any, ...]]  # the primary key of a decoded row
    entry_length: int  # the fingerprint, the server lifetime, then the columns
    # Are all column values immutable (numbers, text, times, ...), so that one decoded row
    # may be shared by the instances of many sessions? Not with a JSON column: an in-place
    # change of one instance's dict must not reach another's.
    shareable: bool

    def pk_of(self, state_dict: dict[str, Any]) -> list[Any] | None:
        try:
            return [state_dict[name] for name in self.pk_names]
        except KeyError:
            return None

    def load_into(self, session: Session, values: list[Any]) -> Any:
        """A persistent instance of ``session``, made the way SQLAlchemy's loader makes one."""
        return self.load_rows(session, [values])[0]

    def load_rows(self, session: Session, rows: list[list[Any]]) -> list[Any]:
        """Persistent instances of ``session``, made the way SQLAlchemy's loader makes new ones.

        The steps are those of ``loading._instance`` for a row not yet in the identity map:
        a new instance and state, identity key, session, identity map, the column values,
        then the ``load`` event (``@reconstructor`` hooks; their query context is ``None``
        for a cache hit) and the session's ``loaded_as_persistent`` event. Like the loader,
        it commits nothing: a new state has no history. Unloaded attributes
        (relationships) stay absent, so they lazy-load as on a row from the database.
        """
        new_instance = self.mapper.class_manager.new_instance
        identity_class, identity_of, fill_keys, fill_values = (
            self.identity_class,
            self.identity_of,
            self.fill_keys,
            self.fill_values,
        )
        session_id = session.hash_key
        add_to_identity_map = session.identity_map._add_unpresent
        load_event = self.mapper.class_manager.dispatch.load
        persistent_event = session.dispatch.loaded_as_persistent
        instances = []
        for values in rows:
            instance = new_instance()
            state: InstanceState[Any] = instance_state(instance)
            key = (identity_class, identity_of(values), None)
            state.key = key
            state.identity_token = None
            state.session_id = session_id
            add_to_identity_map(state, key)
            instance.__dict__.update(zip(fill_keys, fill_values(values), strict=True))
            if load_event:
                load_event(state, None)
            if persistent_event:
                persistent_event(session, state)
            instances.append(instance)
        return instances


def _getter(positions: tuple[int, ...]) -> Callable[[list[Any]], tuple[Any, ...]]:
    """The items at ``positions`` of a list, as a tuple (``itemgetter`` runs in C)."""
    if len(positions) == 1:
        position = positions[0]
        return lambda values: (values[position],)
    return operator.itemgetter(*positions)


def _fingerprint(table: str, columns: Sequence[tuple[str, Column[Any]]]) -> bytes:
    described = repr(
        [
            LAYOUT_VERSION,
            table,
            [(key, col.name, repr(col.type), col.primary_key, col.nullable) for key, col in columns],
        ]
    )
    return hashlib.blake2b(described.encode(), digest_size=4).digest()


def _load_order(mapper: Mapper[Any], attr_keys: tuple[str, ...]) -> tuple[int, ...]:
    # The loader walks ``Mapper._prop_set``; fall back to declaration order without it.
    props = getattr(mapper, "_prop_set", None) or mapper.column_attrs
    position = {key: i for i, key in enumerate(attr_keys)}
    order = tuple(position[prop.key] for prop in props if prop.key in position)
    return order if len(order) == len(attr_keys) else tuple(range(len(attr_keys)))


def _build(cls: type, config: CacheConfig) -> ModelInfo:
    mapper: Mapper[Any] = inspect(cls)
    name = cls.__name__
    if mapper.inherits is not None or mapper.polymorphic_on is not None:
        raise ConfigurationError(
            f"{name} has __cache_config__ but uses mapper inheritance, which sqlmodel-cache "
            "does not cache; remove __cache_config__ from it"
        )
    table = mapper.local_table
    if not isinstance(table, Table):
        raise ConfigurationError(f"{name} is not mapped to a table; remove __cache_config__ from it")
    columns: list[tuple[str, Column[Any]]] = []
    for prop in mapper.column_attrs:
        if not isinstance(prop, ColumnProperty) or len(prop.columns) != 1:
            raise ConfigurationError(f"{name}.{prop.key} maps several columns; remove __cache_config__ from {name}")
        column = prop.columns[0]
        if not isinstance(column, Column) or column.table is not table:
            raise ConfigurationError(
                f"{name}.{prop.key} is not a plain column of table {table.name!r} "
                f"(a column_property or expression); remove __cache_config__ from {name}"
            )
        columns.append((prop.key, column))
    position: dict[Any, int] = {col: i for i, (_, col) in enumerate(columns)}
    try:
        pk_positions = tuple(position[col] for col in mapper.primary_key)
    except KeyError:
        raise ConfigurationError(f"{name}'s primary key is not made of its own mapped columns") from None
    enum_columns = tuple(
        (i, col.type.enum_class)
        for i, (_, col) in enumerate(columns)
        if isinstance(col.type, SAEnum) and col.type.enum_class is not None
    )
    attr_keys = tuple(key for key, _ in columns)
    load_order = _load_order(mapper, attr_keys)
    table_name = table.name if getattr(table, "schema", None) is None else f"{table.schema}.{table.name}"
    pk_names = tuple(attr_keys[i] for i in pk_positions)
    primary = row_index(pk_names, pk_positions, [columns[i][1] for i in pk_positions])
    column_of = {key: (i, column) for i, (key, column) in enumerate(columns)}
    uniques = unique_indexes(name, table, config.unique_sets, column_of)
    return ModelInfo(
        cls=cls,
        mapper=mapper,
        config=config,
        table=table_name,
        fingerprint=_fingerprint(table_name, columns),
        attr_keys=attr_keys,
        pk_positions=pk_positions,
        pk_names=pk_names,
        pk_part=primary.encode,
        pk_typed=primary.typed,
        primary=primary,
        uniques=uniques,
        lookup_names=tuple(dict.fromkeys(name for index in uniques.values() for name in index.names)),
        enum_columns=enum_columns,
        fill_keys=tuple(attr_keys[position] for position in load_order),
        fill_values=_getter(load_order),
        identity_class=mapper._identity_class,
        identity_of=_getter(pk_positions),
        entry_length=len(attr_keys) + 2,
        shareable=all(_immutable(column) for _, column in columns),
    )


# Python types whose values cannot change in place.
_IMMUTABLE: Final = (int, float, str, bytes, decimal.Decimal, uuid.UUID, dt.date, dt.time, dt.timedelta, enum.Enum)


def _immutable(column: Column[Any]) -> bool:
    found = python_type(column)
    return found is not None and issubclass(found, _IMMUTABLE)


_infos: dict[type, ModelInfo | None] = {}
_infos_lock = threading.Lock()


def model_info(cls: type) -> ModelInfo | None:
    """The model's layout if it opted in with an enabled ``__cache_config__``, else ``None``."""
    try:
        return _infos[cls]
    except KeyError:
        pass
    config = getattr(cls, "__cache_config__", None)
    info: ModelInfo | None
    if config is None:
        info = None
    elif not isinstance(config, CacheConfig):
        raise ConfigurationError(
            f"{cls.__name__}.__cache_config__ must be a sqlmodel_cache.CacheConfig, got {type(config).__name__}"
        )
    elif not config.enabled:
        info = None
    else:
        info = _build(cls, config)
    with _infos_lock:
        _infos[cls] = info
    return info
