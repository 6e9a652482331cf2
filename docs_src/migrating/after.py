"""After the move from the other sqlmodel-cache 0.1.x: the same configure() and CacheConfig,
with CachedSession where the code had Session."""

import os

import redis
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)  # unchanged

    id: int | None = Field(default=None, primary_key=True)
    name: str = ""


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///heroes.db"))


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    SQLModelCache.configure(  # keyword arguments only; a second call needs reset() first
        transport=RedisSyncTransport(client),
        default_ttl=300,
        key_prefix="sqlmodelcache",
    )
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:  # was: Session(engine)
        session.add(Hero(id=1, name="Deadpond"))
        session.commit()  # an insert evicts too (a negative entry, a lookup by a unique column)

    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)  # cache miss: the database, then stored in Redis
    with CachedSession(engine) as session:
        hero = session.get(Hero, 1)  # cache hit
        hero = session.get(Hero, 1, execution_options={"cache": False})  # as before
    print("hero:", hero.name if hero else None, "hits:", SQLModelCache.stats().hits)

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
