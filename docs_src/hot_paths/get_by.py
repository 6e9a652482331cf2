"""Unique lookups: get_by() reads a row by a declared unique column set through the cache."""

import os

import redis
from sqlmodel import Field, SQLModel, UniqueConstraint, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Account(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600, negative_ttl=30, unique=("email", ("tenant_id", "slug")))
    __table_args__ = (UniqueConstraint("tenant_id", "slug"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True)
    tenant_id: int
    slug: str


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///accounts.db"))


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    SQLModelCache.configure(transport=RedisSyncTransport(client))
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add(Account(email="ada@example.com", tenant_id=7, slug="ada"))
        session.commit()

    with CachedSession(engine) as session:
        account = session.get_by(Account, email="ada@example.com")  # a miss, then filled
    with CachedSession(engine) as session:
        same = session.get_by(Account, tenant_id=7, slug="ada")  # another set, its own key
        again = session.get_by(Account, email="ada@example.com")  # a hit: no SQL
        assert same is not None and again is same  # one row, one instance per session
        again.email = "ada@example.org"
        session.commit()  # evicts the lookups under the old and the new email
    with CachedSession(engine) as session:
        print("old email:", session.get_by(Account, email="ada@example.com"))
        moved = session.get_by(Account, email="ada@example.org")
        print("new email:", moved.slug if moved else None, "id", account.id if account else None)
    print("key:", SQLModelCache.lookup_key(Account, email="ada@example.org").split("@", 1)[1])

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
