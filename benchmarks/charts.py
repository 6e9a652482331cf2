"""Charts and a table of figures for the documentation, drawn from one benchmark run's JSON.

    python -m benchmarks.charts benchmarks/published.json docs/img/

writes ``bench-latency.svg`` (cached reads as multiples of the raw ``GET`` + unpack, each
with its target), ``bench-throughput.svg`` (50 asyncio tasks: hits against raw reads),
``bench-e2e.svg`` when the JSON has an ``e2e`` section (an HTTP service's requests per
second and latency with each session class), and ``bench-figures.md``, the table the
performance page includes. The same JSON gives byte-identical files: no dates, no random ids.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from benchmarks.common import NEAR_BURST
from benchmarks.targets import (
    GET_BY_HIT_LIMIT,
    HIT_LIMIT,
    MANY_HIT_LIMIT,
    MANY_MISS_RTTS,
    MISS_MARGIN,
    NEAR_HIT_LIMIT,
    NEGATIVE_HIT_LIMIT,
)

LATENCY = "bench-latency.svg"
THROUGHPUT = "bench-throughput.svg"
E2E = "bench-e2e.svg"
TABLE = "bench-figures.md"

CACHED = "#2a7ab0"
PLAIN = "#9a9a9a"
TARGET = "#c0392b"
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Bar:
    """One cached read: its time as a multiple of its floor, and its target in the same unit."""

    label: str
    ratio: float
    median_us: float
    target: float | None


def _median(cases: dict[str, Any], name: str) -> float:
    return float(cases[name]["median_us"])


def latency_bars(cases: dict[str, Any]) -> list[Bar]:
    """The cases the targets speak of, each against the floor of its own client (sync, asyncio,
    cluster); a target stated against other cases is converted with this run's medians."""

    def bar(label: str, name: str, target: float | None, per: int = 1) -> Bar | None:
        if name not in cases:
            return None
        case = cases[name]
        return Bar(label, float(case["ratio_to_floor"]) / per, float(case["median_us"]) / per, target)

    def over(floor: str, *terms: tuple[float, str]) -> float | None:
        if not all(name in cases for _, name in terms) or floor not in cases:
            return None
        return sum(weight * _median(cases, name) for weight, name in terms) / _median(cases, floor)

    bars = [
        bar("hit", "hit", HIT_LIMIT),
        bar("negative hit", "negative_hit", NEGATIVE_HIT_LIMIT),
        bar("get_by() hit", "get_by_hit", GET_BY_HIT_LIMIT),
        bar(f"near hit (in a row of {NEAR_BURST})", "near_hit_x10", NEAR_HIT_LIMIT, per=NEAR_BURST),
        bar("near hit (alone)", "near_hit", None),
        bar("async hit", "async_hit", HIT_LIMIT),
        bar("cluster hit", "cluster_hit", over("cluster_floor", (1.0, "hit_with_cluster"))),
        bar("miss", "miss", over("floor", (MISS_MARGIN, "plain_get"), (2 * MISS_MARGIN, "rtt"))),
        bar(
            "async miss",
            "async_miss",
            over("async_floor", (MISS_MARGIN, "async_plain_get"), (2 * MISS_MARGIN, "async_rtt")),
        ),
        bar("get_many(100), all cached", "many_hit", over("floor", (MANY_HIT_LIMIT, "hit_with_many"))),
        bar(
            "get_many(100), all evicted",
            "many_miss",
            over("floor", (1.0, "plain_select_in"), (float(MANY_MISS_RTTS), "rtt_with_many")),
        ),
    ]
    return [b for b in bars if b is not None]


def _new_figure(width: float, height: float) -> tuple[Figure, Any]:
    figure, axes = plt.subplots(figsize=(width, height), layout="constrained")
    return figure, axes


def _save(figure: Figure, path: Path) -> None:
    # Metadata "Date": None and a fixed hash salt make the SVG the same bytes on every run.
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)


def draw_latency(report: dict[str, Any], path: Path) -> None:
    bars = latency_bars(report["cases"])
    figure, axes = _new_figure(8.0, 0.42 * len(bars) + 1.4)
    rows = list(range(len(bars)))[::-1]
    axes.barh(rows, [b.ratio for b in bars], color=CACHED, height=0.6)
    for row, b in zip(rows, bars, strict=True):
        right = max(b.ratio, b.target or 0.0) * 1.08
        axes.text(right, row, f"{b.ratio:.2f}{TIMES}  ({b.median_us:,.0f} µs)", va="center", fontsize=8)
        if b.target is not None:
            axes.plot([b.target, b.target], [row - 0.38, row + 0.38], color=TARGET, linewidth=2)
    axes.plot([], [], color=TARGET, linewidth=2, label="target")
    axes.axvline(1.0, color=PLAIN, linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlim(0.08, max(*(b.ratio for b in bars), *(b.target or 0.0 for b in bars)) * 3)
    axes.set_yticks(rows, [b.label for b in bars])
    axes.set_xlabel(f"median time, {TIMES} the raw GET + unpack of the same client (log scale; dashed: 1{TIMES})")
    axes.set_title(f"Cached reads against the floor ({report.get('date', '')[:10]})", fontsize=10)
    axes.legend(loc="lower right", fontsize=8)
    _save(figure, path)


def draw_throughput(report: dict[str, Any], path: Path) -> None:
    rates = report["throughput"]
    names = [("async_floor_x50", "raw GET + unpack", PLAIN), ("async_hit_x50", "AsyncCachedSession.get hits", CACHED)]
    present = [(name, label, color) for name, label, color in names if name in rates]
    medians = [float(rates[name]["median_ops_per_s"]) for name, _, _ in present]
    lows = [m - min(rates[name]["rounds_ops_per_s"]) for m, (name, _, _) in zip(medians, present, strict=True)]
    highs = [max(rates[name]["rounds_ops_per_s"]) - m for m, (name, _, _) in zip(medians, present, strict=True)]
    figure, axes = _new_figure(6.0, 3.2)
    positions = list(range(len(present)))
    axes.bar(positions, medians, color=[c for _, _, c in present], yerr=[lows, highs], capsize=6, width=0.55)
    for x, median in zip(positions, medians, strict=True):
        axes.text(x, median / 2, f"{median:,.0f}/s", ha="center", va="center", fontsize=9, color="white")
    axes.set_xticks(positions, [label for _, label, _ in present])
    axes.set_ylabel("reads per second (median; whiskers: rounds' range)")
    tasks = report.get("settings", {}).get("concurrency", 50)
    axes.set_title(f"{tasks} asyncio tasks on one event loop", fontsize=10)
    _save(figure, path)


def draw_e2e(e2e: dict[str, Any], path: Path) -> None:
    variants = e2e["variants"]
    labels = list(variants)
    colors = [PLAIN if label == "Session" else CACHED for label in labels]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4), layout="constrained")
    positions = list(range(len(labels)))
    rps = [float(variants[label]["rps"]) for label in labels]
    left.bar(positions, rps, color=colors, width=0.6)
    for x, value in zip(positions, rps, strict=True):
        left.text(x, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=8)
    left.set_xticks(positions, labels, fontsize=8)
    left.set_ylabel("requests per second")
    width = 0.38
    for offset, field, hatch in ((-width / 2, "p50_ms", ""), (width / 2, "p99_ms", "//")):
        values = [float(variants[label][field]) for label in labels]
        right.bar([x + offset for x in positions], values, width=width, color=colors, hatch=hatch, edgecolor="white")
        right.bar([0], [0], color="white", edgecolor="black", hatch=hatch, label=field[:3])  # the legend's key
        for x, value in zip(positions, values, strict=True):
            right.text(x + offset, value, f"{value:.1f}", ha="center", va="bottom", fontsize=7)
    right.set_xticks(positions, labels, fontsize=8)
    right.set_ylabel("latency, ms")
    right.legend(fontsize=8)
    figure.suptitle(
        f"HTTP end to end: {e2e['concurrency']} concurrent clients, {e2e['duration_s']:g} s per variant "
        f"({str(e2e['date'])[:10]})",
        fontsize=10,
    )
    _save(figure, path)


def figures_table(report: dict[str, Any]) -> str:
    """The performance page's tables: every case's median and ratio, every target's verdict."""
    lines = [f"| case | what | median µs | {TIMES} floor |", "| --- | --- | ---: | ---: |"]
    for name, case in report["cases"].items():
        lines.append(f"| `{name}` | {case['what']} | {case['median_us']:,.1f} | {case['ratio_to_floor']:.2f} |")
    lines += ["", "| target | measured | limit | verdict |", "| --- | ---: | ---: | --- |"]
    for verdict in report.get("targets", []):
        lines.append(
            f"| {verdict['target']} | {verdict['measured']:.3f} | {verdict['limit']:g} | {verdict['verdict']} |"
        )
    if report.get("throughput"):
        lines += ["", "| throughput | reads/s (median over rounds) |", "| --- | ---: |"]
        for rate in report["throughput"].values():
            lines.append(f"| {rate['what']} | {rate['median_ops_per_s']:,.0f} |")
    e2e = report.get("e2e")
    if e2e:
        lines += ["", "| HTTP end to end | requests/s | p50 ms | p99 ms |", "| --- | ---: | ---: | ---: |"]
        for label, variant in e2e["variants"].items():
            lines.append(f"| `{label}` | {variant['rps']:,.0f} | {variant['p50_ms']:.2f} | {variant['p99_ms']:.2f} |")
    versions = report.get("versions", {})
    context = ", ".join(f"{k} {v}" for k, v in versions.items())
    lines += ["", f"Run of {report.get('date', 'an unknown date')}: {context}."]
    return "\n".join(lines) + "\n"


def draw_all(report: dict[str, Any], out: Path) -> list[Path]:
    """Every chart this report has data for, and the table; the paths written."""
    matplotlib.rcParams.update({"svg.hashsalt": "sqlmodel-cache", "svg.fonttype": "none", "font.size": 9})
    out.mkdir(parents=True, exist_ok=True)
    written = [out / LATENCY, out / THROUGHPUT]
    draw_latency(report, written[0])
    draw_throughput(report, written[1])
    if report.get("e2e"):
        written.append(out / E2E)
        draw_e2e(report["e2e"], written[-1])
    written.append(out / TABLE)
    written[-1].write_text(figures_table(report), encoding="utf-8")
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m benchmarks.charts BENCH.json OUT_DIR", file=sys.stderr)
        return 2
    report = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    for path in draw_all(report, Path(argv[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
