"""Negative caching: "no such row" is remembered for negative_ttl seconds, until an insert evicts it."""

import os

import redis
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Article(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600, negative_ttl=30)

    id: int | None = Field(default=None, primary_key=True)
    title: str


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///articles.db"))


def read(article_id: int) -> Article | None:
    with CachedSession(engine) as session:
        return session.get(Article, article_id)


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    SQLModel.metadata.create_all(engine)

    print("first:", read(404))  # a miss: the database says no row, and that answer is stored for 30 s
    print("second:", read(404))  # a negative hit: None, no SQL
    with CachedSession(engine) as session:
        session.add(Article(id=404, title="Found at last"))
        session.commit()  # the insert evicts the negative entry
    article = read(404)
    print("after insert:", article.title if article else None)
    print("negative_hits:", SQLModelCache.stats().negative_hits)

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
