"""The report: every figure of a run in one JSON structure, and the text printed from it.

The JSON file is the record (every sample's summary, every round's ratio); the text is
rendered from that structure alone, so that both always say the same.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
from typing import Any

import msgpack
from sqlalchemy import text
from sqlmodel import Session

from benchmarks.common import CLUSTER_MASTERS, CONCURRENCY, MANY, Settings
from benchmarks.e2e import render as e2e_lines
from benchmarks.targets import ratios, targets
from benchmarks.timing import Results, Series
from benchmarks.workload import Workload

# How to read the figures; the phases add what they learn about their own conditions.
CASE_NOTES = [
    "x floor / x plain: ratios to floor and plain_get (async: async_floor, async_plain_get; "
    "cluster: cluster_floor, plain_get), all measured in this process",
    "plain_get_unimported and plain_get_configured ran in two child processes, identical "
    "except that the second imported and configured sqlmodel-cache (a fresh pair each round)",
    "targets: the median over rounds of the ratio within each round ('rounds' is its range)",
    f"many_*: one get_many() of {MANY} distinct read rows in a new session; hit_with_many and "
    "rtt_with_many are hit and rtt again, interleaved with the get_many() cases; many_floor is "
    "the raw MGET and msgpack.unpackb of the same entries",
]


def figures(results: Results, memory: dict[str, Any], versions: dict[str, str], herd: dict[str, Any]) -> dict[str, Any]:
    """What the run measured; the notes end with the cluster's and get_many()'s summaries."""
    cluster = cluster_summary(results.series)
    results.notes.append(cluster_note(cluster))
    results.notes.append(many_note(results.series))
    rates = results.rates
    return {
        "versions": versions,
        "cases": case_table(results.series),
        "throughput": {name: rate.summary() for name, rate in rates.items()},
        "throughput_ratio_hit_to_floor": rates["async_hit_x50"].median / rates["async_floor_x50"].median,
        "memory": memory,
        "targets": targets(results.series, herd, rates),
        "herd": herd,
        "cluster": cluster,
        "notes": results.notes,
    }


def settings_summary(settings: Settings, quick: bool) -> dict[str, Any]:
    return {
        "rounds": settings.rounds,
        "ops": settings.ops,
        "many_ops": settings.many_ops,
        "many_rows": MANY,
        "rows": settings.rows,
        "warmup_ops": settings.warmup_ops,
        "many_warmup_ops": settings.many_warmup_ops,
        "concurrency": CONCURRENCY,
        "ops_per_task": settings.per_task,
        "gc": "disabled in timed loops" if settings.gc_off else "enabled",
        "quick": quick,
    }


def case_table(series: dict[str, Series]) -> dict[str, dict[str, Any]]:
    table = {}
    for name, case in series.items():
        phase = next((p for p in ("async_", "cluster_") if name.startswith(p)), "")
        summary = case.summary()
        summary["ratio_to_floor"] = case.median_us / series[f"{phase}floor"].median_us
        plain = "async_plain_get" if phase == "async_" else "plain_get"
        summary["ratio_to_plain"] = case.median_us / series[plain].median_us
        table[name] = summary
    return table


def many_note(series: dict[str, Series]) -> str:
    """What one more cached row costs get_many(), against what the raw read of it costs."""
    per_row = (series["many_hit"].median_us - series["hit_with_many"].median_us) / (MANY - 1)
    floor_per_row = (series["many_floor"].median_us - series["floor"].median_us) / (MANY - 1)
    many_to_floor = statistics.median(ratios(series, "many_hit", "many_floor")[0])
    return (
        f"get_many() of cached rows: {per_row:.1f} µs a row beyond one hit (the raw MGET + unpack: "
        f"{floor_per_row:.1f} µs a row beyond one GET + unpack); many_hit / many_floor {many_to_floor:.2f}"
    )


def cluster_summary(series: dict[str, Series]) -> dict[str, float]:
    """The cluster's hit against its own floor, and against the single server's, in one phase."""

    def median_ratio(numerator: str, denominator: str) -> float:
        return statistics.median(ratios(series, numerator, denominator)[0])

    return {
        "masters": CLUSTER_MASTERS,
        "hit_to_floor": median_ratio("cluster_hit", "cluster_floor"),
        "single_server_hit_to_floor": median_ratio("hit_with_cluster", "floor_with_cluster"),
        "floor_to_single_server_floor": median_ratio("cluster_floor", "floor_with_cluster"),
        "hit_to_single_server_hit": median_ratio("cluster_hit", "hit_with_cluster"),
    }


def cluster_note(cluster: dict[str, float]) -> str:
    return (
        f"cluster ({cluster['masters']} masters, its own phase after the others, every case interleaved):"
        f" cluster_hit / hit_with_cluster {cluster['hit_to_single_server_hit']:.2f}; cluster_hit / cluster_floor"
        f" {cluster['hit_to_floor']:.2f} vs hit_with_cluster / floor_with_cluster"
        f" {cluster['single_server_hit_to_floor']:.2f}; the cluster client alone: cluster_floor /"
        f" floor_with_cluster {cluster['floor_to_single_server_floor']:.2f}"
    )


def entry_memory(workload: Workload) -> dict[str, Any]:
    """What one cached row costs Redis, against its bytes and against a plain msgpack array of it."""
    client, model = workload.client, workload.model
    sample = workload.read_pks[:50]
    usage, entry, keys, floor_usage, row = [], [], [], [], []
    for pk in sample:
        key = workload.library_keys[pk]
        value = client.get(key)
        assert isinstance(value, bytes)
        usage.append(int(client.memory_usage(key, samples=0) or 0))
        floor_usage.append(int(client.memory_usage(workload.floor_keys[pk], samples=0) or 0))
        entry.append(len(value))
        keys.append(len(key))
        with Session(workload.engine) as session:
            instance = session.get(model, pk)
            values = [getattr(instance, column.name) for column in model.__table__.columns]
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


def versions(workload: Workload) -> dict[str, str]:
    def package(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    with workload.engine.connect() as conn:
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
        "redis-server": str(workload.client.info("server")["redis_version"]),
        "postgresql": postgres,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs",
    }


def render(report: dict[str, Any]) -> str:
    lines = [
        f"sqlmodel-cache benchmark, {report['date']}",
        f"command: {report['command']}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "settings: "
        + ", ".join(f"{k}={v}" for k, v in report["settings"].items())
        + " (median of all samples; 'rounds' is the spread of the per-round medians)",
        "",
        *case_lines(report["cases"]),
        "",
        *target_lines(report["targets"]),
        "",
        *throughput_lines(report),
        "",
        *herd_lines(report["herd"]),
        "",
        memory_line(report["memory"]),
        "",
        *([*e2e_lines(report["e2e"]), ""] if "e2e" in report else []),
        *(f"note: {note}" for note in report["notes"]),
        f"elapsed: {report['elapsed_s']:.1f} s",
    ]
    return "\n".join(lines)


def case_lines(cases: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"{'case':<22}{'median µs':>11}{'rounds µs':>17}{'x floor':>9}{'x plain':>9}  what"]
    for name, case in cases.items():
        low, high = min(case["round_medians_us"]), max(case["round_medians_us"])
        lines.append(
            f"{name:<22}{case['median_us']:>11.1f}{f'{low:.1f}-{high:.1f}':>17}"
            f"{case['ratio_to_floor']:>9.2f}{case['ratio_to_plain']:>9.2f}  {case['what']}"
        )
    return lines


def target_lines(verdicts: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'target':<44}{'measured':>9}{'rounds':>13}{'limit':>10}  verdict"]
    for t in verdicts:
        spread = f"{min(t['per_round']):.2f}-{max(t['per_round']):.2f}"
        limit = f"{t['limit']:.2f}" + (f"±{t['tolerance']:.0%}" if t["two_sided"] else "")
        lines.append(f"{t['target']:<44}{t['measured']:>8.2f}x{spread:>13}{limit:>10}  {t['verdict']}")
    return lines


def throughput_lines(report: dict[str, Any]) -> list[str]:
    lines = ["throughput (median over rounds):"]
    for name, rate in report["throughput"].items():
        lines.append(f"  {name:<20}{rate['median_ops_per_s']:>10.0f} ops/s  {rate['what']}")
    lines.append(f"  hit / floor throughput: {report['throughput_ratio_hit_to_floor']:.2f}")
    return lines


def herd_lines(herd: dict[str, Any]) -> list[str]:
    lines = [f"herds of {next(iter(herd.values()))['readers']} threads on one cold row (median over herds):"]
    for name, variant in herd.items():
        lines.append(
            f"  {name:<14}{variant['median_selects']:>5g} SELECTs (max {variant['max_selects']}), latency median"
            f" {variant['median_latency_us']:.0f} µs, max {variant['max_latency_us']:.0f} µs  {variant['what']}"
        )
    return lines


def memory_line(mem: dict[str, Any]) -> str:
    return (
        f"memory per entry (median of {mem['sampled_keys']} keys): MEMORY USAGE {mem['entry_memory_usage_bytes']} B"
        f" vs value {mem['entry_value_bytes']} B + key {mem['entry_key_bytes']} B"
        f" = {mem['ratio_to_value_plus_key']:.2f}x (overhead {mem['overhead_bytes']} B);"
        f" a plain msgpack array of the row is {mem['plain_row_msgpack_bytes']} B"
    )
