"""The killing: one process of the mesh SIGKILLed at a time and started again on its port.

A kill window runs from the SIGKILL until every process of the mesh is healthy again (the
replacement, and the ones that depend on it: meeting-services serve again only once they
have their database back), plus `GRACE_S` for connections and circuit breakers to find
the replacement. A request that fails in a window is expected; one outside is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from meeting_mesh.dev import wait_healthy
from meeting_service.db.embedded import EmbeddedPostgres
from mesh_common.logging import logger
from tests.support.replicas import KINDS, START_WITHIN_S, ReplicaMesh

POSTGRES = "postgres"
CHAOS_KINDS = (POSTGRES, *KINDS)
GRACE_S = 5.0
_POLL_S = 0.25


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: what, and the window in which failures are expected.

    Attributes:
        name: The process ("postgres", "gateway-2", ...).
        killed: When it was killed (monotonic).
        healthy: When every process was healthy again (monotonic).
    """

    name: str
    killed: float
    healthy: float

    @property
    def window(self) -> tuple[float, float]:
        """The kill window: from the kill to all healthy plus `GRACE_S`."""
        return self.killed, self.healthy + GRACE_S


def postmaster_pid(postgres: EmbeddedPostgres) -> int | None:
    """The PID of the running postmaster (None when it is not running)."""
    path = postgres.pgdata / "postmaster.pid"
    try:
        return int(path.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        return None


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in {"Z", "X"}


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    children.append(int(entry.name))
    return children


class Killer:
    """Kills and restarts the processes of one mesh, in a reproducible order.

    Args:
        mesh: The service replicas.
        postgres: The mesh's PostgreSQL (a fixed port, so a restart keeps its DSN).
        seed: Seeds the order of kinds and the choice of replicas.
    """

    def __init__(self, mesh: ReplicaMesh, postgres: EmbeddedPostgres, seed: int) -> None:
        self.mesh = mesh
        self.postgres = postgres
        self.kills: list[Kill] = []
        self._random = random.Random(seed)
        self._order: list[str] = []

    def next_victim(self) -> str:
        """The next process to kill: the next kind of a shuffled round, a random replica."""
        if not self._order:
            self._order = list(CHAOS_KINDS)
            self._random.shuffle(self._order)
        kind = self._order.pop(0)
        if kind == POSTGRES:
            return POSTGRES
        return f"{kind}-{self._random.choice((1, 2))}"

    async def kill_and_restart(self, name: str) -> Kill:
        """SIGKILLs `name` (its whole process group), starts it again, waits for all healthy."""
        killed = time.monotonic()
        if name == POSTGRES:
            await self._kill_postgres()
            await self.postgres.start()
        else:
            self.mesh.children[name].signal_group(signal.SIGKILL)
            process = self.mesh.children[name].process
            assert process is not None
            await process.wait()
            await self.mesh.start(name)
        await self.all_healthy()
        kill = Kill(name, killed, time.monotonic())
        self.kills.append(kill)
        logger.bind(process=name, down_s=round(kill.healthy - killed, 1)).info(
            "killed and healthy again"
        )
        return kill

    async def _kill_postgres(self) -> None:
        pid = postmaster_pid(self.postgres)
        assert pid is not None, "PostgreSQL is not running"
        # The postmaster and every backend and helper process it forked, as a machine
        # crash or the OOM killer would leave them.
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        async with asyncio.timeout(30.0):
            while not all(_gone(victim) for victim in victims):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        # A dead postmaster that nobody has reaped yet still answers kill(pid, 0), which
        # the next postmaster takes for a live one holding the data directory.
        (self.postgres.pgdata / "postmaster.pid").unlink(missing_ok=True)

    async def all_healthy(self) -> None:
        """Waits until every replica's probe passes (PostgreSQL answers through them)."""
        await asyncio.gather(
            *(wait_healthy(child, START_WITHIN_S) for child in self.mesh.children.values())
        )

    async def run(self, every_s: float, until: float) -> None:
        """Kills a process at every_s / 2, then every `every_s`, while before `until` and
        then until each kind was killed once (a slow machine restarts slowly)."""
        due = time.monotonic() + every_s / 2
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= until and len(self.kills) >= len(CHAOS_KINDS):
                return
            await self.kill_and_restart(self.next_victim())
            due += every_s

    def pids(self) -> dict[str, int]:
        """The running processes by name: every replica and the postmaster."""
        running = {
            name: child.process.pid
            for name, child in self.mesh.children.items()
            if child.process is not None and child.process.returncode is None
        }
        pid = postmaster_pid(self.postgres)
        if pid is not None and not _gone(pid):
            running[POSTGRES] = pid
        return running
