"""Single flight: many readers missing one row at once cost one SELECT; the others wait for its fill."""

import os
import threading

import redis
from sqlalchemy import event
from sqlmodel import Field, SQLModel, create_engine

from sqlmodel_cache import CacheConfig, CachedSession, SQLModelCache
from sqlmodel_cache.transport import RedisSyncTransport


class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=600)

    id: int | None = Field(default=None, primary_key=True)
    name: str


engine = create_engine(os.environ.get("DATABASE_URL", "sqlite:///heroes.db"))
READERS = 16


def main() -> None:
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    # lease_wait: how long a reader that finds another reader filling the row waits for that fill.
    SQLModelCache.configure(transport=RedisSyncTransport(client), lease_wait=0.1)
    SQLModel.metadata.create_all(engine)
    with CachedSession(engine) as session:
        session.add(Hero(id=1, name="Deadpond"))
        session.commit()

    selects: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: selects.append(args[2]))
    start = threading.Barrier(READERS)
    names: list[str] = []

    def reader() -> None:
        start.wait()  # every reader misses the cold row at the same moment
        with CachedSession(engine) as session:
            hero = session.get(Hero, 1)
            names.append(hero.name if hero else "")

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = SQLModelCache.stats()
    print(f"readers served: {names.count('Deadpond')} of {READERS}")
    print(f"SELECTs: {len(selects)}, waited for another reader's fill: {stats.lease_waits}")

    SQLModelCache.reset()
    client.close()
    engine.dispose()


if __name__ == "__main__":
    main()
