"""Near cache: rows read far more often than they change, kept in process memory in front of Redis."""

import os

import redis
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Country(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=3600, near=True)

    code: str = Field(primary_key=True)
    name: str


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///countries.db"))


def name_of(code: str) -> str | None:
    with CachedSession(engine) as session:
        country = session.get(Country, code)
        return country.name if country else None


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    SQLModelCache.configure(transport=RedisSyncTransport(client), near_cache_size=10_000)
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add(Country(code="FR", name="France"))
        session.commit()

    for _ in range(5):
        name = name_of("FR")  # a miss, a Redis hit, then near hits: no Redis call, no SQL
    print("read 5 times:", name)
    with CachedSession(engine) as session:
        country = session.get(Country, "FR")
        assert country is not None
        country.name = "République française"
        session.commit()  # drops the near entry here; Redis's tracking tells every other process
    print("after commit:", name_of("FR"))

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
