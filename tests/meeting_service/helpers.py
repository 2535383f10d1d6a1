"""Helpers of the meeting_service tests: audio, uploads, waiting on conditions."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2_grpc

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from tests.support.meeting import auth

Stub = meeting_service_pb2_grpc.MeetingServiceStub
CHUNK = 64 * 1024


def user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def make_wav(seconds: float, rate: int = 16_000) -> bytes:
    """A mono 16-bit WAV of a 440 Hz tone."""
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def create(stub: Stub, owner: str, title: str = "meeting") -> meeting_pb2.Meeting:
    response = await stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(title=title)),
        metadata=auth(owner),
    )
    meeting: meeting_pb2.Meeting = response.meeting
    return meeting


async def stored_size(stub: Stub, owner: str, meeting_id: str) -> int:
    """How many bytes of the meeting's upload are stored (GetUploadStatus)."""
    response = await stub.GetUploadStatus(
        meeting_service_pb2.GetUploadStatusRequest(meeting_id=meeting_id), metadata=auth(owner)
    )
    size: int = response.stored_size
    return size


async def meeting_status(
    stub: Stub, owner: str, meeting_id: str
) -> meeting_pb2.MeetingStatus.ValueType:
    """The meeting's status (GetMeeting)."""
    response = await stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=meeting_id), metadata=auth(owner)
    )
    status: meeting_pb2.MeetingStatus.ValueType = response.meeting.status
    return status


def chunks_of(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def requests(
    meeting_id: str,
    chunks: Iterable[bytes],
    *,
    offset: int = 0,
    total_size: int | None = None,
    sha: str = "",
    content_type: str = "audio/wav",
    size_limit: int | None = None,
) -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
    metadata = meeting_service_pb2.UploadMetadata(
        meeting_id=meeting_id, content_type=content_type, offset=offset, sha256=sha
    )
    if total_size is not None:
        metadata.total_size = total_size
    if size_limit is not None:
        metadata.size_limit = size_limit
    yield meeting_service_pb2.UploadAudioRequest(metadata=metadata)
    for chunk in chunks:
        yield meeting_service_pb2.UploadAudioRequest(chunk=chunk)


async def upload(
    stub: Stub, owner: str, meeting_id: str, data: bytes, **options: object
) -> meeting_service_pb2.UploadAudioResponse:
    response: meeting_service_pb2.UploadAudioResponse = await stub.UploadAudio(
        requests(meeting_id, chunks_of(data), **options),  # type: ignore[arg-type]
        metadata=auth(owner),
    )
    return response


StreamCall = grpc.aio.UnaryStreamCall[
    meeting_service_pb2.StreamTranscriptRequest, meeting_service_pb2.StreamTranscriptResponse
]


async def next_event(call: StreamCall) -> meeting_pb2.TranscriptEvent:
    """Reads the next event of a stream (failing on its end)."""
    response = await call.read()
    assert isinstance(response, meeting_service_pb2.StreamTranscriptResponse)
    event: meeting_pb2.TranscriptEvent = response.event
    return event


def health_stub(channel: grpc.Channel | grpc.aio.Channel) -> Any:
    """A health stub (its type stubs declare no methods, hence Any)."""
    return health_pb2_grpc.HealthStub(channel)


async def wait_for[T](
    probe: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float = 30.0
) -> T:
    """Re-evaluates `probe` until `done(result)`; fails after `within` seconds."""
    async with asyncio.timeout(within):
        while True:
            result = await probe()
            if done(result):
                return result
            await asyncio.sleep(0.02)
