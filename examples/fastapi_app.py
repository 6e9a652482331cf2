"""A FastAPI app whose GET-by-id is served from Redis, sync or async.

Run it with uvicorn (``pip install uvicorn``)::

    DATABASE_URL=postgresql+psycopg://user@localhost/shop REDIS_URL=redis://localhost:6379 \\
        uvicorn --factory examples.fastapi_app:create_app

Set ``ASYNC=1`` (and an async ``DATABASE_URL`` such as ``postgresql+asyncpg://...``) for
the asyncio variant, or ``CACHE=0`` for the sync routes on a plain ``Session`` (the baseline
the end-to-end benchmark compares with). The lifespans configure the cache exactly as the
migration guide's FastAPI examples do, and reset it on shutdown.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import redis
import redis.asyncio
from fastapi import FastAPI, HTTPException
from sqlmodel import Field, Session, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, SQLModelCache
from sqlmodel_cache.fastapi import AsyncCachedSessionDep, CachedSessionDep, get_cached_session, set_engine
from sqlmodel_cache.transport import RedisAsyncTransport, RedisSyncTransport


class ProductBase(SQLModel):
    name: str
    price_cents: int
    in_stock: bool = True


class Product(ProductBase, table=True):
    __cache_config__ = CacheConfig(ttl=600)
    id: int | None = Field(default=None, primary_key=True)


class ProductPublic(ProductBase):
    id: int


class ProductUpdate(SQLModel):
    name: str | None = None
    price_cents: int | None = None
    in_stock: bool | None = None


def create_sync_app(database_url: str, redis_url: str, *, cache: bool = True) -> FastAPI:
    engine = create_engine(database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = redis.Redis.from_url(redis_url)
        SQLModelCache.configure(
            transport=RedisSyncTransport(r),
            default_ttl=300,
        )
        SQLModel.metadata.create_all(engine, tables=[Product.__table__])  # type: ignore[attr-defined]
        set_engine(app, engine)
        yield
        SQLModelCache.reset()
        r.close()
        engine.dispose()

    app = FastAPI(lifespan=lifespan)
    if not cache:
        # The same routes, each request on a plain Session: what the app costs without the cache.
        def plain_session() -> Iterator[Session]:
            with Session(engine) as session:
                yield session

        app.dependency_overrides[get_cached_session] = plain_session

    @app.post("/products", response_model=ProductPublic, status_code=201)
    def create_product(product: ProductBase, session: CachedSessionDep) -> Product:
        row = Product.model_validate(product)
        session.add(row)
        session.commit()
        session.refresh(row)
        return row

    @app.get("/products/{product_id}", response_model=ProductPublic)
    def read_product(product_id: int, session: CachedSessionDep) -> Product:
        product = session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="Product not found")
        return product

    @app.patch("/products/{product_id}", response_model=ProductPublic)
    def update_product(product_id: int, update: ProductUpdate, session: CachedSessionDep) -> Product:
        product = session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="Product not found")
        product.sqlmodel_update(update.model_dump(exclude_unset=True))
        session.commit()
        session.refresh(product)
        return product

    @app.delete("/products/{product_id}", status_code=204)
    def delete_product(product_id: int, session: CachedSessionDep) -> None:
        product = session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="Product not found")
        session.delete(product)
        session.commit()

    return app


def create_async_app(database_url: str, redis_url: str) -> FastAPI:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        r = redis.asyncio.Redis.from_url(redis_url)
        SQLModelCache.configure(
            transport=RedisAsyncTransport(r),
            default_ttl=300,
        )
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all, tables=[Product.__table__])  # type: ignore[attr-defined]
        set_engine(app, engine)
        yield
        SQLModelCache.reset()
        await r.aclose()
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/products", response_model=ProductPublic, status_code=201)
    async def create_product(product: ProductBase, session: AsyncCachedSessionDep) -> Product:
        row = Product.model_validate(product)
        session.add(row)
        await session.commit()
        await session.refresh(row)
        return row

    @app.get("/products/{product_id}", response_model=ProductPublic)
    async def read_product(product_id: int, session: AsyncCachedSessionDep) -> Product:
        product = await session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="Product not found")
        return product

    @app.patch("/products/{product_id}", response_model=ProductPublic)
    async def update_product(product_id: int, update: ProductUpdate, session: AsyncCachedSessionDep) -> Product:
        product = await session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="Product not found")
        product.sqlmodel_update(update.model_dump(exclude_unset=True))
        await session.commit()
        await session.refresh(product)
        return product

    @app.delete("/products/{product_id}", status_code=204)
    async def delete_product(product_id: int, session: AsyncCachedSessionDep) -> None:
        product = await session.get(Product, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail="Product not found")
        await session.delete(product)
        await session.commit()

    return app


def create_app() -> FastAPI:
    database_url = os.environ.get("DATABASE_URL", "sqlite:///shop.db")
    redis_url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    if os.environ.get("ASYNC"):
        return create_async_app(database_url, redis_url)
    return create_sync_app(database_url, redis_url, cache=os.environ.get("CACHE") != "0")
