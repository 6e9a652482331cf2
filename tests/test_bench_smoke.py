"""The benchmark script runs end to end (a smoke run: it checks no speed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import ServerUnavailable, postgres_bindir, redis_binary

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"

TIMED_CASES = {
    "floor",
    "rtt",
    "plain_get",
    "plain_get_unimported",
    "plain_get_configured",
    "hit",
    "negative_hit",
    "get_by_hit",
    "near_hit",
    "near_hit_x10",
    "miss",
    "rmw_plain",
    "rmw_cached",
    "rmw_cached_miss",
    "many_hit",
    "hit_with_many",
    "many_floor",
    "many_miss",
    "plain_select_in",
    "rtt_with_many",
    "async_floor",
    "async_rtt",
    "async_plain_get",
    "async_hit",
    "async_miss",
    "cluster_floor",
    "cluster_hit",
    "hit_with_cluster",
    "floor_with_cluster",
}
THROUGHPUT_CASES = {"async_floor_x50", "async_hit_x50"}


def test_quick_benchmark_run(tmp_path: Path) -> None:
    try:
        redis_binary()
        postgres_bindir()
        if shutil.which("redis-cli") is None:  # the cluster phase creates its cluster with it
            raise ServerUnavailable("redis-cli is not installed; install Debian's redis-server package")
    except ServerUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and a required server is unavailable: {error}", pytrace=False)
        pytest.skip(str(error))
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(output)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(output.read_text(encoding="utf-8"))
    assert set(report["cases"]) == TIMED_CASES
    for name, case in report["cases"].items():
        assert case["median_us"] > 0, name
        assert case["samples"] > 0, name
    assert set(report["throughput"]) == THROUGHPUT_CASES
    for name, rate in report["throughput"].items():
        assert rate["median_ops_per_s"] > 0, name
    assert report["memory"]["entry_memory_usage_bytes"] > 0
    assert {t["verdict"].split()[0] for t in report["targets"]} <= {"PASS", "FAIL"}
    assert len(report["targets"]) == 14
    assert set(report["herd"]) == {"plain", "single_flight", "no_wait"}
    assert all(variant["median_selects"] >= 1 for variant in report["herd"].values())
    assert report["cluster"]["hit_to_floor"] > 0
    for name in (
        "redis-server",
        "postgresql",
        "sqlalchemy",
        "sqlmodel",
        "redis-py",
        "hiredis",
        "msgpack",
        "psycopg",
        "asyncpg",
    ):
        assert report["versions"][name], name
    assert "hit" in result.stdout and "verdict" in result.stdout
