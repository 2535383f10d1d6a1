"""meeting_service → PostgreSQL through a fault proxy: a job in flight outlives a silent
database.

A job's recognition is held after its first segment; the database's network is then
blackholed (no FIN, no RST, bytes just stop) and the recognition let go. The job's writes
and heartbeats meet a database that answers nothing: each is bounded by
`db_query_timeout_s` and counts as a lost database. Once the network heals, the job goes
on by itself (on the same worker, or taken over when its lease ran out) and completes,
its events gapless, every segment once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.gpu import Pki, as_wav
from tests.support.log_capture import captured_logs
from tests.support.mesh import (
    WAIT,
    PausingRecognizer,
    assert_gapless,
    create_meeting,
    dialogue,
    follow,
    pausing_engines,
    run_mesh,
    statuses,
    upload,
)
from tests.support.postgres import behind_fault_proxy

QUERY_TIMEOUT_S = 1.0


async def test_a_job_in_flight_outlives_a_silent_database(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    recognizer = PausingRecognizer()
    with captured_logs() as logs:
        async with (
            behind_fault_proxy(db_url) as (dsn, network),
            run_mesh(
                dsn,
                pki,
                tmp_path,
                engines=(pausing_engines(recognizer),),
                db_query_timeout_s=QUERY_TIMEOUT_S,
            ) as mesh,
        ):
            meeting = await create_meeting(mesh)
            await upload(mesh, meeting.id, as_wav(dialogue(4)))
            async with asyncio.timeout(WAIT):
                await recognizer.paused.wait()

            network.blackhole()
            recognizer.release.set()
            # The job's next write (or heartbeat) gives up on the silent database.
            await logs.wait_for(
                lambda line: "TimeoutError" in line.text and "job" in line.text, within=WAIT
            )
            network.heal()

            events = await follow(mesh, meeting.id)
            assert statuses(events)[-1] == "COMPLETED"
            assert_gapless(events)
            finals = [e.segment for e in events if e.HasField("segment") and not e.segment.speaker]
            assert sorted({s.index for s in finals}) == [0, 1, 2, 3]
    assert not logs.errors()
