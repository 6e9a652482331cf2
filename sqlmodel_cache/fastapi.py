"""FastAPI: owns the dependencies that yield a cached session per request.

Give the app its engine once (in the lifespan, next to ``SQLModelCache.configure()``), then
annotate route parameters with `CachedSessionDep` or `AsyncCachedSessionDep`::

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        SQLModelCache.configure(transport=RedisSyncTransport(redis.Redis.from_url(url)))
        set_engine(app, engine)
        yield
        SQLModelCache.reset()

    @app.get("/heroes/{hero_id}")
    def read_hero(hero_id: int, session: CachedSessionDep) -> Hero: ...
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, Request
from sqlalchemy import Engine

from ._errors import ConfigurationError
from ._session import CachedSession

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._async_session import AsyncCachedSession

__all__ = [
    "AsyncCachedSessionDep",
    "CachedSessionDep",
    "get_async_cached_session",
    "get_cached_session",
    "set_engine",
]

_STATE_ATTRIBUTE = "sqlmodel_cache_engine"


def set_engine(app: FastAPI, engine: Engine | AsyncEngine) -> None:
    """Keep ``engine`` on ``app.state`` for the session dependencies."""
    setattr(app.state, _STATE_ATTRIBUTE, engine)


def _engine(request: Request) -> Any:
    engine = getattr(request.app.state, _STATE_ATTRIBUTE, None)
    if engine is None:
        raise ConfigurationError(
            "no engine for the cached session dependency; call "
            "sqlmodel_cache.fastapi.set_engine(app, engine) in the app's lifespan"
        )
    return engine


def get_cached_session(request: Request) -> Iterator[CachedSession]:
    """A `CachedSession` for one request, closed when the response is sent."""
    engine = _engine(request)
    if not isinstance(engine, Engine):
        raise ConfigurationError(
            f"CachedSessionDep needs a sync Engine but the app has a {type(engine).__name__}; "
            "use AsyncCachedSessionDep with an AsyncEngine"
        )
    with CachedSession(engine) as session:
        yield session


async def get_async_cached_session(request: Request) -> AsyncIterator[AsyncCachedSession]:
    """An `AsyncCachedSession` for one request, closed when the response is sent."""
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ._async_session import AsyncCachedSession

    engine = _engine(request)
    if not isinstance(engine, AsyncEngine):
        raise ConfigurationError(
            f"AsyncCachedSessionDep needs an AsyncEngine but the app has a {type(engine).__name__}; "
            "use CachedSessionDep with a sync Engine"
        )
    async with AsyncCachedSession(engine) as session:
        yield session


CachedSessionDep = Annotated[CachedSession, Depends(get_cached_session)]

if TYPE_CHECKING:
    AsyncCachedSessionDep = Annotated[AsyncCachedSession, Depends(get_async_cached_session)]


def __getattr__(name: str) -> Any:
    # Built on first use: the async session needs the optional greenlet dependency.
    if name == "AsyncCachedSessionDep":
        from ._async_session import AsyncCachedSession

        return Annotated[AsyncCachedSession, Depends(get_async_cached_session)]
    raise AttributeError(f"module 'sqlmodel_cache.fastapi' has no attribute {name!r}")
