"""Call options: owns the keyword arguments of a cached read as ``Session.get`` takes them,
what a call that bypasses the cache is given instead, and the TTL a call asks for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict, TypeVar, cast

from sqlalchemy.orm._typing import OrmExecuteOptionsParameter
from sqlalchemy.orm.interfaces import ORMOption
from sqlalchemy.sql.selectable import ForUpdateParameter

from ._errors import ConfigurationError
from ._model import ModelInfo
from ._runtime import Runtime

__all__ = ["GetOptions", "SyncGetOptions", "plain_get_options", "ttl_ms"]


class GetOptions(TypedDict, total=False):
    """The keyword arguments of ``AsyncSession.get`` (its own and `CachedSession`'s)."""

    options: Sequence[ORMOption] | None
    populate_existing: bool | None
    with_for_update: ForUpdateParameter
    identity_token: Any | None
    execution_options: OrmExecuteOptionsParameter


class SyncGetOptions(GetOptions, total=False):
    """The keyword arguments of ``Session.get``."""

    bind_arguments: Any | None


_Options = TypeVar("_Options", bound=GetOptions)


def plain_get_options(options: _Options) -> _Options:
    """The arguments for the plain ``get()`` of a call the cache does not take: a row read
    under lock must not be an older copy."""
    if options.get("with_for_update") not in (None, False) and options.get("populate_existing") is None:
        return cast("_Options", {**options, "populate_existing": True})
    return options


def ttl_ms(info: ModelInfo, runtime: Runtime, execution_options: Mapping[str, Any]) -> int:
    """The call's TTL in milliseconds: ``execution_options={"cache_ttl": s}``, the model's, or
    the default."""
    ttl = execution_options.get("cache_ttl")
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise ConfigurationError(
                f'execution_options={{"cache_ttl": ...}} must be a positive number of seconds (an int), got {ttl!r}'
            )
        return ttl * 1000
    return (info.config.ttl or runtime.settings.default_ttl) * 1000
