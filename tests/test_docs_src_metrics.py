"""Every sample of the metrics page (``docs/metrics.md``, from ``docs_src/metrics/``) runs and
exports what the page says, on the real redis-server. The samples that set the global meter
provider run in a process of their own, followed by a few reads of a model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from sqlmodel import Session

from sqlmodel_cache import CachedSession, SQLModelCache, otel
from sqlmodel_cache.transport import RedisSyncTransport

from .models import Hero
from .servers import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "docs_src" / "metrics"
PAGE = ROOT / "docs" / "metrics.md"

# What follows a sample in its process: the application's reads, a miss then two hits; then
# the process waits for its standard input to close.
READS = """
import runpy, sys
runpy.run_path(sys.argv[1])
from sqlmodel import Field, Session, SQLModel, create_engine
from sqlmodel_cache import CacheConfig, CachedSession

class Hero(SQLModel, table=True):
    __cache_config__ = CacheConfig(ttl=60)
    id: int = Field(primary_key=True)

engine = create_engine("sqlite://")
SQLModel.metadata.create_all(engine)
with Session(engine) as session:
    session.add(Hero(id=1))
    session.commit()
for _ in range(3):
    with CachedSession(engine) as session:
        assert session.get(Hero, 1) is not None
print("ready", flush=True)
sys.stdin.read()
"""


def start(sample: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", READS, str(SAMPLES / sample)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={
            **os.environ,
            **env,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "PYTHONWARNINGS": "error",
        },
    )


def test_every_sample_is_on_the_page_and_every_include_is_a_sample() -> None:
    page = PAGE.read_text()
    included = {line.strip() for line in page.splitlines() if line.strip().startswith("--8<--")}
    samples = {f'--8<-- "docs_src/metrics/{path.name}"' for path in SAMPLES.glob("*.py")}
    assert included == samples


def test_instrument_sample_exports_through_the_global_provider(redis_proc: RedisServer, real_redis: Any) -> None:
    with start("instrument.py", {"REDIS_URL": redis_proc.url}) as process:
        try:
            out, err = process.communicate(input="", timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, err
    assert out.startswith("ready\n")
    exported = json.loads(out.removeprefix("ready\n"))  # the console exporter's export at exit
    points = {
        (metric["name"], tuple(sorted(point["attributes"].items()))): point["value"]
        for resource in exported["resource_metrics"]
        for scope in resource["scope_metrics"]
        for metric in scope["metrics"]
        for point in metric["data"]["data_points"]
    }
    assert points[("sqlmodel_cache.hits", (("model", "Hero"),))] == 2
    assert points[("sqlmodel_cache.misses", (("model", "Hero"),))] == 1
    assert points[("sqlmodel_cache.fills", ())] == 1
    assert points[("sqlmodel_cache.breaker_state", (("state", "closed"),))] == 1


def test_prometheus_sample_serves_the_metrics(redis_proc: RedisServer, real_redis: Any) -> None:
    port = free_port()
    with start("prometheus.py", {"REDIS_URL": redis_proc.url, "METRICS_PORT": str(port)}) as process:
        try:
            assert process.stdout is not None
            ready = process.stdout.readline()
            assert ready == "ready\n", process.communicate(input="", timeout=30)[1]
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
            assert response.status_code == 200
            _, err = process.communicate(input="", timeout=30)
            assert process.returncode == 0, err
        finally:
            if process.poll() is None:
                process.kill()
    lines = response.text.splitlines()

    def value(name: str, *labels: str) -> float:
        found = [
            line
            for line in lines
            if line.startswith(name + "{") and all(label in line.split("}")[0] for label in labels)
        ]
        assert len(found) == 1, (name, labels, found)
        return float(found[0].rsplit(" ", 1)[1])

    assert "# TYPE sqlmodel_cache_hits_total counter" in lines
    assert value("sqlmodel_cache_hits_total", 'model="Hero"') == 2
    assert value("sqlmodel_cache_misses_total", 'model="Hero"') == 1
    assert value("sqlmodel_cache_fills_total") == 1
    assert value("sqlmodel_cache_breaker_state", 'state="open"') == 0
    assert value("sqlmodel_cache_breaker_state", 'state="closed"') == 1
    assert "# TYPE sqlmodel_cache_evictions_pending gauge" in lines


def test_in_memory_sample_reads_the_hits_by_model(sqlite_engine: sa.Engine, real_redis: redis.Redis) -> None:
    spec = importlib.util.spec_from_file_location("in_memory_sample", SAMPLES / "in_memory.py")
    assert spec is not None and spec.loader is not None
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    try:
        SQLModelCache.configure(transport=RedisSyncTransport(real_redis))
        with Session(sqlite_engine) as session:
            session.add(Hero(id=1))
            session.commit()
        assert sample.hits_by_model() == {}
        for _ in range(3):
            with CachedSession(sqlite_engine) as session:
                assert session.get(Hero, 1) is not None
        assert sample.hits_by_model() == {"Hero": 2}
    finally:
        otel.uninstrument()


KINDS = {"counter": "ObservableCounter", "updowncounter": "ObservableUpDownCounter", "gauge": "ObservableGauge"}


def test_the_page_lists_every_instrument_with_its_kind_and_unit() -> None:
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in PAGE.read_text().splitlines()
        if line.startswith("| `sqlmodel_cache.")
    }
    assert set(rows) == {item.name for item in otel._INSTRUMENTS}
    for item in otel._INSTRUMENTS:
        cells = [cell.strip() for cell in rows[item.name].split("|")]
        assert cells[2] == KINDS[item.kind], item.name
        assert cells[3] == f"`{item.unit}`", item.name
        assert ("`model`" in cells[4]) == item.per_model, item.name
