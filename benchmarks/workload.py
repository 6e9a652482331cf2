"""The benchmark's table: its model, its rows, and which rows each kind of case uses."""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING, Any

import redis
import redis.cluster
from sqlalchemy import Engine, text
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, create_engine

from benchmarks.common import MANY, BenchmarkError, Settings
from benchmarks.timing import check_counters

if TYPE_CHECKING:
    from tests.servers import PostgresServer

TABLE = "bench_row"
# The near hits' rows: a table of their own, so that no other case's model shares their keys
# (a commit that evicts keys of a near model makes one more round trip).
NEAR_TABLE = "bench_near_row"
FLOOR_PREFIX = "bench:floor:"


def define_model(cache_config: object | None, table: str = TABLE) -> Any:
    """The benchmark table in a registry of its own; ``cache_config=None`` leaves it uncached."""

    class BenchBase(SQLModel, registry=registry()):
        pass

    class BenchRow(BenchBase, table=True):
        __tablename__ = table
        __cache_config__ = cache_config

        id: int | None = Field(default=None, primary_key=True)
        name: str
        email: str = Field(unique=True)  # the get_by() cases' lookup
        score: int
        rating: float
        active: bool
        created_at: dt.datetime
        note: str | None = None

    return BenchRow


def make_rows(model: Any, count: int, first: int = 1) -> list[Any]:
    """Realistic rows of mixed column types, seeded: every run caches the same bytes."""
    rng = random.Random(20240601)
    start = dt.datetime(2024, 1, 1, 9, 30, tzinfo=dt.timezone.utc)
    words = ["priority", "wholesale", "returning", "trial", "referral", "enterprise"]
    return [
        model(
            id=i,
            name=f"Customer {i:05d}",
            email=f"customer{i}@example.com",
            score=rng.randrange(10_000),
            rating=round(rng.uniform(0, 5), 3),
            active=i % 3 != 0,
            created_at=start + dt.timedelta(minutes=37 * i, microseconds=i),
            note=None if i % 4 == 0 else f"{rng.choice(words)} account since {2000 + i % 24}",
        )
        for i in range(first, first + count)
    ]


class Workload:
    """The table on the servers, the rows each kind of case reads, and their entries' keys."""

    def __init__(self, settings: Settings, redis_port: int, postgres: PostgresServer) -> None:
        from sqlmodel_cache import CacheConfig

        self.settings = settings
        self.redis_port = redis_port
        self.postgres = postgres
        self.model = define_model(CacheConfig(ttl=3600, negative_ttl=3600))
        # The same table with its email lookup declared, for the get_by() cases only: a model
        # with unique lookups has SQLModelCache.evict() (how the miss cases empty a key) purge
        # all its lookups, since their values are not known there.
        self.lookup_model = define_model(CacheConfig(ttl=3600, unique=("email",)))
        # And rows of the same shape kept near, in process memory.
        self.near_model = define_model(CacheConfig(ttl=3600, near=True), NEAR_TABLE)
        self.engine: Engine = create_engine(postgres.url("psycopg"))
        self.client = redis.Redis(host="127.0.0.1", port=redis_port)
        pks = list(range(1, settings.rows + 1))
        random.Random(7).shuffle(pks)
        tenth = max(len(pks) // 10, 1)
        # Disjoint rows per kind of case, so that no case changes what another one finds.
        self.read_pks = pks[: 5 * tenth]
        self.miss_pks = pks[5 * tenth : 7 * tenth]
        self.rmw_plain_pks = pks[7 * tenth : 8 * tenth]
        self.rmw_cached_pks = pks[8 * tenth : 9 * tenth]
        self.rmw_cold_pks = pks[9 * tenth :]
        # Primary keys with no row: the negative hits.
        self.absent_pks = list(range(settings.rows + 1, settings.rows + 1 + len(self.read_pks)))
        # Rows of their own for the near hits (in their own table, with keys past the absent
        # ones): no other case reads, evicts or writes them, so their near entries stay.
        first_near = self.absent_pks[-1] + 1
        self.near_pks = list(range(first_near, first_near + max(len(self.read_pks) // 5, 10)))
        # The row a herd of readers misses at once.
        self.herd_pk = self.miss_pks[0]
        # get_many() batches: MANY distinct read rows each, a window that moves one row per batch.
        count = len(self.read_pks)
        if count < MANY:
            raise BenchmarkError(f"get_many() needs {MANY} read rows, the table gives {count}")
        self.many_batches = [[self.read_pks[(start + i) % count] for i in range(MANY)] for start in range(count)]
        # The get_by() cases' lookup values (as make_rows writes them).
        self.emails = {pk: f"customer{pk}@example.com" for pk in self.read_pks}
        self.library_keys: dict[int, bytes] = {}
        self.floor_keys: dict[int, bytes] = {}

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def load_table(self) -> None:
        for metadata in (self.model.metadata, self.near_model.metadata):
            metadata.drop_all(self.engine)
            metadata.create_all(self.engine)
        with Session(self.engine) as session:
            session.add_all(make_rows(self.model, self.settings.rows))
            session.add_all(make_rows(self.near_model, len(self.near_pks), self.near_pks[0]))
            session.commit()
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {TABLE}"))
            conn.execute(text(f"VACUUM ANALYZE {NEAR_TABLE}"))

    def configure_sync(self) -> None:
        from sqlmodel_cache import SQLModelCache
        from sqlmodel_cache.transport import RedisSyncTransport

        SQLModelCache.configure(transport=RedisSyncTransport(self.client))

    def fill_read_rows(self, client: redis.Redis | redis.cluster.RedisCluster) -> None:
        """Cache every row the read cases use and copy each entry's bytes to a floor key.

        ``client`` is on the server the configured transport uses; the keys are found on the
        single server (the first call), and have the same names on the cluster.
        """
        from sqlmodel_cache import CachedSession, SQLModelCache

        before = SQLModelCache.stats()
        for pk in self.read_pks:
            with CachedSession(self.engine) as session:
                session.get(self.model, pk)
        check_counters(before, SQLModelCache.stats(), {"fills": 1}, len(self.read_pks))
        for pk in self.read_pks:  # the unique lookups of the same rows
            with CachedSession(self.engine) as session:
                session.get_by(self.lookup_model, email=self.emails[pk])
        check_counters(before, SQLModelCache.stats(), {"fills": 2}, len(self.read_pks))
        self.warm_near()
        for pk in self.absent_pks:  # negative entries: the key has no row
            with CachedSession(self.engine) as session:
                session.get(self.model, pk)
        if not self.library_keys:
            for pk in self.read_pks:
                self.library_keys[pk] = SQLModelCache.cache_key(self.model, pk).encode()
        for pk in self.read_pks:
            floor_key = f"{FLOOR_PREFIX}{pk}".encode()
            value = client.get(self.library_keys[pk])
            if not isinstance(value, bytes):
                raise BenchmarkError(f"row {pk} was filled but its entry is not in Redis")
            client.set(floor_key, value)
            self.floor_keys[pk] = floor_key

    def warm_near(self) -> None:
        """Read every read row through the near model until it is served from memory (the
        first read starts the tracking connection)."""
        import time

        from sqlmodel_cache import CachedSession, SQLModelCache

        deadline = time.monotonic() + 30
        for pk in self.near_pks:
            while True:
                before = SQLModelCache.stats().near_hits
                with CachedSession(self.engine) as session:
                    session.get(self.near_model, pk)
                if SQLModelCache.stats().near_hits > before:
                    break
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"row {pk} was never served from the near cache")

    def close(self) -> None:
        self.engine.dispose()
        self.client.close()
