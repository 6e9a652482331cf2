"""The FastAPI example app over HTTP, sync and async, on the real servers."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sqlmodel_cache import CacheStats, ConfigurationError
from sqlmodel_cache.fastapi import CachedSessionDep

from .servers import RedisServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_example() -> Any:
    if "fastapi_app" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fastapi_app", EXAMPLE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["fastapi_app"] = module
        spec.loader.exec_module(module)
    return sys.modules["fastapi_app"]


class SQLLog:
    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        sa.event.listen(engine, "before_cursor_execute", self.record)

    def record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)


@pytest.fixture
def redis_url(redis_proc: RedisServer) -> str:
    import redis

    client = redis.Redis.from_url(redis_proc.url)
    client.flushall()
    client.close()
    return redis_proc.url


def test_sync_app_over_http(engine: sa.Engine, redis_url: str, stats: CacheStats) -> None:
    example = load_example()
    app = example.create_sync_app(engine.url.render_as_string(hide_password=False), redis_url)
    with TestClient(app) as client:
        created = client.post("/products", json={"name": "lamp", "price_cents": 1999})
        assert created.status_code == 201
        pid = created.json()["id"]
        app_engine = app.state.sqlmodel_cache_engine
        log = SQLLog(app_engine)

        first = client.get(f"/products/{pid}")  # miss: database, then filled
        assert first.status_code == 200
        selects_after_miss = len(log.statements)
        assert selects_after_miss >= 1
        second = client.get(f"/products/{pid}")  # hit
        assert second.status_code == 200
        assert len(log.statements) == selects_after_miss, "the second GET ran SQL"
        assert second.json() == first.json()
        assert second.content == first.content  # same JSON, byte for byte
        assert stats.hits == 1

        patched = client.patch(f"/products/{pid}", json={"price_cents": 2499})
        assert patched.status_code == 200
        assert client.get(f"/products/{pid}").json()["price_cents"] == 2499

        assert client.delete(f"/products/{pid}").status_code == 204
        assert client.get(f"/products/{pid}").status_code == 404


def test_sync_app_without_cache_reads_the_database_every_time(
    engine: sa.Engine, redis_url: str, stats: CacheStats
) -> None:
    example = load_example()
    app = example.create_sync_app(engine.url.render_as_string(hide_password=False), redis_url, cache=False)
    with TestClient(app) as client:
        pid = client.post("/products", json={"name": "chair", "price_cents": 4500}).json()["id"]
        log = SQLLog(app.state.sqlmodel_cache_engine)
        first = client.get(f"/products/{pid}")
        count = len(log.statements)
        second = client.get(f"/products/{pid}")
        assert first.status_code == second.status_code == 200
        assert second.json() == first.json()
        assert count >= 1 and len(log.statements) == 2 * count, "the plain Session did not run the same SQL twice"
        assert stats.hits == 0 and stats.misses == 0 and stats.fills == 0


async def test_async_app_over_http(async_database_url: str, redis_url: str, stats: CacheStats) -> None:
    example = load_example()
    app = example.create_async_app(async_database_url, redis_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await client.post("/products", json={"name": "desk", "price_cents": 12000})
            assert created.status_code == 201
            pid = created.json()["id"]
            log = SQLLog(app.state.sqlmodel_cache_engine.sync_engine)

            first = await client.get(f"/products/{pid}")
            assert first.status_code == 200
            count = len(log.statements)
            second = await client.get(f"/products/{pid}")
            assert len(log.statements) == count, "the second GET ran SQL"
            assert second.content == first.content
            assert stats.hits == 1

            patched = await client.patch(f"/products/{pid}", json={"in_stock": False})
            assert patched.json()["in_stock"] is False
            assert (await client.get(f"/products/{pid}")).json()["in_stock"] is False

            assert (await client.delete(f"/products/{pid}")).status_code == 204
            assert (await client.get(f"/products/{pid}")).status_code == 404


def test_dependency_without_engine_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/x")
    def route(session: CachedSessionDep) -> None:  # pragma: no cover - never reached
        return None

    with TestClient(app) as client, pytest.raises(ConfigurationError, match="set_engine"):
        client.get("/x")
