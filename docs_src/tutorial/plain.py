"""A plain script: a miss, a hit, and a commit that evicts the row it changed."""

import os

import redis
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)  # get() of a Hero is cached for 10 minutes

    id: int | None = Field(default=None, primary_key=True)
    name: str
    secret_name: str
    age: int | None = None


DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///heroes.db")
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

engine = create_engine(DATABASE_URL)


def create_heroes() -> None:
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add(Hero(id=1, name="Deadpond", secret_name="Dive Wilson"))
        session.commit()


def main() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=300)
    create_heroes()

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)  # a miss: read from the database, then stored in Redis
        print("first read:", hero)

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)  # a hit: one Redis round trip, no SQL
        assert hero is not None
        hero.age = 31
        session.commit()  # the commit evicts Hero 1 before it returns

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)  # a miss again, and the committed row
        assert hero is not None
        print("after commit: age", hero.age)

    stats = SQLModelCache.stats()
    print(f"hits={stats.hits} misses={stats.misses} fills={stats.fills} invalidations={stats.invalidations}")

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
