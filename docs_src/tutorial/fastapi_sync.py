"""A FastAPI app with sync routes: GET by id is served from Redis, writes evict on commit."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, HTTPException
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, SQLModelCache
from sqlmodel_cache.fastapi import CachedSessionDep, set_engine
from sqlmodel_cache.transport import RedisSyncTransport


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


DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///heroes.db")
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

engine = create_engine(DATABASE_URL)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    client = redis.Redis.from_url(REDIS_URL)
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=300)
    SQLModel.metadata.create_all(engine)
    set_engine(app, engine)  # the session dependencies find the engine on app.state
    yield
    SQLModelCache.reset()
    client.close()
    engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.post("/heroes/", response_model=HeroPublic, status_code=201)
def create_hero(hero: HeroBase, session: CachedSessionDep) -> Hero:
    db_hero = Hero.model_validate(hero)
    session.add(db_hero)
    session.commit()
    session.refresh(db_hero)
    return db_hero


@app.get("/heroes/{hero_id}", response_model=HeroPublic)
def read_hero(hero_id: int, session: CachedSessionDep) -> Hero:
    hero = session.get(Hero, hero_id)  # from Redis once cached
    if hero is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    return hero


@app.patch("/heroes/{hero_id}", response_model=HeroPublic)
def update_hero(hero_id: int, update: HeroUpdate, session: CachedSessionDep) -> Hero:
    hero = session.get(Hero, hero_id)
    if hero is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    hero.sqlmodel_update(update.model_dump(exclude_unset=True))
    session.commit()  # evicts the hero before the response is sent
    session.refresh(hero)
    return hero


@app.delete("/heroes/{hero_id}", status_code=204)
def delete_hero(hero_id: int, session: CachedSessionDep) -> None:
    hero = session.get(Hero, hero_id)
    if hero is None:
        raise HTTPException(status_code=404, detail="Hero not found")
    session.delete(hero)
    session.commit()
