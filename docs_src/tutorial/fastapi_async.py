"""The same app with async routes: AsyncEngine, the asyncio Redis client, AsyncCachedSessionDep."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio
from fastapi import FastAPI, HTTPException
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import Field, SQLModel

from sqlmodel_cache import CacheConfig, SQLModelCache
from sqlmodel_cache.fastapi import AsyncCachedSessionDep, set_engine
from sqlmodel_cache.transport import RedisAsyncTransport


class HeroBase(SQLModel):
    name: str
    secret_name: str
    age: int | None = None


class Hero(HeroBase, table=True):
    __cache_config__ = CacheConfig(ttl=600)

    id: int | None = Field(default=None, primary_key=True)


class HeroPublic(HeroBase):
    id: int


class HeroUpdate(SQLModel):
    name: str | None = None
    secret_name: str | None = None
    age: int | None = None


DATABASE_URL = os.environ.get("ASYNC_DATABASE_URL", "sqlite+aiosqlite:///heroes.db")
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

engine = create_async_engine(DATABASE_URL)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    SQLModelCache.configure(transport=RedisAsyncTransport(client), default_ttl=300)
    async with engine.begin() as connection:
        await connection.run_sync(SQLModel.metadata.create_all)
    set_engine(app, engine)
    yield
    SQLModelCache.reset()
    await client.aclose()
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/heroes/", response_model=HeroPublic, status_code=201)
async def create_hero(hero: HeroBase, session: AsyncCachedSessionDep) -> Hero:
    db_hero = Hero.model_validate(hero)
    session.add(db_hero)
    await session.commit()
    await session.refresh(db_hero)
    return db_hero


@app.get("/heroes/{hero_id}", response_model=HeroPublic)
async def read_hero(hero_id: int, session: AsyncCachedSessionDep) -> Hero:
    hero = await session.get(Hero, hero_id)  # from Redis once cached, awaited on the event loop
    if hero is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    return hero


@app.patch("/heroes/{hero_id}", response_model=HeroPublic)
async def update_hero(hero_id: int, update: HeroUpdate, session: AsyncCachedSessionDep) -> Hero:
    hero = await session.get(Hero, hero_id)
    if hero is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    hero.sqlmodel_update(update.model_dump(exclude_unset=True))
    await session.commit()  # evicts the hero before the response is sent
    await session.refresh(hero)
    return hero


@app.delete("/heroes/{hero_id}", status_code=204)
async def delete_hero(hero_id: int, session: AsyncCachedSessionDep) -> None:
    hero = await session.get(Hero, hero_id)
    if hero is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    await session.delete(hero)
    await session.commit()
