"""`python -m bench.chaos [--duration-s S] [--kill-every-s S] [--seed N] [--results-dir D]`.

Prints the result table (Markdown) and writes it to `<results-dir>/chaos-<duration>.md`
and `.json`. The exit status is 1 when a check failed, 130 when interrupted (Ctrl-C or
SIGTERM stops every process within seconds: the load's requests in flight finish first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from pathlib import Path

from bench.chaos.report import to_json, to_markdown
from bench.chaos.soak import Options, soak
from bench.report import machine_info
from bench.signals import STOPPED, stoppable

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--duration-s", type=float, default=300.0, help="load time (300)")
    parser.add_argument("--kill-every-s", type=float, default=30.0, help="kill period (30)")
    parser.add_argument("--seed", type=int, default=1, help="order of the kills (1)")
    parser.add_argument(
        "--results-dir", type=Path, default=RESULTS_DIR, help="default: bench/results"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the soak; returns the exit status."""
    args = _parser().parse_args(argv)
    options = Options(args.duration_s, args.kill_every_s, args.seed)
    stem = f"chaos-{args.duration_s:g}"
    args.results_dir.mkdir(parents=True, exist_ok=True)
    try:
        outcome = asyncio.run(stoppable(soak(options, keep_logs=args.results_dir / f"{stem}-logs")))
    except STOPPED:
        # The soak's cleanup has run by now (processes stopped, its directory removed);
        # an interrupted soak checked nothing, so nothing is written.
        print("interrupted: every process stopped, no result written", file=sys.stderr)
        return 130
    command = shlex.join(["python", "-m", "bench.chaos", *(sys.argv[1:] if argv is None else argv)])
    document = to_json(outcome, command, machine_info())
    markdown = to_markdown(document)
    (args.results_dir / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
    (args.results_dir / f"{stem}.md").write_text(markdown)
    print(markdown)
    if outcome.logs is not None:
        print(f"the processes' logs: {outcome.logs}")
    return 0 if outcome.passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
