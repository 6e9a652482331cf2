"""The end-to-end benchmark runs (a smoke run of a second per variant: it checks no speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .servers import ServerUnavailable, postgres_bindir, redis_binary

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {"Session", "CachedSession", "AsyncCachedSession"}


def require_tools() -> None:
    from benchmarks.loadgen import LoadGeneratorUnavailable, wrk_binary

    try:
        redis_binary()
        postgres_bindir()
        try:
            wrk_binary()
        except LoadGeneratorUnavailable as error:
            raise ServerUnavailable(str(error)) from None
    except ServerUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and a required tool is unavailable: {error}", pytrace=False)
        pytest.skip(str(error))


def test_quick_e2e_run(tmp_path: Path) -> None:
    require_tools()
    output = tmp_path / "e2e.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.e2e", "--quick", "--json", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    e2e = json.loads(output.read_text(encoding="utf-8"))["e2e"]
    assert isinstance(e2e["date"], str) and e2e["date"]
    assert isinstance(e2e["concurrency"], int) and e2e["concurrency"] >= 1
    assert isinstance(e2e["duration_s"], float) and e2e["duration_s"] > 0
    assert set(e2e["variants"]) == VARIANTS
    for name, variant in e2e["variants"].items():
        for key in ("rps", "p50_ms", "p99_ms"):
            assert isinstance(variant[key], float) and variant[key] > 0, (name, key)
        assert variant["p50_ms"] <= variant["p99_ms"], name
        assert isinstance(variant["requests"], int) and variant["requests"] > 0, name
        assert variant["errors"] == 0, name
    # What served the requests, by Redis's own counters: the plain Session never read it,
    # the cached sessions answered from it (at least half: see check_cache_use) and never missed.
    plain = e2e["variants"]["Session"]
    assert plain["cache_hits"] == plain["cache_misses"] == 0
    for name in ("CachedSession", "AsyncCachedSession"):
        cached = e2e["variants"][name]
        assert cached["cache_misses"] == 0, name
        assert cached["cache_hits"] >= cached["requests"] / 2, name
    assert "AsyncCachedSession" in result.stdout and "p99 ms" in result.stdout
