"""The report: ratios, the verdicts on the specification's targets, and the text output."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.common import (
    CLUSTER_MASTERS,
    CLUSTER_TOLERANCE,
    HIT_LIMIT,
    MANY,
    MANY_HIT_LIMIT,
    MANY_MISS_RTTS,
    MANY_MISS_TOLERANCE,
    MISS_MARGIN,
    PLAIN_TOLERANCE,
    RMW_TOLERANCE,
)
from benchmarks.state import Run


def case_table(bench: Run) -> dict[str, dict[str, Any]]:
    table = {}
    for name, series in bench.series.items():
        phase = next((p for p in ("async_", "cluster_") if name.startswith(p)), "")
        summary = series.summary()
        summary["ratio_to_floor"] = series.median_us / bench.series[f"{phase}floor"].median_us
        plain = "async_plain_get" if phase == "async_" else "plain_get"
        summary["ratio_to_plain"] = series.median_us / bench.series[plain].median_us
        table[name] = summary
    return table


def ratio_of(
    bench: Run, numerator: str, denominator: str, rtt: str | None = None, rtts: int = 2
) -> tuple[list[float], float]:
    """The ratio within each round, and the ratio of the medians over all samples.

    With ``rtt``, the denominator is ``denominator + rtts x rtt``.
    """
    top, bottom = bench.series[numerator], bench.series[denominator]
    extra = bench.series[rtt] if rtt is not None else None
    pooled = bottom.median_us + (rtts * extra.median_us if extra is not None else 0.0)
    per_round = [
        t / (b + (rtts * extra.round_medians[i] if extra is not None else 0.0))
        for i, (t, b) in enumerate(zip(top.round_medians, bottom.round_medians, strict=True))
    ]
    return per_round, top.median_us / pooled


def targets(bench: Run) -> list[dict[str, Any]]:
    def ratio(numerator: str, denominator: str, rtt: str | None = None, rtts: int = 2) -> tuple[list[float], float]:
        return ratio_of(bench, numerator, denominator, rtt, rtts)

    targets = []
    for prefix, label in (("", ""), ("async_", "async ")):
        targets.append(
            target(f"{label}hit <= {HIT_LIMIT} x floor", *ratio(f"{prefix}hit", f"{prefix}floor"), HIT_LIMIT)
        )
        targets.append(
            target(
                f"{label}miss <= (plain_get + 2 rtt) x {MISS_MARGIN}",
                *ratio(f"{prefix}miss", f"{prefix}plain_get", rtt=f"{prefix}rtt"),
                MISS_MARGIN,
            )
        )
    targets.append(target("rmw_cached <= rmw_plain", *ratio("rmw_cached", "rmw_plain"), 1.0, tolerance=RMW_TOLERANCE))
    targets.append(
        target(
            "plain_get_configured ~ plain_get_unimported",
            *ratio("plain_get_configured", "plain_get_unimported"),
            1.0,
            tolerance=PLAIN_TOLERANCE,
            two_sided=True,
        )
    )
    targets.append(target(f"many_hit <= {MANY_HIT_LIMIT:g} x hit", *ratio("many_hit", "hit_with_many"), MANY_HIT_LIMIT))
    targets.append(
        target(
            f"many_miss <= plain_select_in + {MANY_MISS_RTTS} rtt",
            *ratio("many_miss", "plain_select_in", rtt="rtt_with_many", rtts=MANY_MISS_RTTS),
            1.0,
            tolerance=MANY_MISS_TOLERANCE,
        )
    )
    targets.append(
        target(
            "cluster_hit <= hit (single server)",
            *ratio("cluster_hit", "hit_with_cluster"),
            1.0,
            tolerance=CLUSTER_TOLERANCE,
        )
    )
    return targets


def many_note(bench: Run) -> str:
    """What one more cached row costs get_many(), against what the raw read of it costs."""
    per_row = (bench.series["many_hit"].median_us - bench.series["hit_with_many"].median_us) / (MANY - 1)
    floor_per_row = (bench.series["many_floor"].median_us - bench.series["floor"].median_us) / (MANY - 1)
    many_to_floor = statistics.median(ratio_of(bench, "many_hit", "many_floor")[0])
    return (
        f"get_many() of cached rows: {per_row:.1f} µs a row beyond one hit (the raw MGET + unpack: "
        f"{floor_per_row:.1f} µs a row beyond one GET + unpack); many_hit / many_floor {many_to_floor:.2f}"
    )


def cluster_summary(bench: Run) -> dict[str, float]:
    """The cluster's hit against its own floor, and against the single server's, in one phase."""
    in_cluster = statistics.median(ratio_of(bench, "cluster_hit", "cluster_floor")[0])
    single = statistics.median(ratio_of(bench, "hit_with_cluster", "floor_with_cluster")[0])
    client = statistics.median(ratio_of(bench, "cluster_floor", "floor_with_cluster")[0])
    to_single = statistics.median(ratio_of(bench, "cluster_hit", "hit_with_cluster")[0])
    bench.notes.append(
        f"cluster ({CLUSTER_MASTERS} masters, its own phase after the others, every case interleaved):"
        f" cluster_hit / hit_with_cluster {to_single:.2f}; cluster_hit / cluster_floor {in_cluster:.2f} vs"
        f" hit_with_cluster / floor_with_cluster {single:.2f}; the cluster client alone: cluster_floor /"
        f" floor_with_cluster {client:.2f}"
    )
    return {
        "masters": CLUSTER_MASTERS,
        "hit_to_floor": in_cluster,
        "single_server_hit_to_floor": single,
        "floor_to_single_server_floor": client,
        "hit_to_single_server_hit": to_single,
    }


def target(
    name: str,
    per_round: list[float],
    of_medians: float,
    limit: float,
    tolerance: float = 0.0,
    two_sided: bool = False,
) -> dict[str, Any]:
    """A verdict on the median of the per-round ratios: cases of one round ran close in time."""
    measured = statistics.median(per_round)
    if two_sided:
        verdict = "PASS" if abs(measured - limit) <= tolerance else "FAIL"
    elif measured <= limit:
        verdict = "PASS"
    elif measured <= limit + tolerance:
        verdict = f"PASS (within the +{tolerance:.0%} noise tolerance)"
    else:
        verdict = "FAIL"
    return {
        "target": name,
        "measured": measured,
        "per_round": per_round,
        "ratio_of_medians": of_medians,
        "limit": limit,
        "tolerance": tolerance,
        "two_sided": two_sided,
        "verdict": verdict,
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
        f"{'case':<22}{'median µs':>11}{'rounds µs':>17}{'x floor':>9}{'x plain':>9}  what",
    ]
    for name, case in report["cases"].items():
        low, high = min(case["round_medians_us"]), max(case["round_medians_us"])
        lines.append(
            f"{name:<22}{case['median_us']:>11.1f}{f'{low:.1f}-{high:.1f}':>17}"
            f"{case['ratio_to_floor']:>9.2f}{case['ratio_to_plain']:>9.2f}  {case['what']}"
        )
    lines += ["", f"{'target':<44}{'measured':>9}{'rounds':>13}{'limit':>10}  verdict"]
    for t in report["targets"]:
        spread = f"{min(t['per_round']):.2f}-{max(t['per_round']):.2f}"
        limit = f"{t['limit']:.2f}" + (f"±{t['tolerance']:.0%}" if t["two_sided"] else "")
        lines.append(f"{t['target']:<44}{t['measured']:>8.2f}x{spread:>13}{limit:>10}  {t['verdict']}")
    lines += ["", "throughput (median over rounds):"]
    for name, rate in report["throughput"].items():
        lines.append(f"  {name:<20}{rate['median_ops_per_s']:>10.0f} ops/s  {rate['what']}")
    lines.append(f"  hit / floor throughput: {report['throughput_ratio_hit_to_floor']:.2f}")
    mem = report["memory"]
    lines += [
        "",
        f"memory per entry (median of {mem['sampled_keys']} keys): MEMORY USAGE {mem['entry_memory_usage_bytes']} B"
        f" vs value {mem['entry_value_bytes']} B + key {mem['entry_key_bytes']} B"
        f" = {mem['ratio_to_value_plus_key']:.2f}x (overhead {mem['overhead_bytes']} B);"
        f" a plain msgpack array of the row is {mem['plain_row_msgpack_bytes']} B",
        "",
        *(f"note: {note}" for note in report["notes"]),
        f"elapsed: {report['elapsed_s']:.1f} s",
    ]
    return "\n".join(lines)
