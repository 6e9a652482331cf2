"""One run's state: the table, its rows by kind of case, the servers' clients, and what has
been measured so far; and the setup every phase relies on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import random
import statistics
from typing import Any

import msgpack
import redis
import redis.cluster
from sqlalchemy import Engine, text
from sqlmodel import Session, create_engine

from benchmarks.common import FLOOR_PREFIX, MANY, TABLE, BenchmarkError, Settings, define_model, make_rows
from benchmarks.timing import Rate, Series, check_counters


class Run:
    """One run: the table, the cases' rows and figures, and the setup the phases share."""

    def __init__(self, settings: Settings, redis_port: int, postgres: Any, redis_pid: int | None = None) -> None:
        from sqlmodel_cache import CacheConfig

        self.settings = settings
        self.redis_port = redis_port
        self.redis_pid = redis_pid
        self.postgres = postgres
        self.model = define_model(CacheConfig(ttl=3600))
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
        # get_many() batches: MANY distinct read rows each, a window that moves one row per batch.
        count = len(self.read_pks)
        if count < MANY:
            raise BenchmarkError(f"get_many() needs {MANY} read rows, the table gives {count}")
        self.many_batches = [[self.read_pks[(start + i) % count] for i in range(MANY)] for start in range(count)]
        self.library_keys: dict[int, bytes] = {}
        self.floor_keys: dict[int, bytes] = {}
        self.series: dict[str, Series] = {}
        self.rates: dict[str, Rate] = {}
        self.notes: list[str] = [
            "x floor / x plain: ratios to floor and plain_get (async: async_floor, async_plain_get; "
            "cluster: cluster_floor, plain_get), all measured in this process",
            "plain_get_unimported and plain_get_configured ran in two child processes, identical "
            "except that the second imported and configured sqlmodel-cache (a fresh pair each round)",
            "targets: the median over rounds of the ratio within each round ('rounds' is its range)",
            f"many_*: one get_many() of {MANY} distinct read rows in a new session; hit_with_many and "
            "rtt_with_many are hit and rtt again, interleaved with the get_many() cases; many_floor is "
            "the raw MGET and msgpack.unpackb of the same entries",
        ]

    def load_table(self) -> None:
        metadata = self.model.metadata
        metadata.drop_all(self.engine)
        metadata.create_all(self.engine)
        with Session(self.engine) as session:
            session.add_all(make_rows(self.model, self.settings.rows))
            session.commit()
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM ANALYZE {TABLE}"))

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
        if not self.library_keys:
            for key in self.client.scan_iter(match=f"*:{TABLE}:*", count=1000):
                self.library_keys[int(key.rsplit(b":", 1)[1])] = key
        for pk in self.read_pks:
            floor_key = f"{FLOOR_PREFIX}{pk}".encode()
            value = client.get(self.library_keys[pk])
            if not isinstance(value, bytes):
                raise BenchmarkError(f"row {pk} was filled but its entry is not in Redis")
            client.set(floor_key, value)
            self.floor_keys[pk] = floor_key

    def memory(self) -> dict[str, Any]:
        sample = self.read_pks[:50]
        usage, entry, keys, floor_usage, row = [], [], [], [], []
        for pk in sample:
            key = self.library_keys[pk]
            value = self.client.get(key)
            assert isinstance(value, bytes)
            usage.append(int(self.client.memory_usage(key, samples=0) or 0))
            floor_usage.append(int(self.client.memory_usage(self.floor_keys[pk], samples=0) or 0))
            entry.append(len(value))
            keys.append(len(key))
            with Session(self.engine) as session:
                instance = session.get(self.model, pk)
                values = [getattr(instance, column.name) for column in self.model.__table__.columns]
            row.append(len(msgpack.packb(values, default=lambda v: v.isoformat())))
        median = statistics.median
        return {
            "entry_memory_usage_bytes": median(usage),
            "entry_value_bytes": median(entry),
            "entry_key_bytes": median(keys),
            "plain_row_msgpack_bytes": median(row),
            "overhead_bytes": median(u - v - k for u, v, k in zip(usage, entry, keys, strict=True)),
            "ratio_to_value_plus_key": median(u / (v + k) for u, v, k in zip(usage, entry, keys, strict=True)),
            "floor_copy_memory_usage_bytes": median(floor_usage),
            "sampled_keys": len(sample),
        }

    def versions(self) -> dict[str, str]:
        def package(name: str) -> str:
            try:
                return importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                return "not installed"

        with self.engine.connect() as conn:
            postgres = str(conn.execute(text("SHOW server_version")).scalar())
        return {
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "sqlmodel-cache": package("sqlmodel-cache"),
            "sqlalchemy": package("sqlalchemy"),
            "sqlmodel": package("sqlmodel"),
            "redis-py": package("redis"),
            "hiredis": package("hiredis"),
            "msgpack": package("msgpack"),
            "psycopg": package("psycopg"),
            "asyncpg": package("asyncpg"),
            "redis-server": str(self.client.info("server")["redis_version"]),
            "postgresql": postgres,
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs",
        }
