"""A mesh of real engines driven over gRPC: gpu_node serving given engines, gpu_proxy, and
meeting_service with its pipeline; and the calls a test makes on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from gpu_node.engines.factory import Engines as NodeEngines
from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from tests.support.engines import Engines
from tests.support.gpu import as_wav, make_pki, node_settings, proxy_settings
from tests.support.meeting import auth, pipeline_settings

WITHIN_S = 90.0
Stub = meeting_service_pb2_grpc.MeetingServiceStub


@asynccontextmanager
async def run_engine_mesh(
    engines: Engines, database_url: str, scratch: Path
) -> AsyncIterator[tuple[Stub, RunningMeetingService]]:
    """Runs the mesh on loopback; yields a stub of meeting_service and the service."""
    pki = make_pki(scratch / "pki")
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            run_gpu_node(node_settings(pki, gpu_node_engine="whisper"), NodeEngines(*engines))
        )
        proxy = await stack.enter_async_context(run_gpu_proxy(proxy_settings(pki, [node.address])))
        settings = pipeline_settings(database_url, scratch / "meeting-service", pki, proxy.address)
        service = await stack.enter_async_context(
            run_meeting_service(settings, database=Database(database_url))
        )
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(service.address))
        yield meeting_service_pb2_grpc.MeetingServiceStub(channel), service


async def create(stub: Stub, user: str, **fields: Any) -> meeting_pb2.Meeting:
    """Creates a meeting of `user`."""
    response = await stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(**fields)),
        metadata=auth(user),
        timeout=WITHIN_S,
    )
    return response.meeting


async def process(stub: Stub, user: str, meeting_id: str, audio: np.ndarray) -> None:
    """Uploads `audio` as a WAV recording and waits until the meeting is COMPLETED."""
    data = as_wav(audio)

    async def requests() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(
            metadata=meeting_service_pb2.UploadMetadata(
                meeting_id=meeting_id, content_type="audio/wav", total_size=len(data)
            )
        )
        yield meeting_service_pb2.UploadAudioRequest(chunk=data)

    stored = await stub.UploadAudio(requests(), metadata=auth(user), timeout=WITHIN_S)
    assert stored.complete
    call = stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id),
        metadata=auth(user),
        timeout=WITHIN_S,
    )
    async for response in call:
        status = response.event.status_change.status
        assert status != meeting_pb2.MEETING_STATUS_FAILED, response.event
        if status == meeting_pb2.MEETING_STATUS_COMPLETED:
            call.cancel()
            return


async def transcript(
    stub: Stub, user: str, meeting_id: str
) -> meeting_service_pb2.GetTranscriptResponse:
    """The meeting's transcript."""
    response: meeting_service_pb2.GetTranscriptResponse = await stub.GetTranscript(
        meeting_service_pb2.GetTranscriptRequest(meeting_id=meeting_id),
        metadata=auth(user),
        timeout=WITHIN_S,
    )
    return response
