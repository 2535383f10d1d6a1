"""Service processes of a benchmark run: start one role, wait until it serves, watch memory.

Each service runs as `python -m bench.serve ROLE CONFIG` in its own process (and process
group), so the load generator in the bench process never shares an interpreter with what
it measures, and each service's memory is its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

_START_TIMEOUT_S = 60.0
_STOP_GRACE_S = 10.0


class ServiceFailed(RuntimeError):
    """A service process exited or did not become ready; the message ends with its log."""


@dataclass
class ServiceProcess:
    """A running service.

    Attributes:
        role: Its role in `bench.serve`.
        address: "host:port" it serves on.
        process: The child process.
        log: Where its stdout and stderr go.
    """

    role: str
    address: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def url(self) -> str:
        """ "http://host:port" (for the HTTP roles)."""
        return f"http://{self.address}"

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def reset_peak_rss(self) -> bool:
        """Resets the kernel's peak-RSS mark (VmHWM) to the current RSS.

        Returns:
            False where the kernel does not allow it (then `peak_rss` is the lifetime peak).
        """
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def peak_rss(self) -> int:
        """Peak resident memory since start or the last `reset_peak_rss`, in bytes."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return self.rss()  # pragma: no cover - every Linux has VmHWM

    def log_tail(self, lines: int = 30) -> str:
        """The end of the service's log, for error messages."""
        return _tail(self.log, lines)


def _ready_info(ready: Path) -> Any | None:
    return json.loads(ready.read_text()) if ready.exists() else None


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def _wait_ready(process: asyncio.subprocess.Process, ready: Path, log: Path) -> Any:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while (info := await asyncio.to_thread(_ready_info, ready)) is None:
        if process.returncode is not None or time.monotonic() > deadline:
            tail = await asyncio.to_thread(_tail, log)
            why = "exited" if process.returncode is not None else "did not become ready"
            raise ServiceFailed(f"{log.stem} {why}; its log ends:\n{tail}")
        # The child writes the file once it serves; a short poll costs nothing measurable.
        await asyncio.sleep(0.05)
    return info


async def start_service(role: str, config: dict[str, Any], workdir: Path) -> ServiceProcess:
    """Starts a role and waits until it serves.

    Args:
        role: One of `bench.serve.ROLES`.
        config: The role's configuration (`ready_file` is added here).
        workdir: Where its ready file and log go.

    Returns:
        The running service.

    Raises:
        ServiceFailed: It exited or was not ready within a minute.
    """
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    stamp = f"{role}-{time.monotonic_ns()}"
    ready = workdir / f"{stamp}.ready"
    log = workdir / f"{stamp}.log"
    config = {**config, "ready_file": str(ready)}
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.serve",
            role,
            json.dumps(config),
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        info = await _wait_ready(process, ready, log)
    except BaseException:
        await _stop(process)
        raise
    return ServiceProcess(role, str(info["address"]), process, log)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


@contextlib.asynccontextmanager
async def service(
    role: str, config: dict[str, Any], workdir: Path
) -> AsyncIterator[ServiceProcess]:
    """Runs a role for the duration of the block (SIGTERM after, SIGKILL if it lingers).

    Args:
        role: One of `bench.serve.ROLES`.
        config: The role's configuration.
        workdir: Where its ready file and log go.

    Yields:
        The running service.
    """
    running = await start_service(role, config, workdir)
    try:
        yield running
    finally:
        await _stop(running.process)
