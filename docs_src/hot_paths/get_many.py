"""get_many(): rows by primary key in one go, in the order asked, None where there is no row."""

import os

import redis
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)

    id: int | None = Field(default=None, primary_key=True)
    name: str


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///heroes.db"))


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add_all([Hero(id=1, name="Deadpond"), Hero(id=2, name="Spider-Boy"), Hero(id=3, name="Rusty-Man")])
        session.commit()

    with CachedSession(engine) as session:
        heroes = session.get_many(Hero, [3, 1, 99, 2])  # one MGET, then one SELECT ... IN for the misses
        print("first:", [hero.name if hero else None for hero in heroes])
    with CachedSession(engine) as session:
        heroes = session.get_many(Hero, [3, 1, 2])  # all cached: one round trip, no SQL
        print("second:", [hero.name if hero else None for hero in heroes])
    stats = SQLModelCache.stats()
    print(f"hits={stats.hits} misses={stats.misses} fills={stats.fills}")

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
