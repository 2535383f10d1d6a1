"""gpu_proxy → gpu_node through a fault proxy: a node that vanishes silently loses nothing.

Node A is reached through `FaultProxy`; node B directly. A job's recognition stream runs
on A (held after its first segment) when A's network is blackholed: no FIN, no RST, bytes
just stop. gpu_proxy's health check of A goes unanswered, and A's calls are failed
within `gpu_proxy_health_interval_s + gpu_proxy_probe_timeout_s`; the job waits for a
node (not an attempt), moves to B and completes with every segment exactly once.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from gen.meeting.v1 import meeting_pb2
from mesh_common.ports import free_port
from tests.support.fault_proxy import FaultProxy
from tests.support.gpu import Pki, as_wav
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

S = meeting_pb2.MeetingStatus
HEALTH_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 0.5
SLACK_S = 3.0  # the job's requeue and the event's delivery, on a loaded machine


def _waiting(event: meeting_pb2.TranscriptEvent) -> bool:
    return event.HasField("status_change") and event.status_change.reason.startswith(
        "waiting for a GPU node"
    )


def _segment(event: meeting_pb2.TranscriptEvent) -> bool:
    return event.HasField("segment")


async def test_a_blackholed_node_is_found_and_its_job_moves_to_another(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    port_a, port_b = free_port(), free_port()
    recognizer = PausingRecognizer()
    async with (
        FaultProxy("127.0.0.1", port_a) as network_a,
        run_mesh(
            db_url,
            pki,
            tmp_path,
            engines=(),
            absent_nodes=[network_a.address, f"127.0.0.1:{port_b}"],
            proxy_overrides={
                "gpu_proxy_health_interval_s": HEALTH_INTERVAL_S,
                "gpu_proxy_probe_timeout_s": PROBE_TIMEOUT_S,
            },
        ) as mesh,
    ):
        await mesh.start_node(pausing_engines(recognizer), port=port_a)
        meeting = await create_meeting(mesh)
        await upload(mesh, meeting.id, as_wav(dialogue(4)))
        async with asyncio.timeout(WAIT):
            await recognizer.paused.wait()  # on A, the only node up, after one segment
        await mesh.start_node(pausing_engines(recognizer), port=port_b)
        stored = await follow(mesh, meeting.id, _segment)  # A's first segment

        network_a.blackhole()
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        await follow(mesh, meeting.id, _waiting, after=stored[-1].sequence)
        assert loop.time() - cut_at < HEALTH_INTERVAL_S + PROBE_TIMEOUT_S + SLACK_S

        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        assert_gapless(events)
        finals = [e.segment for e in events if e.HasField("segment") and not e.segment.speaker]
        # The segment A sent before it vanished is stored once, and redone in place.
        assert sorted({s.index for s in finals}) == [0, 1, 2, 3]
        transcript = await mesh.service.services.jobs.for_meeting(
            mesh.service.services.pool, uuid.UUID(meeting.id)
        )
        assert transcript[0].attempts == 1  # the wait was not an attempt
