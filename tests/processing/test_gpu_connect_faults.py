"""A GPU hop whose channel never connects costs one connect timeout, not a call's deadline.

A peer behind a blackholed network accepts TCP (the fault proxy's kernel does) and never
finishes the handshake; a call on a channel still connecting would wait for it until its
own deadline, then fail DEADLINE_EXCEEDED, which says nothing about the peer. Asked first
(`mesh_common.keepalive.connects`): gpu_proxy passes over such a node within
`grpc_connect_timeout_s` (a failure of the node, for its breaker) and runs the call on
another, as it does when a connection made before goes silent (keepalive).
meeting_service's job, when gpu_proxy itself never connects, waits for a GPU node
(QUEUED, "waiting for a GPU node") without spending an attempt, and completes once the
network heals.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import meeting_pb2
from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from mesh_common.ports import free_port
from tests.support.fault_proxy import FaultProxy
from tests.support.gpu import Pki, as_wav, node_settings, proxy_settings, stubs
from tests.support.log_capture import captured_logs
from tests.support.mesh import (
    assert_gapless,
    create_meeting,
    dialogue,
    follow,
    run_mesh,
    statuses,
    upload,
)

CONNECT_TIMEOUT_S = 0.5
KEEPALIVE_S = 1.0
# Long enough for a connect timeout and a retry on a loaded machine; far shorter than
# the time a call would wait for a connection that never comes (its deadline).
CALL_DEADLINE_S = 10.0
SUMMARY_REQUEST = gpu_pb2.SummarizeRequest(
    lines=[gpu_pb2.TranscriptLine(speaker="SPEAKER_1", text="Carol will draft the plan.")]
)


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def test_gpu_proxy_passes_over_a_node_that_never_connects(pki: Pki) -> None:
    async with (
        run_gpu_node(node_settings(pki, grpc_keepalive_min_s=KEEPALIVE_S)) as node_a,
        run_gpu_node(node_settings(pki, grpc_keepalive_min_s=KEEPALIVE_S)) as node_b,
        FaultProxy(*_split(node_a.address)) as network_a,
    ):
        settings = proxy_settings(
            pki,
            [network_a.address, node_b.address],
            # No health check during the test: only the calls can find node A silent.
            gpu_proxy_health_interval_s=3600,
            grpc_connect_timeout_s=CONNECT_TIMEOUT_S,
            grpc_keepalive_s=KEEPALIVE_S,
            grpc_keepalive_timeout_s=KEEPALIVE_S,
            grpc_keepalive_min_s=KEEPALIVE_S,
        )
        with captured_logs() as logs:
            async with run_gpu_proxy(settings) as proxy:
                # Node A was probed healthy on one of its channels, whose connection now
                # goes silent (found by keepalive); the other is made on first use and
                # never connects (found by the connect timeout).
                network_a.blackhole()
                channel, gpu = stubs(pki, proxy.address)
                async with channel:
                    for _ in range(4):
                        summary = await gpu.summarization.Summarize(
                            SUMMARY_REQUEST, timeout=CALL_DEADLINE_S
                        )
                        assert [a.owner for a in summary.action_items] == ["Carol"]
                    await logs.wait_for(
                        lambda line: "gpu node did not connect; retrying elsewhere" in line.text,
                        within=5,
                    )
        assert not logs.errors()


def _waiting(event: meeting_pb2.TranscriptEvent) -> bool:
    return event.HasField("status_change") and event.status_change.reason.startswith(
        "waiting for a GPU node"
    )


async def test_a_job_waits_without_spending_an_attempt_while_gpu_proxy_never_connects(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    proxy_port = free_port()
    async with (
        FaultProxy("127.0.0.1", proxy_port) as network,
        run_mesh(
            db_url,
            pki,
            tmp_path,
            proxy_overrides={"gpu_proxy_port": proxy_port},
            gpu_proxy_target=network.address,
            grpc_connect_timeout_s=CONNECT_TIMEOUT_S,
        ) as mesh,
    ):
        network.blackhole()
        meeting = await create_meeting(mesh)
        await upload(mesh, meeting.id, as_wav(dialogue(2)))
        waiting = await follow(mesh, meeting.id, _waiting)
        assert "did not connect" in waiting[-1].status_change.reason

        network.heal()
        events = await follow(mesh, meeting.id)
        assert statuses(events)[-1] == "COMPLETED"
        assert_gapless(events)
        jobs = await mesh.service.services.jobs.for_meeting(
            mesh.service.services.pool, uuid.UUID(meeting.id)
        )
        assert jobs[0].attempts == 1  # waiting for the GPU service was not an attempt
