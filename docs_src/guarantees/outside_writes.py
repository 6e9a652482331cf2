"""Bulk statements through the session evict what they matched; writes the ORM never sees
(raw SQL on another connection, other services) are evicted explicitly."""

import os

import redis
from sqlmodel import Field, SQLModel, col, create_engine, text, update

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)

    id: int | None = Field(default=None, primary_key=True)
    name: str
    age: int | None = None


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///heroes.db"))


def age_of(hero_id: int) -> int | None:
    with CachedSession(engine) as session:
        hero = session.get(Hero, hero_id)
        assert hero is not None
        return hero.age


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    SQLModelCache.configure(transport=RedisSyncTransport(client), default_ttl=300)
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add_all([Hero(id=1, name="Deadpond", age=20), Hero(id=2, name="Rusty-Man", age=48)])
        session.commit()
    age_of(1), age_of(2)  # both cached now

    # A bulk UPDATE through the cached session evicts exactly the rows it matched.
    with CachedSession(engine) as session:
        session.exec(update(Hero).where(col(Hero.age) < 30).values(age=30))
        session.commit()
    print("after bulk update:", age_of(1))

    # A write the ORM does not see: the cache still holds the old row until it is evicted.
    with engine.begin() as connection:
        connection.execute(text("UPDATE hero SET age = 49 WHERE id = 2"))
    print("raw SQL, not evicted:", age_of(2))
    SQLModelCache.evict(Hero, 2)  # with an async transport: await SQLModelCache.aevict(Hero, 2)
    print("after evict():", age_of(2))

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
