"""What goes through the cache: get() of opted-in models; per-call options; queries pass through."""

import os

import redis
from sqlmodel import Field, SQLModel, create_engine, select

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)

    id: int | None = Field(default=None, primary_key=True)
    name: str


class Team(SQLModel, table=True):  # no __cache_config__: never touches the cache
    id: int | None = Field(default=None, primary_key=True)
    name: str


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///heroes.db"))


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=300)
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add_all([Hero(id=1, name="Deadpond"), Team(id=1, name="Preventers")])
        session.commit()

    with CachedSession(engine) as session:
        session.get(Team, 1)  # a plain Session.get: the model is not opted in
        session.get(Hero, 1, execution_options={"cache": False})  # neither reads nor fills the cache
        session.exec(select(Hero).where(Hero.name == "Deadpond")).one()  # queries always go to the database
    print("after uncached reads:", SQLModelCache.stats().fills, "fills")

    with CachedSession(engine) as session:
        session.get(Hero, 1, execution_options={"cache_ttl": 60})  # a miss, filled for 60 s
    with CachedSession(engine) as session:
        session.get(Hero, 1)  # a hit
    key = SQLModelCache.cache_key(Hero, 1)
    print("key:", key.split(":")[0], "ttl <= 60:", 0 < client.ttl(key) <= 60)
    stats = SQLModelCache.stats()
    print(f"hits={stats.hits} misses={stats.misses} fills={stats.fills}")

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
