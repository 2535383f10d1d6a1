"""What a command that was stopped left behind: processes still running, by pid or by the
directory they use (`meeting-mesh dev`, `python -m bench`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

import psutil


def alive(proc: psutil.Process) -> bool:
    """Whether the process still runs (a zombie waiting to be reaped does not)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def left_running(started: Iterable[psutil.Process], directory: Path | str) -> list[str]:
    """Of the processes a command started, those still running, and any process at all
    whose command line names `directory` (PostgreSQL, which pg_ctl detaches, among them).
    """
    left = [f"{p.pid} {p.name()}" for p in started if alive(p)]
    path = str(directory)
    for proc in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(path in part for part in proc.info["cmdline"] or []) and alive(proc):
                left.append(f"{proc.pid} {' '.join(proc.info['cmdline'])}")
    return left
