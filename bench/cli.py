"""`python -m bench [--quick] [--only NAME ...]`: run the scenarios, print and record results.

Results go to `bench/results/latest.json` (one object per scenario) and `bench/RESULTS.md`
(machine, versions, command, table, what limits each figure). With `--only`, the scenarios
not run keep their previous entries, so a partial run never erases a full one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import curves
from bench.context import BenchContext, bench_context
from bench.model import Result
from bench.report import machine_info, write_markdown
from bench.scenarios.asr import asr
from bench.scenarios.gateway import gateway_overhead, gateway_vs_fastapi
from bench.scenarios.gpu_scaling import gpu_scaling
from bench.scenarios.ingest import ingest
from bench.scenarios.listing import list_latency
from bench.scenarios.live import live_cadence, live_latency
from bench.scenarios.live_real import live_latency_real
from bench.scenarios.pipeline import pipeline_overhead
from bench.scenarios.proxy import proxy_overhead
from bench.scenarios.search import search
from bench.scenarios.sse import sse_fanout
from bench.scenarios.summaries import summaries
from bench.scenarios.upload import upload
from bench.scenarios.upload_s3 import upload_s3
from bench.scenarios.vocabulary import vocabulary
from bench.scenarios.voice_id import voice_id
from bench.signals import STOPPED, stoppable

Scenario = Callable[[BenchContext], Awaitable[Result]]

SCENARIOS: dict[str, Scenario] = {
    "gateway_overhead": gateway_overhead,
    "gateway_vs_fastapi": gateway_vs_fastapi,
    "sse_fanout": sse_fanout,
    "upload": upload,
    "upload_s3": upload_s3,
    "ingest": ingest,
    "proxy_overhead": proxy_overhead,
    "live_latency": live_latency,
    "live_cadence": live_cadence,
    "live_latency_real": live_latency_real,
    "asr": asr,
    "search": search,
    "gpu_scaling": gpu_scaling,
    "pipeline_overhead": pipeline_overhead,
    "list_latency": list_latency,
    "summaries": summaries,
    "vocabulary": vocabulary,
    "voice_id": voice_id,
}

BENCH_DIR = Path(__file__).resolve().parent


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short version of each scenario")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=BENCH_DIR,
        help="where results/latest.json and RESULTS.md go (default: bench/)",
    )
    return parser


def _failed(name: str, error: BaseException) -> Result:
    text = "".join(traceback.format_exception_only(error)).strip()
    return Result(name, None, "", None, None, "", False, limits=f"the scenario failed: {text}")


async def run_scenarios(names: list[str], quick: bool, console: Console) -> list[Result]:
    """Runs scenarios one after another; a failing one is reported and the rest still run.

    Args:
        names: Scenario names, in order.
        quick: Short versions.
        console: Where progress goes.

    Returns:
        One result per scenario.
    """
    results = []
    async with bench_context(quick) as context:
        for name in names:
            console.print(f"[bold]{name}[/bold] ...")
            started = time.monotonic()
            try:
                result = await SCENARIOS[name](context)
            except Exception as error:
                console.print(traceback.format_exc(), style="red", markup=False)
                result = _failed(name, error)
            console.print(f"  done in {time.monotonic() - started:.1f} s")
            results.append(result)
    return results


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def render_table(results: list[Result]) -> Table:
    """The results as a rich table."""
    table = Table(title="meeting-mesh benchmarks")
    for column in ("scenario", "value", "unit", "reference", "ratio", "goal", "met"):
        table.add_column(column)
    for result in results:
        met = {True: "yes", False: "NO", None: "n/a"}[result.met]
        table.add_row(
            result.name,
            _cell(result.value),
            result.unit,
            _cell(result.reference),
            _cell(result.ratio),
            result.goal,
            met,
        )
    return table


def _merge(previous: Path, results: list[Result]) -> list[dict[str, object]]:
    fresh = {r.name: r.to_json() for r in results}
    merged: dict[str, dict[str, object]] = {}
    if previous.exists():
        for item in json.loads(previous.read_text()).get("scenarios", []):
            merged[str(item["name"])] = item
    merged.update(fresh)
    return [merged[name] for name in SCENARIOS if name in merged]


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmarks.

    Args:
        argv: Command-line arguments (default: sys.argv[1:]).

    Returns:
        0 when every scenario ran (goals met or not), 1 when one failed to run, 130 when
        stopped by Ctrl-C or SIGTERM.
    """
    args = _parser().parse_args(argv)
    names = args.only or list(SCENARIOS)
    console = Console()
    started = time.monotonic()
    try:
        results = asyncio.run(stoppable(run_scenarios(names, args.quick, console)))
    except STOPPED:
        # Every scenario's processes were stopped on the way out; nothing is written.
        console.print("interrupted: every process stopped, no result written")
        return 130
    elapsed = time.monotonic() - started
    console.print(render_table(results))
    results_dir: Path = args.results_dir
    (results_dir / "results").mkdir(parents=True, exist_ok=True)
    latest = results_dir / "results" / "latest.json"
    command = "uv run python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    document = {
        "command": command.strip(),
        "quick": args.quick,
        "elapsed_s": round(elapsed, 1),
        "machine": machine_info(),
        "scenarios": _merge(latest, results),
    }
    latest.write_text(json.dumps(document, indent=2) + "\n")
    write_markdown(results_dir / "RESULTS.md", document)
    load = document["machine"]["load_average_at_end"]
    curves.write(
        document["scenarios"],
        results_dir / "results",
        f"`{command.strip()}`, load average at the end {load}.",
    )
    console.print(f"wrote {latest} and {results_dir / 'RESULTS.md'} ({elapsed:.0f} s)")
    return 1 if any(r.met is False and r.value is None for r in results) else 0
