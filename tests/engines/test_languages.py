"""Honest languages with the real multilingual model: a German recording with no language
asked for is detected, stored and shown as German; a language no node knows is refused."""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from gpu_node.engines.factory import Engines as NodeEngines
from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from meeting_service.db.database import Database
from meeting_service.server import run_meeting_service
from tests.engines import ENGINES
from tests.support.gpu import make_pki, node_settings, pcm16, proxy_settings
from tests.support.meeting import auth, pipeline_settings
from tests.support.speech import SAMPLE_RATE, speak

pytestmark = ENGINES

WITHIN_S = 90.0
USER = "sprachen"
GERMAN = [
    (("-v", "de", "-s", "150"), "Guten Morgen zusammen, wir besprechen heute das Budget."),
    (("-v", "de+f3", "-s", "150"), "Die Kosten für das Marketing sind wieder gestiegen."),
]


@pytest_asyncio.fixture(scope="module")
async def stub(
    model_cache: Path, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[meeting_service_pb2_grpc.MeetingServiceStub]:
    """meeting_service with its pipeline, gpu_proxy, and a node serving `base`."""
    from gpu_node.engines.real import create_real_engines

    engines = create_real_engines(
        asr_model="base", asr_device="cpu", model_cache_dir=model_cache, summary_llm_url=""
    )
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    async with AsyncExitStack() as stack:
        node = await stack.enter_async_context(
            run_gpu_node(node_settings(pki, gpu_node_engine="whisper"), NodeEngines(*engines))
        )
        proxy = await stack.enter_async_context(run_gpu_proxy(proxy_settings(pki, [node.address])))
        settings = pipeline_settings(
            database_url, tmp_path_factory.mktemp("meeting-service"), pki, proxy.address
        )
        service = await stack.enter_async_context(
            run_meeting_service(settings, database=Database(database_url))
        )
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(service.address))
        yield meeting_service_pb2_grpc.MeetingServiceStub(channel)


def _wav(samples: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(samples)
    return out.getvalue()


async def _upload(stub: meeting_service_pb2_grpc.MeetingServiceStub, mid: str, data: bytes) -> None:
    async def requests() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(
            metadata=meeting_service_pb2.UploadMetadata(
                meeting_id=mid, content_type="audio/wav", total_size=len(data)
            )
        )
        yield meeting_service_pb2.UploadAudioRequest(chunk=data)

    response = await stub.UploadAudio(requests(), metadata=auth(USER), timeout=WITHIN_S)
    assert response.complete


async def _completed(stub: meeting_service_pb2_grpc.MeetingServiceStub, mid: str) -> None:
    call = stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=mid),
        metadata=auth(USER),
        timeout=WITHIN_S,
    )
    async for response in call:
        status = response.event.status_change.status
        assert status != meeting_pb2.MEETING_STATUS_FAILED, response.event
        if status == meeting_pb2.MEETING_STATUS_COMPLETED:
            call.cancel()
            return


async def _create(
    stub: meeting_service_pb2_grpc.MeetingServiceStub, language: str
) -> meeting_pb2.Meeting:
    response = await stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(language=language)),
        metadata=auth(USER),
        timeout=WITHIN_S,
    )
    return response.meeting


async def test_a_german_recording_is_detected_and_stored_as_german(
    stub: meeting_service_pb2_grpc.MeetingServiceStub, tmp_path: Path
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _create(stub, "xx")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'xx'" in (refused.value.details() or "")
    assert "de, " in (refused.value.details() or "")
    assert (await _create(stub, "de")).language == "de"

    meeting = await _create(stub, "")
    await _upload(stub, meeting.id, _wav(pcm16(speak(GERMAN, tmp_path))))
    await _completed(stub, meeting.id)
    got = await stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=meeting.id),
        metadata=auth(USER),
        timeout=WITHIN_S,
    )
    assert (got.meeting.language, got.meeting.detected_language) == ("", "de")
    transcript = await stub.GetTranscript(
        meeting_service_pb2.GetTranscriptRequest(meeting_id=meeting.id),
        metadata=auth(USER),
        timeout=WITHIN_S,
    )
    assert transcript.segments and {s.language for s in transcript.segments} == {"de"}
