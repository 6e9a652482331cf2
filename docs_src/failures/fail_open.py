"""Redis down: every get() is answered by the database, every commit succeeds, nothing raises."""

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
    client = redis.Redis(host="127.0.0.1", port=1)  # nothing listens there: every Redis call fails
    transport = RedisSyncTransport(client, timeout=0.1, failure_threshold=5, cooldown=2.0)
    SQLModelCache.configure(transport=transport)
    SQLModel.metadata.create_all(engine)

    with CachedSession(engine) as session:
        session.add(Hero(id=1, name="Deadpond"))
        session.commit()  # succeeds; the eviction that failed is kept for later
    for _ in range(8):
        with CachedSession(engine) as session:
            hero = session.get(Hero, 1)  # the database's answer, within the transport's bound
            assert hero is not None and hero.name == "Deadpond"

    stats = SQLModelCache.stats()
    print("served from the database: 8 reads")
    print(f"breaker={stats.breaker_state} trips={stats.breaker_trips} evictions_pending={stats.evictions_pending}")
    print("redis_errors >= 5:", stats.redis_errors >= 5)

    SQLModelCache.reset(drop_pending_evictions=True)
    engine.dispose()


if __name__ == "__main__":
    main()
