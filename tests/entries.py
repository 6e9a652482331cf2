"""Reading cache entries in tests: the one place tests look inside the entry format.

The library has no public decoder of entries (applications never need one); tests that
check what Redis holds decode it here.
"""

from __future__ import annotations

from typing import Any

from sqlmodel_cache import _codec
from sqlmodel_cache._entry import decode_entry
from sqlmodel_cache._model import model_info


def row_in(raw: bytes | None, model: type, pk: Any) -> dict[str, Any] | None:
    """The row an entry read at ``model``'s key for ``pk`` holds, or ``None`` (empty, lease, other)."""
    if raw is None or raw.startswith(b"\x00"):
        return None
    info = model_info(model)
    assert info is not None
    part = info.pk_part(pk if isinstance(pk, tuple) else (pk,))
    assert part is not None
    lifetime = _codec.unpack(raw)[1]  # whichever server lifetime stored it
    values = decode_entry(info, raw, part, lifetime)
    return dict(zip(info.attr_keys, values, strict=True)) if isinstance(values, list) else None


def lookup_row_in(raw: bytes | None, model: type, **columns: Any) -> dict[str, Any] | None:
    """The row an entry read at ``model``'s unique lookup key for ``columns`` holds, or ``None``."""
    if raw is None or raw.startswith(b"\x00"):
        return None
    info = model_info(model)
    assert info is not None
    index = info.uniques[frozenset(columns)]
    part = index.part([columns[name] for name in index.names])
    assert part is not None
    values = decode_entry(info, raw, part, _codec.unpack(raw)[1], index)
    return dict(zip(info.attr_keys, values, strict=True)) if isinstance(values, list) else None
