"""A real mesh on loopback for the processing tests, and helpers to upload and follow.

The mesh is PostgreSQL, meeting_service, gpu_proxy and gpu_node with the mock engine, with
per-run certificates; the helpers upload, follow and check transcripts.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import grpc
import numpy as np

from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from gpu_node.engines.base import Audio, SegmentBatch
from gpu_node.engines.factory import Engines, create_engines
from gpu_node.engines.mock import MockRecognitionEngine
from gpu_node.server import RunningNode, run_gpu_node
from gpu_proxy.server import RunningProxy, run_gpu_proxy
from meeting_mesh.dev import grpc_probe
from meeting_service.db.database import Database
from meeting_service.processing.worker import PipelineWorkers
from meeting_service.server import RunningMeetingService, run_meeting_service
from meeting_service.settings import MeetingServiceSettings
from tests.support.gpu import (
    SAMPLE_RATE,
    Pki,
    node_settings,
    proxy_settings,
    silence,
    tone,
)
from tests.support.meeting import TEST_JWT_SECRET, auth, pipeline_settings

WAIT = 30.0  # generous bound for conditions that normally hold within a second


USER = "pipeline-user"


S = meeting_pb2.MeetingStatus


# Short leases, polls and backoffs so failure paths finish in a test's time.
PIPELINE_TEST_SETTINGS: dict[str, Any] = {
    "pipeline_lease_s": 2.0,
    "pipeline_backoff_initial_s": 0.1,
    "pipeline_backoff_max_s": 0.4,
    "pipeline_max_attempts": 5,
    "pipeline_gpu_deadline_base_s": 20.0,
    "pipeline_live_follow_s": WAIT,
}


@dataclass
class Mesh:
    """A running mesh and what tests reach into."""

    service: RunningMeetingService
    stub: meeting_service_pb2_grpc.MeetingServiceStub
    proxy: RunningProxy
    nodes: list[RunningNode]
    settings: MeetingServiceSettings
    stack: AsyncExitStack
    pki: Pki
    extra_workers: list[PipelineWorkers] = field(default_factory=list)

    async def start_node(self, engines: Engines | None = None, port: int = 0) -> RunningNode:
        node = await self.stack.enter_async_context(
            run_gpu_node(node_settings(self.pki, gpu_node_port=port), engines)
        )
        self.nodes.append(node)
        return node

    def workers(self, count: int = 1, **overrides: Any) -> PipelineWorkers:
        """Starts another set of workers in this process (over the same services)."""
        settings = self.settings.model_copy(update={"pipeline_workers": count, **overrides})
        services = self.service.services
        workers = PipelineWorkers(services.processing, settings)
        workers.start()
        self.extra_workers.append(workers)
        return workers


@asynccontextmanager
async def run_mesh(
    db_url: str,
    pki: Pki,
    data_dir: Path,
    *,
    engines: Sequence[Engines | None] = (None,),
    absent_nodes: Sequence[str] = (),
    proxy_overrides: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[Mesh]:
    """Runs gpu_node(s), gpu_proxy and meeting_service (with its workers) on loopback.

    Args:
        db_url: The database.
        pki: The run's certificates.
        data_dir: Scratch directory.
        engines: One entry per node: its engines, or None for the mock engine.
        absent_nodes: Further node addresses for gpu_proxy, where no node runs yet
            (`Mesh.start_node(port=...)` starts one there).
        proxy_overrides: gpu_proxy settings.
        **overrides: meeting_service settings.
    """
    async with AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(run_gpu_node(node_settings(pki), e)) for e in engines
        ]
        proxy = await stack.enter_async_context(
            run_gpu_proxy(
                proxy_settings(
                    pki, [*(n.address for n in nodes), *absent_nodes], **(proxy_overrides or {})
                )
            )
        )
        settings = pipeline_settings(
            db_url, data_dir, pki, proxy.address, **{**PIPELINE_TEST_SETTINGS, **overrides}
        )
        service = await stack.enter_async_context(
            run_meeting_service(settings, database=Database(db_url))
        )
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(service.address))
        mesh = Mesh(
            service,
            meeting_service_pb2_grpc.MeetingServiceStub(channel),
            proxy,
            nodes,
            settings,
            stack,
            pki,
        )
        try:
            yield mesh
        finally:
            for workers in mesh.extra_workers:
                await workers.stop()


def m4a_bytes(audio: np.ndarray) -> bytes:
    """An AAC-in-MP4 file of the samples, 44.1 kHz stereo (so decoding must resample and
    downmix), with its index at the end (so the reader must seek)."""
    out = io.BytesIO()
    with av.open(out, mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44_100, layout="stereo")
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=44_100)
        frame = av.AudioFrame.from_ndarray(
            audio.reshape(1, -1).astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(resampled):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def dialogue(turns: int) -> np.ndarray:
    """`turns` utterances alternating a low and a high voice: that many segments, 2 speakers."""
    parts = [silence(0.4)]
    for turn in range(turns):
        parts += [tone(1.0 + 0.1 * (turn % 3), 180.0 if turn % 2 == 0 else 420.0), silence(0.6)]
    return np.concatenate(parts)


async def create_meeting(mesh: Mesh, **fields: Any) -> meeting_pb2.Meeting:
    response = await mesh.stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(**fields)),
        metadata=auth(USER),
        timeout=WAIT,
    )
    return response.meeting


async def upload(
    mesh: Mesh, meeting_id: str, data: bytes, content_type: str = "audio/wav"
) -> meeting_service_pb2.UploadAudioResponse:
    """Uploads a recording in small chunks, so it is stored as many rows."""

    async def requests() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(
            metadata=meeting_service_pb2.UploadMetadata(
                meeting_id=meeting_id, content_type=content_type, total_size=len(data)
            )
        )
        for start in range(0, len(data), 16 * 1024):
            yield meeting_service_pb2.UploadAudioRequest(chunk=data[start : start + 16 * 1024])

    response: meeting_service_pb2.UploadAudioResponse = await mesh.stub.UploadAudio(
        requests(), metadata=auth(USER), timeout=WAIT
    )
    assert response.complete
    return response


def ended(event: meeting_pb2.TranscriptEvent) -> bool:
    return event.HasField("deleted") or (
        event.HasField("status_change")
        and event.status_change.status in (S.MEETING_STATUS_COMPLETED, S.MEETING_STATUS_FAILED)
    )


async def follow(
    mesh: Mesh,
    meeting_id: str,
    until: Callable[[meeting_pb2.TranscriptEvent], bool] = ended,
    *,
    after: int = 0,
    within: float = WAIT,
) -> list[meeting_pb2.TranscriptEvent]:
    """Streams a meeting's events from `after` until `until(event)` holds."""
    events: list[meeting_pb2.TranscriptEvent] = []
    call = mesh.stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id, after_sequence=after),
        metadata=auth(USER),
        timeout=within,
    )
    try:
        async for response in call:
            events.append(response.event)
            if until(response.event):
                return events
    finally:
        call.cancel()
    raise AssertionError(f"the stream ended before the condition held: {events[-3:]}")


async def transcript(mesh: Mesh, meeting_id: str) -> meeting_service_pb2.GetTranscriptResponse:
    response: meeting_service_pb2.GetTranscriptResponse = await mesh.stub.GetTranscript(
        meeting_service_pb2.GetTranscriptRequest(meeting_id=meeting_id),
        metadata=auth(USER),
        timeout=WAIT,
    )
    return response


def statuses(events: Sequence[meeting_pb2.TranscriptEvent]) -> list[str]:
    return [
        S.Name(e.status_change.status).removeprefix("MEETING_STATUS_")
        for e in events
        if e.HasField("status_change")
    ]


def assert_gapless(events: Sequence[meeting_pb2.TranscriptEvent], first: int = 1) -> None:
    """Sequences go up by exactly one: nothing skipped, nothing repeated."""
    assert [e.sequence for e in events] == list(range(first, first + len(events)))


def final_segment_events(
    events: Sequence[meeting_pb2.TranscriptEvent],
) -> list[meeting_pb2.Segment]:
    return [e.segment for e in events if e.HasField("segment") and e.segment.final]


class PausingRecognizer:
    """The mock recognizer, except that its first call stops after its first final segment
    until `release` is set (a call that is never released looks like a stuck GPU).

    Shared by several nodes, it pauses only the first call any of them serves.
    """

    name = MockRecognitionEngine.name
    languages = MockRecognitionEngine.languages
    translates = MockRecognitionEngine.translates
    takes_vocabulary = MockRecognitionEngine.takes_vocabulary

    def __init__(self) -> None:
        self.paused = asyncio.Event()
        self.release = asyncio.Event()
        self._calls = 0
        self._inner = MockRecognitionEngine()

    async def recognize(
        self, config: gpu_pb2.RecognitionConfig, audio: AsyncIterator[Audio]
    ) -> AsyncIterator[SegmentBatch]:
        self._calls += 1
        first_call = self._calls == 1
        async for batch in self._inner.recognize(config, audio):
            first_final = next((i for i, s in enumerate(batch) if s.is_final), None)
            if first_call and first_final is not None and not self.release.is_set():
                yield batch[: first_final + 1]
                self.paused.set()
                await self.release.wait()
                batch = batch[first_final + 1 :]
            if batch:
                yield batch


def pausing_engines(recognizer: PausingRecognizer) -> Engines:
    mock = create_engines("mock")
    return Engines(recognizer, mock.diarization, mock.summarization)


def new_id() -> str:
    return str(uuid.uuid4())


@asynccontextmanager
async def meeting_service_process(
    mesh: Mesh, db_url: str, data_dir: Path, *, port: int = 0, **env: str
) -> AsyncIterator[int]:
    """Runs a meeting_service replica as a process of its own, on `mesh`'s GPU service.

    It has the default settings but for `env` (`MESH_*` variables); with a `port`, it is
    yielded once it answers health checks there. On leaving, its log must hold no error.

    Yields:
        Its pid (to kill it with).
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    environment.update(
        DATABASE_URL=db_url,
        MESH_JWT_SECRET=TEST_JWT_SECRET,
        MESH_DATA_DIR=str(data_dir),
        MESH_LOG_FORMAT="json",
        MESH_MEETING_METRICS_PORT="0",
        MESH_GPU_PROXY_TARGET=mesh.proxy.address,
        MESH_GPU_PROXY_CERT=str(mesh.pki.client.cert),
        MESH_GPU_PROXY_KEY=str(mesh.pki.client.key),
        MESH_GPU_PROXY_CA=str(mesh.pki.ca.cert),
        **env,
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meeting_mesh.cli",
        "meeting-service",
        "--port",
        str(port),
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output: list[bytes] = []

    async def read() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            output.append(line)

    reader = asyncio.create_task(read())
    try:
        if port:
            probe = grpc_probe(f"127.0.0.1:{port}", "meeting.v1.MeetingService", None)
            async with asyncio.timeout(WAIT):
                while not await probe():
                    assert process.returncode is None, b"".join(output).decode()
                    await asyncio.sleep(0.1)
        yield process.pid
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await reader
        for line in output:
            if line.startswith(b"{"):
                assert json.loads(line)["level"] not in ("ERROR", "CRITICAL"), line
