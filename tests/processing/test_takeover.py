"""A killed worker's job is taken over by another replica within the lease bound.

Replica A is a meeting_service process of its own with the default pipeline settings; it
claims the job, and its GPU call is held after the first segment. Replica B (in this
process, the same default lease and poll interval) runs workers too. A is SIGKILLed: no
release, no goodbye. B must claim the job before `pipeline_lease_s +
pipeline_poll_interval_s` (plus a margin for the claim's own round trip) has passed since
the kill, the default of which is under 10 s, and complete it with no sequence lost or
repeated.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

from meeting_service.jobs.repository import Job
from meeting_service.settings import MeetingServiceSettings
from tests.support.gpu import Pki, as_wav
from tests.support.mesh import (
    WAIT,
    Mesh,
    PausingRecognizer,
    assert_gapless,
    create_meeting,
    dialogue,
    follow,
    meeting_service_process,
    pausing_engines,
    run_mesh,
    statuses,
    upload,
)

DEFAULTS = MeetingServiceSettings.model_fields
LEASE_S: float = DEFAULTS["pipeline_lease_s"].default
POLL_S: float = DEFAULTS["pipeline_poll_interval_s"].default
# A claim is one statement on an idle database; this covers it on a loaded test machine.
CLAIM_MARGIN_S = 1.5


async def _job(mesh: Mesh, meeting_id: str) -> Job:
    services = mesh.service.services
    jobs = await services.jobs.for_meeting(services.pool, uuid.UUID(meeting_id))
    return jobs[0]


async def _until_owner(mesh: Mesh, meeting_id: str, owned: str) -> Job:
    """Waits until the job is RUNNING under a worker whose name contains `owned`."""
    async with asyncio.timeout(WAIT):
        while True:
            job = await _job(mesh, meeting_id)
            if job.lease_owner is not None and owned in job.lease_owner:
                return job
            await asyncio.sleep(0.02)


async def test_a_killed_workers_job_is_taken_over_within_the_lease_bound(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    assert LEASE_S + POLL_S < 10, "the default takeover bound is under 10 s"
    recognizer = PausingRecognizer()
    async with run_mesh(
        db_url,
        pki,
        tmp_path / "b",
        engines=[pausing_engines(recognizer)],
        pipeline_workers=0,
        pipeline_lease_s=LEASE_S,
        pipeline_poll_interval_s=POLL_S,
    ) as mesh:
        meeting = await create_meeting(mesh)
        async with meeting_service_process(
            mesh, db_url, tmp_path / "a", MESH_PIPELINE_WORKERS="1"
        ) as pid_a:
            await upload(mesh, meeting.id, as_wav(dialogue(4)))
            await _until_owner(mesh, meeting.id, f":{pid_a}:")
            async with asyncio.timeout(WAIT):
                await recognizer.paused.wait()  # A is mid-job, one segment stored
            mesh.workers(1)
            os.kill(pid_a, signal.SIGKILL)
            killed_at = asyncio.get_running_loop().time()
            recognizer.release.set()
            await _until_owner(mesh, meeting.id, f":{os.getpid()}:")
            takeover_s = asyncio.get_running_loop().time() - killed_at
            assert takeover_s < LEASE_S + POLL_S + CLAIM_MARGIN_S, takeover_s

            events = await follow(mesh, meeting.id)
            assert statuses(events)[-1] == "COMPLETED"
            assert_gapless(events)
            finals = [e.segment.index for e in events if e.HasField("segment") and e.segment.final]
            assert sorted(set(finals)) == [0, 1, 2, 3]
