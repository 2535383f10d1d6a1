"""A job never fails because GPUs are briefly gone: it waits for a node, then completes.

The only node gpu_proxy knows is not running: every attempt finds no GPU node. With one
attempt allowed, a job that counted those tries would fail at once; it waits instead
(QUEUED, "waiting for a GPU node"), and completes once a node starts at that address. A
wait has a deadline (`pipeline_gpu_wait_max_s`), after which the meeting is FAILED.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from gen.meeting.v1 import meeting_pb2
from mesh_common.ports import free_port
from tests.support.gpu import Pki, as_wav
from tests.support.log_capture import captured_logs
from tests.support.mesh import (
    WAIT,
    assert_gapless,
    create_meeting,
    dialogue,
    follow,
    run_mesh,
    statuses,
    upload,
)

S = meeting_pb2.MeetingStatus
WAITING = "waiting for a GPU node"


def _waiting(event: meeting_pb2.TranscriptEvent) -> bool:
    return (
        event.HasField("status_change")
        and event.status_change.status == S.MEETING_STATUS_QUEUED
        and event.status_change.reason.startswith(WAITING)
    )


async def test_a_job_waits_for_a_gpu_node_without_spending_attempts(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    port = free_port()
    with captured_logs() as logs:
        async with run_mesh(
            db_url,
            pki,
            tmp_path,
            engines=(),
            absent_nodes=[f"127.0.0.1:{port}"],
            pipeline_max_attempts=1,
            pipeline_gpu_wait_retry_max_s=0.3,
        ) as mesh:
            meeting = await create_meeting(mesh)
            await upload(mesh, meeting.id, as_wav(dialogue(2)))
            # Wait through several tries: each would have been the job's last attempt.
            waits = await follow(
                mesh, meeting.id, lambda e: _waiting(e) and e.sequence > 12, within=WAIT
            )
            assert "QUEUED" in statuses(waits) and "FAILED" not in statuses(waits)
            jobs = await mesh.service.services.jobs.for_meeting(
                mesh.service.services.pool, uuid.UUID(meeting.id)
            )
            # A try may be running (claimed, so counted until it ends as a wait).
            assert jobs[0].attempts <= 1 and jobs[0].gpu_waits >= 3

            await mesh.start_node(port=port)
            events = await follow(mesh, meeting.id, after=0)
            assert_gapless(events)
            assert statuses(events)[-1] == "COMPLETED"
            done = await mesh.service.services.jobs.for_meeting(
                mesh.service.services.pool, uuid.UUID(meeting.id)
            )
            assert (done[0].attempts, done[0].gpu_waits, done[0].gpu_wait_since) == (1, 0, None)
    # Waiting for a node is worth WARNINGs, not ERRORs.
    assert not logs.errors()


async def test_a_job_fails_once_its_wait_for_a_gpu_node_runs_out(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    async with run_mesh(
        db_url,
        pki,
        tmp_path,
        engines=(),
        absent_nodes=[f"127.0.0.1:{free_port()}"],
        pipeline_gpu_wait_max_s=0.5,
        pipeline_gpu_wait_retry_max_s=0.2,
    ) as mesh:
        meeting = await create_meeting(mesh)
        await upload(mesh, meeting.id, as_wav(dialogue(1)))
        events = await follow(mesh, meeting.id)
        last = events[-1].status_change
        assert last.status == S.MEETING_STATUS_FAILED
        assert last.reason.startswith(WAITING) and "no GPU node came back" in last.reason
