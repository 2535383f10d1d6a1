"""Replicas share the work: two of every service, each its own process, one of each killed.

One PostgreSQL, one S3 server (SeaweedFS), two gateways, two meeting-services, two
gpu-proxies and two gpu-nodes (mock engine) (`tests/support/replicas.py`). The test shows:

1. Any gateway serves any meeting: created on one, uploaded through the other, its event
   stream read on one and resumed with `Last-Event-ID` on the other continues exactly.
2. Under a steady load of uploads, SSE subscribers and CRUD, one replica of each kind is
   SIGKILLed in turn and started again: every meeting reaches COMPLETED, every subscriber
   receives every sequence number exactly once (reconnecting with `Last-Event-ID` on
   either gateway), and requests fail only while a replica is dead (the client then tries
   the other gateway).
3. A rolling restart (SIGTERM each replica in turn, every kind, each one started again and
   healthy before the next is stopped) fails no request. What
   that means precisely: every request either gets the answer it would have had, or its
   stopping gateway did not take it: it refused the connection (its listener is closed
   first) or closed the connection before any response (it closes connections whose
   request no handler has started, and lets every started one finish). The client sends
   such a request to the other gateway (a create carries a request id, so even a lost
   answer could not make two meetings). No request is taken and then failed: no error
   status, no timeout, no response cut short, and no refusal from a gateway that was not
   stopping. The clients open a connection per request (no keep-alive), so no request
   waits on an idle connection a stopping gateway closes. An event stream that a stopping
   gateway ends is resumed with `Last-Event-ID`: that is the stream's protocol.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import aiohttp
import pytest

from meeting_mesh.seaweedfs import SeaweedFS
from tests.support.meeting import make_token
from tests.support.postgres import create_database, drop_database
from tests.support.replica_load import (
    Attempt,
    Load,
    every_meeting_completes_with_every_event_once,
    running_load,
)
from tests.support.replicas import KINDS, ReplicaMesh, replica_mesh

# A request may fail this long after its dead replica is healthy again (connections and
# breakers to the restarted replica recover).
SLACK_S = 3.0


def failures(attempts: list[Attempt], since: float, until: float) -> list[Attempt]:
    return [a for a in attempts if a.outcome != "ok" and since <= a.start <= until]


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replicas")


# Eight processes started, four killed and eight restarted one at a time: several minutes
# on a loaded 2-core machine, more than the suite's default bound.
@pytest.mark.timeout(900)
async def test_replicas_share_the_work_and_survive_kills_and_a_rolling_restart(
    postgres_admin_dsn: str, s3_server: SeaweedFS, s3_bucket: str, scratch: Path
) -> None:
    database_url = await create_database(postgres_admin_dsn, "replicas")
    connector = aiohttp.TCPConnector(force_close=True)
    token = make_token("replica-user")
    try:
        async with (
            replica_mesh(scratch, database_url, s3_server, s3_bucket) as mesh,
            aiohttp.ClientSession(
                connector=connector,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as session,
        ):
            load = Load(mesh.gateway_urls, session)
            try:
                await any_gateway_serves_any_meeting(load)
                await kills_lose_nothing(mesh, load)
                await a_rolling_restart_fails_nothing(mesh, load)
            except BaseException:
                print(mesh.logs())
                raise
    finally:
        await drop_database(postgres_admin_dsn, database_url)


async def any_gateway_serves_any_meeting(load: Load) -> None:
    meeting_id = await load.create(prefer=0)
    await load.upload(meeting_id, prefer=1)
    # The first events on gateway 1, the rest on gateway 2 from where gateway 1 stopped.
    await load.follow(meeting_id, prefer=0, until=3)
    await load.follow(meeting_id, prefer=1)
    seen = load.sequences[meeting_id]
    assert seen == list(range(1, len(seen) + 1))
    assert load.finals[meeting_id] == "MEETING_STATUS_COMPLETED"
    assert all(a.outcome == "ok" for a in load.attempts), load.attempts


async def kills_lose_nothing(mesh: ReplicaMesh, load: Load) -> None:
    windows: list[tuple[str, float, float]] = []
    async with running_load(load):
        for kind in KINDS[::-1]:
            # The load meets the dead replica while its successor starts.
            name = f"{kind}-1"
            killed = time.monotonic()
            await mesh.stop(name, signal.SIGKILL)
            await mesh.start(name)
            windows.append((name, killed, time.monotonic() + SLACK_S))
    await every_meeting_completes_with_every_event_once(load, within_s=60)
    for failure in (a for a in load.attempts if a.outcome != "ok"):
        assert any(start <= failure.end and failure.start <= end for _, start, end in windows), (
            failure,
            windows,
        )


async def a_rolling_restart_fails_nothing(mesh: ReplicaMesh, load: Load) -> None:
    """Each replica in turn is stopped and started again: one of each kind always runs."""
    began = time.monotonic()
    stopping: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    async with running_load(load):
        for kind in KINDS:
            for i in (1, 2):
                name = f"{kind}-{i}"
                since = time.monotonic()
                assert await mesh.stop(name, signal.SIGTERM) == 0, name
                await mesh.start(name)
                if kind == "gateway":
                    stopping[i - 1].append((since, time.monotonic()))
    ended = time.monotonic()
    await every_meeting_completes_with_every_event_once(load, within_s=60)
    during = failures(load.attempts, began, ended)
    assert [a for a in during if a.outcome not in {"refused", "unanswered"}] == []
    # Only a stopping gateway refuses or leaves a request unanswered.
    for attempt in during:
        assert any(
            start <= attempt.end and attempt.start <= end
            for start, end in stopping[attempt.gateway]
        ), attempt
