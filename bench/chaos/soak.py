"""One chaos soak: the mesh started, the load and the kills run, the checks made."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.chaos import checks
from bench.chaos.checks import Check
from bench.chaos.faults import Kill, Killer
from bench.chaos.sampling import Run, Sampler
from meeting_mesh import seaweedfs
from meeting_mesh.seaweedfs import SeaweedFS
from meeting_service.db.embedded import EmbeddedPostgres
from mesh_common.logging import logger
from mesh_common.ports import free_port
from tests.support.meeting import make_token
from tests.support.postgres import create_database
from tests.support.replica_load import Load, running_load
from tests.support.replicas import replica_mesh

BUCKET = "chaos"
UPLOAD_WORKERS = 2
LIVE_WORKERS = 1
# Every fourth upload of a worker is a big one cut on purpose and resumed.
CUT_EVERY = 4
# One operation is retried this long: longer than any kill window.
PATIENCE_S = 120.0
# After the load stops, the subscribers have this long to see their meetings end.
DRAIN_S = 180.0


@dataclass(frozen=True)
class Options:
    """What to run: `duration_s` of load, a kill every `kill_every_s`, from `seed`."""

    duration_s: float
    kill_every_s: float
    seed: int


@dataclass
class Outcome:
    """What a soak found."""

    options: Options
    checks: list[Check] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    began: float = 0.0
    wall_s: float = 0.0
    logs: Path | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


@contextlib.asynccontextmanager
async def _object_store(directory: Path) -> AsyncIterator[SeaweedFS]:
    async with seaweedfs.running(directory, "mesh-chaos", BUCKET) as server:
        yield server


@contextlib.asynccontextmanager
async def _database(directory: Path) -> AsyncIterator[EmbeddedPostgres]:
    # Durable (synchronous commits): with them off, a SIGKILLed PostgreSQL loses the
    # commits still in its WAL buffers, acknowledged meetings among them.
    postgres = EmbeddedPostgres(directory, port=free_port(), durable=True)
    await postgres.start()
    try:
        yield postgres
    finally:
        await postgres.stop()


async def soak(options: Options, keep_logs: Path | None = None) -> Outcome:
    """Runs one soak and checks it.

    Args:
        options: Duration, kill period and seed.
        keep_logs: Where to copy every process's log when a check fails (None: nowhere).

    Returns:
        The checks, kills, process samples and load counts.
    """
    outcome = Outcome(options)
    workdir = Path(tempfile.mkdtemp(prefix="mesh-chaos-"))
    started = time.monotonic()
    try:
        async with (
            _database(workdir / "postgres") as postgres,
            _object_store(workdir / "s3") as s3,
        ):
            database_url = await create_database(postgres.dsn(), "chaos")
            await asyncio.to_thread((workdir / "mesh").mkdir)
            async with (
                replica_mesh(workdir / "mesh", database_url, s3, BUCKET) as mesh,
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(force_close=True),
                    headers={"Authorization": f"Bearer {make_token('chaos-user')}"},
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as session,
            ):
                load = Load(mesh.gateway_urls, session, patience_s=PATIENCE_S, cut_every=CUT_EVERY)
                killer = Killer(mesh, postgres, options.seed)
                logger.info("mesh started; load and kills begin")
                await _run(options, load, killer, outcome)
                if not outcome.passed and keep_logs is not None:
                    shutil.copytree(
                        workdir / "mesh",
                        keep_logs,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("certs"),
                    )
                    shutil.copy(workdir / "postgres" / "server.log", keep_logs / "postgres.log")
                    outcome.logs = keep_logs
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        outcome.wall_s = time.monotonic() - started
    return outcome


async def _run(options: Options, load: Load, killer: Killer, outcome: Outcome) -> None:
    sampler = Sampler(killer.pids)
    sampling = asyncio.create_task(sampler.run())
    errors: list[str] = []
    outcome.began = time.monotonic()
    until = outcome.began + options.duration_s
    try:
        async with running_load(load, UPLOAD_WORKERS, LIVE_WORKERS):
            await killer.run(options.kill_every_s, until)
            await asyncio.sleep(max(0.0, until - time.monotonic()))
    except AssertionError as error:
        errors.append(str(error))
    logger.bind(meetings=len(load.meetings), errors=len(errors)).info("load stopped")
    pending = [task for task in load.subscribers if not task.done()]
    if pending:
        await asyncio.wait(pending, timeout=DRAIN_S)
    logger.bind(unfinished=sum(not t.done() for t in load.subscribers)).info("drained")
    for task in load.subscribers:
        task.cancel()
    sampling.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampling
    outcome.kills = killer.kills
    outcome.runs = list(sampler.runs.values())
    completed, contiguous = await checks.transcripts_are_contiguous(load)
    outcome.checks = [
        checks.load_held(errors),
        await checks.acknowledged_meetings_exist(load),
        completed,
        contiguous,
        checks.subscribers_saw_each_once(load),
        checks.no_5xx_outside_kill_windows(load, killer.kills),
        checks.processes_stayed_bounded(outcome.runs),
        checks.every_kind_killed(killer.kills),
    ]
    failed = [a for a in load.attempts if a.outcome not in {"ok", "cut"}]
    windows = [kill.window for kill in killer.kills]
    outside = [a for a in failed if not any(s <= a.end and a.start <= e for s, e in windows)]
    outcome.counts = {
        "meetings": len(load.meetings),
        "uploads": len(load.meetings) - len(load.live_meetings),
        "uploads resumed (PATCH from a stored offset)": len(load.resumed_uploads),
        "live WebSocket sessions": len(load.live_meetings),
        "live sockets resumed after a drop": load.live_resumes,
        "SSE subscribers": len(load.sequences),
        "SSE events received": sum(len(s) for s in load.sequences.values()),
        "HTTP requests and WebSocket sessions": len(load.attempts),
        "attempts that failed and were retried": len(failed),
        "of which outside every kill window": len(outside),
    }
