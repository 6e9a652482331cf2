"""The documentation's charts: drawn from a benchmark JSON, with or without the end-to-end
section, and the same bytes every time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "benchmarks" / "published.json"
E2E = {
    "date": "2026-12-04T10:00:00+00:00",
    "concurrency": 64,
    "duration_s": 20.0,
    "variants": {
        "Session": {"rps": 1450.0, "p50_ms": 40.2, "p99_ms": 95.1},
        "CachedSession": {"rps": 2900.5, "p50_ms": 20.3, "p99_ms": 51.0},
        "AsyncCachedSession": {"rps": 3400.0, "p50_ms": 17.9, "p99_ms": 44.4},
    },
}


def draw(report: dict[str, Any], directory: Path) -> dict[str, bytes]:
    directory.mkdir()
    source = directory / "bench.json"
    source.write_text(json.dumps(report), encoding="utf-8")
    out = directory / "img"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.charts", str(source), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return {path.name: path.read_bytes() for path in sorted(out.iterdir())}


@pytest.mark.parametrize("with_e2e", [False, True], ids=["benchmark-only", "with-e2e"])
def test_charts_are_drawn_and_deterministic(tmp_path: Path, with_e2e: bool) -> None:
    report = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    report.pop("e2e", None)
    if with_e2e:
        report["e2e"] = E2E
    first = draw(report, tmp_path / "first")
    second = draw(report, tmp_path / "second")
    expected = {"bench-latency.svg", "bench-throughput.svg", "bench-figures.md"} | (
        {"bench-e2e.svg"} if with_e2e else set()
    )
    assert set(first) == expected
    assert first == second  # byte-identical on a re-run
    for name, content in first.items():
        if name.endswith(".svg"):
            text = content.decode()
            assert text.lstrip().startswith("<?xml") and "<svg" in text and "<dc:date>" not in text, name
    latency = first["bench-latency.svg"].decode()
    assert "near hit (in a row of 10)" in latency and "get_many(100), all evicted" in latency
    hit = report["cases"]["hit"]
    ratio, median = hit["ratio_to_floor"], hit["median_us"]
    # The hit: its ratio to the floor and its median, on the chart and in the table.
    assert f"{ratio:.2f}\N{MULTIPLICATION SIGN}  ({median:.0f} µs)" in latency
    table = first["bench-figures.md"].decode()
    assert f"| `hit` | CachedSession.get, cached | {median:,.1f} | {ratio:.2f} |" in table
    [target] = [t for t in report["targets"] if t["target"] == "hit <= 1.5 x floor"]
    assert f"| hit <= 1.5 x floor | {target['measured']:.3f} | 1.5 | {target['verdict']} |" in table
    if with_e2e:
        e2e = first["bench-e2e.svg"].decode()
        assert "AsyncCachedSession" in e2e and "2,900" in e2e and "64 concurrent clients" in e2e
        assert "| `CachedSession` | 2,900 | 20.30 | 51.00 |" in table


def test_committed_charts_are_those_of_the_published_run() -> None:
    img = ROOT / "docs" / "img"
    table = (img / "bench-figures.md").read_text(encoding="utf-8")
    report = json.loads(PUBLISHED.read_text(encoding="utf-8"))
    assert f"Run of {report['date']}" in table
    for name in ("bench-latency.svg", "bench-throughput.svg"):
        assert (img / name).read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert (img / "bench-e2e.svg").exists() == bool(report.get("e2e"))
