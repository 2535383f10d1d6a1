"""The scaling curves of a run, as a table (`results/scaling.md`) and a plot (`scaling.png`).

Drawn from the `gpu_scaling`, `sse_fanout` and `list_latency` entries of `latest.json`,
whichever are there; matplotlib is a development dependency, so without it only the table
is written.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

Scenario = dict[str, Any]


def _by_name(scenarios: list[Scenario]) -> dict[str, Scenario]:
    return {s["name"]: s for s in scenarios if s.get("value") is not None}


def table(scenarios: list[Scenario]) -> str:
    """The curves' points as Markdown tables (empty when none of the scenarios ran)."""
    found = _by_name(scenarios)
    parts: list[str] = []
    if scaling := found.get("gpu_scaling"):
        d = scaling["details"]
        parts += [
            f"### gpu_scaling (stream cost {d['stream_cost_s']} s, "
            f"{d['slots_per_node']} streams in flight per node)",
            "",
            "| nodes | streams/s | nodes' capacity | of capacity | proxy CPU ms/stream "
            "| proxy cores busy | proxy streams/s per core |",
            "|---|---|---|---|---|---|---|",
        ]
        for p in [*d["points"], *([d["ceiling"]] if "ceiling" in d else [])]:
            capacity = p["node_capacity_per_s"] or "unbounded (cost 0)"
            parts.append(
                f"| {p['nodes']} | {p['streams_per_s']} | {capacity} | {p['of_capacity'] or '-'} "
                f"| {p['proxy_cpu_ms_per_stream']} | {p['proxy_cores_busy']} "
                f"| {p['proxy_streams_per_core_s']} |"
            )
        parts.append("")
    if fanout := found.get("sse_fanout"):
        points = fanout["details"].get("points", [])
        parts += [
            "### sse_fanout (one gateway process)",
            "",
            "| subscribers | events/s | p50 ms | p99 ms | gateway KiB/subscriber | delivered |",
            "|---|---|---|---|---|---|",
        ]
        for p in points:
            parts.append(
                f"| {p['subscribers']} | {p['events_per_s']} | {p['p50_ms']} | {p['p99_ms']} "
                f"| {p['gateway_kib_per_subscriber']} "
                f"| {p['messages_delivered']}/{p['messages_expected']} |"
            )
        parts.append("")
    if listing := found.get("list_latency"):
        d = listing["details"]
        parts += [
            f"### list_latency ({d['meetings']} meetings, page size {d['page_size']})",
            "",
            "| request | p50 ms | p99 ms |",
            "|---|---|---|",
            f"| first page | {d['first_page']['p50_ms']} | {d['first_page']['p99_ms']} |",
            f"| page 1000 (by tokens) | {d['page_1000']['p50_ms']} | {d['page_1000']['p99_ms']} |",
            f"| GetMeeting | {d['get_meeting']['p50_ms']} | {d['get_meeting']['p99_ms']} |",
            "",
        ]
    return "\n".join(parts)


def plot(scenarios: list[Scenario], path: Path) -> bool:
    """Draws the curves into `path` (PNG).

    Returns:
        False when matplotlib is not installed or no curve scenario ran.
    """
    found = _by_name(scenarios)
    wanted = [n for n in ("gpu_scaling", "sse_fanout", "list_latency") if n in found]
    if not wanted or importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(wanted), figsize=(5 * len(wanted), 4), squeeze=False)
    for axis, name in zip(axes[0], wanted, strict=True):
        details = found[name]["details"]
        if name == "gpu_scaling":
            points = details["points"]
            nodes = [p["nodes"] for p in points]
            axis.plot(nodes, [p["streams_per_s"] for p in points], "o-", label="measured")
            axis.plot(
                nodes, [p["node_capacity_per_s"] for p in points], "--", label="nodes' capacity"
            )
            if "ceiling" in details:
                axis.axhline(
                    details["ceiling"]["streams_per_s"],
                    color="grey",
                    linestyle=":",
                    label="ceiling (cost 0)",
                )
            axis.set(xlabel="GPU nodes (mock)", ylabel="streams/s", title="recognition streams")
            axis.set_xticks(nodes)
        elif name == "sse_fanout":
            points = details["points"]
            subscribers = [p["subscribers"] for p in points]
            axis.plot(subscribers, [p["p99_ms"] for p in points], "o-", label="p99 ms")
            axis.plot(subscribers, [p["p50_ms"] for p in points], "o-", label="p50 ms")
            axis.set(xlabel="SSE subscribers", ylabel="delivery latency (ms)", title="SSE fan-out")
            twin = axis.twinx()
            twin.plot(
                subscribers,
                [p["gateway_kib_per_subscriber"] for p in points],
                "s:",
                color="grey",
            )
            twin.set_ylabel("gateway KiB per subscriber")
        else:
            marks = sorted(
                (int(key.split("_")[2]), value)
                for key, value in details.items()
                if key.startswith("walk_page_")
            )
            axis.plot([m[0] for m in marks], [m[1] for m in marks], "o-", label="page by tokens")
            axis.axhline(
                details["get_meeting"]["p50_ms"], color="grey", linestyle=":", label="GetMeeting"
            )
            axis.set_xscale("log")
            axis.set(
                xlabel="page number",
                ylabel="p50 latency (ms)",
                title=f"ListMeetings over {details['meetings']} meetings",
            )
            axis.set_ylim(bottom=0)
        axis.legend(loc="best", fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write(scenarios: list[Scenario], results: Path, note: str) -> list[Path]:
    """Writes `scaling.md` and `scaling.png` into `results`; returns what was written."""
    written: list[Path] = []
    results.mkdir(parents=True, exist_ok=True)
    text = table(scenarios)
    if text:
        path = results / "scaling.md"
        path.write_text(f"# Scaling curves\n\n{note}\n\n{text}")
        written.append(path)
    if plot(scenarios, results / "scaling.png"):
        written.append(results / "scaling.png")
    return written
