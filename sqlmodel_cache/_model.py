"""Everything the cache needs to know about one model, computed once per class.

Key layout, row layout and instance construction live here so that the sync and async
sessions (and eviction) share one definition of "the entry for this row".
"""

from __future__ import annotations

import enum
import hashlib
import operator
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

import msgpack
from sqlalchemy import Column, Table, inspect
from sqlalchemy.orm import ColumnProperty, Mapper, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.orm.state import InstanceState
from sqlalchemy.types import Enum as SAEnum
from sqlalchemy.types import TypeDecorator

from . import _codec
from ._config import CacheConfig
from ._errors import ConfigurationError

__all__ = ["ModelInfo", "model_info"]

# Bump when the stored layout changes: old entries then live under other keys.
LAYOUT_VERSION: Final = 2

PkEncoder = Callable[[Any], "str | None"]


def _encode_int(value: Any) -> str | None:
    return str(value) if type(value) is int else None


def _encode_str(value: Any) -> str | None:
    return quote(value, safe="") if type(value) is str else None


def _encode_uuid(value: Any) -> str | None:
    return value.hex if isinstance(value, uuid.UUID) else None


def _generic_encoder(python_type: type | None) -> PkEncoder:
    def encode(value: Any) -> str | None:
        if python_type is not None and type(value) is not python_type:
            return None
        try:
            return _codec.pack([value]).hex()
        except (TypeError, ValueError, OverflowError):
            return None

    return encode


def _python_type(column: Column[Any]) -> type | None:
    """The column's Python type, looking through TypeDecorators (which report ``object``)."""
    sa_type: Any = column.type
    while isinstance(sa_type, TypeDecorator):
        sa_type = sa_type.impl_instance
    try:
        python_type: type = sa_type.python_type
    except NotImplementedError:
        return None
    return None if python_type is object else python_type


def _pk_encoder(column: Column[Any]) -> PkEncoder:
    python_type = _python_type(column)
    if python_type is int:
        return _encode_int
    if python_type is str:
        return _encode_str
    if python_type is uuid.UUID:
        return _encode_uuid
    return _generic_encoder(python_type)


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
    pk_encoders: tuple[PkEncoder, ...]
    enum_columns: tuple[tuple[int, type[enum.Enum]], ...]
    # Attribute keys in the order SQLAlchemy's loader fills ``__dict__`` (SQLModel serializes
    # in ``__dict__`` order, so a cached instance must be filled the same way), and a
    # function that takes their values from a decoded row in that order.
    fill_keys: tuple[str, ...]
    fill_values: Callable[[list[Any]], tuple[Any, ...]]
    identity_class: type
    identity_of: Callable[[list[Any]], tuple[Any, ...]]  # the primary key of a decoded row
    entry_length: int  # the fingerprint, then the columns

    def key_stem(self, prefix: str) -> str:
        return f"{prefix}:{quote(self.table, safe='')}:{self.fingerprint.hex()}:"

    def pk_part(self, pk: Sequence[Any]) -> str | None:
        """The key's primary-key part, or ``None`` when a value is not of the column's type."""
        if len(self.pk_encoders) == 1:
            return self.pk_encoders[0](pk[0])
        parts = []
        for encode, value in zip(self.pk_encoders, pk, strict=True):
            part = encode(value)
            if part is None:
                return None
            parts.append(part)
        return ",".join(parts)

    def encode_row(self, state_dict: dict[str, Any]) -> bytes | None:
        """The entry for a loaded row, or ``None`` when a column is unloaded or unstorable."""
        try:
            values: list[Any] = [self.fingerprint, *map(state_dict.__getitem__, self.attr_keys)]
        except KeyError:
            return None
        for position, enum_cls in self.enum_columns:
            member = values[position + 1]
            if member is not None:
                if type(member) is not enum_cls:
                    return None
                values[position + 1] = msgpack.ExtType(_codec.ENUM_CODE, member.name.encode())
        try:
            return _codec.pack(values)
        except (TypeError, ValueError, OverflowError):
            return None

    def decode_row(self, data: bytes, pk_part: str) -> list[Any] | None:
        """Column values from an entry, or ``None`` if it is not this model's entry for ``pk_part``."""
        try:
            values = _codec.unpack(data)
        except _codec.DecodeError:
            return None
        if type(values) is not list or len(values) != self.entry_length or values[0] != self.fingerprint:
            return None
        del values[0]
        for position, enum_cls in self.enum_columns:
            name = values[position]
            if name is not None:
                if type(name) is not _codec.EnumName:
                    return None
                try:
                    values[position] = enum_cls[name]
                except KeyError:
                    return None
        if _codec.EnumName in map(type, values):  # an enum name in a column that is no enum
            return None
        if len(self.pk_positions) == 1:
            if self.pk_encoders[0](values[self.pk_positions[0]]) != pk_part:
                return None
        elif self.pk_part([values[i] for i in self.pk_positions]) != pk_part:
            return None
        return values

    def pk_of(self, state_dict: dict[str, Any]) -> list[Any] | None:
        try:
            return [state_dict[self.attr_keys[i]] for i in self.pk_positions]
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
    return ModelInfo(
        cls=cls,
        mapper=mapper,
        config=config,
        table=table_name,
        fingerprint=_fingerprint(table_name, columns),
        attr_keys=attr_keys,
        pk_positions=pk_positions,
        pk_encoders=tuple(_pk_encoder(columns[i][1]) for i in pk_positions),
        enum_columns=enum_columns,
        fill_keys=tuple(attr_keys[position] for position in load_order),
        fill_values=_getter(load_order),
        identity_class=mapper._identity_class,
        identity_of=_getter(pk_positions),
        entry_length=len(attr_keys) + 1,
    )


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
