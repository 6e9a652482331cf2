"""The key scheme: owns how a row's Redis key is built and which keys belong to the cache.

A key is ``<prefix>:<table>:<model fingerprint>:<primary key>``. The primary key is encoded
without ambiguity: each value by its column's type (an int as digits, a string
percent-quoted, a UUID as hex, anything else as hex msgpack), composite keys joined by a
comma that no encoded value contains. Nothing outside this module builds, splits or
pattern-matches keys.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

from . import _codec

__all__ = ["KeyScheme", "PkEncoder", "PkPart", "Purge", "pk_encoder", "pk_part_function", "pk_typer", "pk_values"]

PkEncoder = Callable[[Any], "str | None"]
PkPart = Callable[[Sequence[Any]], "str | None"]


def _encode_int(value: Any) -> str | None:
    return str(value) if type(value) is int else None


# Quoted text values, remembered: the same hot keys (a slug, an email) are asked again and
# again, and quoting costs more than the rest of a key. Bounded; emptied when full.
_quoted: dict[str, str] = {}
_QUOTED_LIMIT: Final = 4096


def _encode_str(value: Any) -> str | None:
    if type(value) is not str:
        return None
    quoted = _quoted.get(value)
    if quoted is None:
        if len(_quoted) >= _QUOTED_LIMIT:
            _quoted.clear()
        quoted = _quoted[value] = quote(value, safe="")
    return quoted


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


def pk_encoder(python_type: type | None) -> PkEncoder:
    """How one primary-key column's values appear in keys; ``None`` for a value of another type."""
    if python_type is int:
        return _encode_int
    if python_type is str:
        return _encode_str
    if python_type is uuid.UUID:
        return _encode_uuid
    return _generic_encoder(python_type)


def _int_from_text(value: Any) -> Any:
    if type(value) is str and value.isascii() and value.lstrip("-").isdigit():
        number = int(value)
        if str(number) == value:  # exact: no sign, zeros or spaces the text would lose
            return number
    return None


def _uuid_from_text(value: Any) -> Any:
    if type(value) is str:
        try:
            return uuid.UUID(value)  # every form the database takes: hyphens, braces, urn
        except ValueError:
            return None
    return None


_FROM_TEXT: dict[type | None, Callable[[Any], Any]] = {int: _int_from_text, uuid.UUID: _uuid_from_text}


def pk_typer(python_types: Sequence[type | None]) -> Callable[[Sequence[Any]], list[Any] | None]:
    """The key's values in their columns' own types, from another form the database takes for
    them too (a UUID's string forms, an integer's digits) when the conversion is exact, so
    that one row has one key whatever form it is asked by; ``None`` when one does not convert."""
    convert = [_FROM_TEXT.get(python_type) for python_type in python_types]

    def typed(pk: Sequence[Any]) -> list[Any] | None:
        values = []
        for value, to_type, python_type in zip(pk, convert, python_types, strict=True):
            if to_type is None or type(value) is python_type:
                values.append(value)
                continue
            converted = to_type(value)
            if converted is None:
                return None
            values.append(converted)
        return values

    return typed


def pk_part_function(encoders: Sequence[PkEncoder]) -> PkPart:
    """The key's primary-key part from the key's values, or ``None`` when one is not cacheable."""
    if len(encoders) == 1:
        encode = encoders[0]
        return lambda pk: encode(pk[0])

    def composite(pk: Sequence[Any]) -> str | None:
        parts = []
        for encode, value in zip(encoders, pk, strict=True):
            part = encode(value)
            if part is None:
                return None
            parts.append(part)
        return ",".join(parts)

    return composite


_SCALARS: Final = frozenset({int, str, uuid.UUID})


def pk_values(names: Sequence[str], ident: Any) -> list[Any] | None:
    """The primary key's values from an identity as ``Session.get()`` takes it.

    A scalar, a tuple or list in key-column order, or a mapping by attribute name; ``None``
    when it has the wrong number of values or misses a name.
    """
    if type(ident) in _SCALARS:  # the usual get(Model, 1): no ABC check
        pk = [ident]
    elif isinstance(ident, (tuple, list)):
        pk = list(ident)
    elif isinstance(ident, Mapping):
        try:
            pk = [ident[name] for name in names]
        except KeyError:
            return None
    else:
        pk = [ident]
    return pk if len(pk) == len(names) else None


class Purge(str):
    """A SCAN pattern to evict at commit beside the keys: for a change whose keys cannot be
    named one by one."""

    __slots__ = ()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True, slots=True)
class KeyScheme:
    """The keys under one ``key_prefix``: every key the library writes starts with ``prefix:``."""

    prefix: str
    _stems: dict[tuple[str, bytes], str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # The stems of models kept near (``CacheConfig(near=True)``) seen so far.
    _near_stems: list[str] = field(default_factory=list, compare=False, hash=False, repr=False)

    def stem(self, table: str, fingerprint: bytes, near: bool = False) -> str:
        """Every key of one model's rows starts with this; a primary-key part completes it."""
        stem = self._stems.get((table, fingerprint))
        if stem is None:
            stem = self._stems[(table, fingerprint)] = f"{self.prefix}:{quote(table, safe='')}:{fingerprint.hex()}:"
        if near and stem not in self._near_stems:
            self._near_stems.append(stem)
        return stem

    def any_near(self, keys: Iterable[str]) -> bool:
        """Is one of ``keys`` a key of a model kept near (its stem seen so far)?"""
        if not self._near_stems:
            return False
        stems = tuple(self._near_stems)
        return any(key.startswith(stems) for key in keys)

    def owns(self, key: str) -> bool:
        """Is ``key`` one of ours? Only these are ever read, written or deleted."""
        return key.startswith(self.prefix + ":")

    @property
    def pattern(self) -> str:
        """A SCAN ``MATCH`` pattern for exactly the keys under the prefix, whatever it holds."""
        return _glob_escape(self.prefix) + ":*"

    def pattern_of(self, start: str) -> Purge:
        """A SCAN ``MATCH`` pattern for exactly the keys that begin with ``start`` (one of ours)."""
        return Purge(_glob_escape(start) + "*")
