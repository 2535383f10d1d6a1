"""The soak's result as a Markdown document and a JSON object."""

from __future__ import annotations

from typing import Any

from bench.chaos.faults import GRACE_S
from bench.chaos.soak import Outcome


def to_json(outcome: Outcome, command: str, machine: dict[str, Any]) -> dict[str, Any]:
    """Everything the soak found, as one JSON object."""
    return {
        "command": command,
        "duration_s": outcome.options.duration_s,
        "kill_every_s": outcome.options.kill_every_s,
        "seed": outcome.options.seed,
        "wall_s": round(outcome.wall_s, 1),
        "passed": outcome.passed,
        "checks": [check.to_json() for check in outcome.checks],
        "counts": outcome.counts,
        "kills": [
            {
                "process": kill.name,
                "at_s": round(kill.killed - outcome.began, 1),
                "all_healthy_after_s": round(kill.healthy - kill.killed, 1),
            }
            for kill in outcome.kills
        ],
        "processes": [
            {"process": run.name, "pid": run.pid, "ok": ok, "figures": figures}
            for run in outcome.runs
            for ok, figures in [run.verdict()]
        ],
        "machine": machine,
    }


def to_markdown(document: dict[str, Any]) -> str:
    """The JSON object as a Markdown page: checks, load, kills, processes."""
    verdict = "passed" if document["passed"] else "FAILED"
    lines = [
        f"# Chaos soak: {document['duration_s']:g} s, a kill every "
        f"{document['kill_every_s']:g} s (seed {document['seed']}): {verdict}",
        "",
        f"`{document['command']}` ({document['wall_s']:g} s wall, "
        f"{document['machine']['cores']} cores, {document['machine']['cpu']}). A kill window "
        f"runs from the SIGKILL until every process is healthy again, plus {GRACE_S:g} s.",
        "",
        "| check | result | detail |",
        "|---|---|---|",
    ]
    for check in document["checks"]:
        result = "pass" if check["passed"] else "**FAIL**"
        lines.append(f"| {check['check']} | {result} | {check['detail']} |")
    lines += ["", "| load | count |", "|---|---|"]
    lines += [f"| {name} | {count} |" for name, count in document["counts"].items()]
    lines += ["", "| # | killed | at (s) | all healthy after (s) |", "|---|---|---|---|"]
    lines += [
        f"| {i} | {kill['process']} | {kill['at_s']:g} | {kill['all_healthy_after_s']:g} |"
        for i, kill in enumerate(document["kills"], 1)
    ]
    lines += ["", "| process (pid) | bounded | figures |", "|---|---|---|"]
    lines += [
        f"| {run['process']} ({run['pid']}) | {'yes' if run['ok'] else '**NO**'} "
        f"| {run['figures']} |"
        for run in document["processes"]
    ]
    return "\n".join(lines) + "\n"
