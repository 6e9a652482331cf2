"""Runs one sample of ``docs_src`` in a process of its own (every sample defines its own tables).

``python tests/docs_src_runner.py script SAMPLE.py [--fake-redis]`` runs a script as
``__main__``; ``http`` instead drives a FastAPI sample's ``app`` over HTTP with FastAPI's
TestClient. The samples read DATABASE_URL, ASYNC_DATABASE_URL and REDIS_URL; with
``--fake-redis``, ``redis.Redis.from_url`` and its asyncio twin give clients of one
in-process fake server instead, so the samples run as printed, with no server.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path

import fakeredis
import redis
import redis.asyncio
from fastapi.testclient import TestClient

from sqlmodel_cache import SQLModelCache


def use_fake_redis() -> None:
    """``redis.Redis.from_url`` and its asyncio twin give clients of one in-process fake server."""
    server = fakeredis.FakeServer()
    redis.Redis.from_url = classmethod(lambda cls, url, **kw: fakeredis.FakeRedis(server=server, **kw))  # type: ignore[method-assign,assignment]
    redis.asyncio.Redis.from_url = classmethod(  # type: ignore[method-assign,assignment]
        lambda cls, url, **kw: fakeredis.FakeAsyncRedis(server=server, **kw)
    )


def drive(path: Path) -> None:
    spec = importlib.util.spec_from_file_location("docs_src_sample", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    with TestClient(module.app) as client:
        created = client.post("/heroes/", json={"name": "Deadpond", "secret_name": "Dive Wilson"})
        assert created.status_code == 201, created.text
        url = f"/heroes/{created.json()['id']}"
        for _ in range(3):
            read = client.get(url)
            assert read.status_code == 200 and read.json()["name"] == "Deadpond", read.text
        assert SQLModelCache.stats().hits >= 2, SQLModelCache.stats()
        patched = client.patch(url, json={"age": 31})
        assert patched.status_code == 200 and patched.json()["age"] == 31, patched.text
        assert client.get(url).json()["age"] == 31  # the commit evicted the cached row
        assert client.delete(url).status_code == 204
        assert client.get(url).status_code == 404
        assert client.get("/heroes/999").status_code == 404
        stats = SQLModelCache.stats()
        assert stats.redis_errors == 0, stats
        print(f"hits={stats.hits} misses={stats.misses} invalidations={stats.invalidations}")
    assert not SQLModelCache.is_configured()  # the lifespan reset it on shutdown


if __name__ == "__main__":
    mode, sample = sys.argv[1], Path(sys.argv[2])
    if "--fake-redis" in sys.argv[3:]:
        use_fake_redis()
    if mode == "http":
        drive(sample)
    else:
        runpy.run_path(str(sample), run_name="__main__")
