"""gRPC transport of a GPU node: the three `gpu.v1` services over an `Engines` set.

Servicers parse and validate the streams (`gpu_node.requests`), admit the call
(`gpu_node.admission`) and hand plain audio to the engines; they know nothing of how the
engines work, and the engines nothing of gRPC. A streaming call is accepted by sending
initial metadata right after admission, before any request is read, so callers that wait
for it (`mesh_common.streams.start_gated`) never write into a refused call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from gen.gpu.v1 import gpu_pb2, gpu_pb2_grpc
from gpu_node.admission import Admission
from gpu_node.engines.base import SAMPLE_RATE, RecognitionEngine
from gpu_node.engines.factory import Engines
from gpu_node.requests import check_format, decode_audio, invalid
from mesh_common.errors import MeshError, abort
from mesh_common.lanes import lane_of
from mesh_common.languages import primary_language
from mesh_common.streams import HALF_CLOSED_DRAIN_SECONDS, drain

Context = grpc.aio.ServicerContext[Any, Any]

SERVICE_NAMES: tuple[str, ...] = tuple(
    gpu_pb2.DESCRIPTOR.services_by_name[name].full_name
    for name in (
        "SpeechRecognitionService",
        "SpeakerDiarizationService",
        "SummarizationService",
        "CapabilitiesService",
    )
)


class RecognitionServicer(gpu_pb2_grpc.SpeechRecognitionServiceServicer):
    """`gpu.v1.SpeechRecognitionService` over a recognition engine."""

    def __init__(self, engines: Engines, admission: Admission) -> None:
        self._engine = engines.recognition
        self._admission = admission

    def _count_audio(self, size: int) -> None:
        self._admission.audio_bytes["Recognize"] += size

    async def Recognize(
        self, request_iterator: AsyncIterator[gpu_pb2.RecognizeRequest], context: Context
    ) -> AsyncIterator[gpu_pb2.RecognizeResponse]:
        """Streams segments back as the engine finds them (see gpu.proto).

        A caller that asked for `segment_batches` gets each batch the engine hands over
        as one response; any other caller gets one response per segment.
        """
        accepted = False
        try:
            lane = lane_of(context.invocation_metadata())
            with self._admission.admit("Recognize", lane):
                await context.send_initial_metadata(())
                accepted = True
                first = await anext(request_iterator, None)
                if first is None or first.WhichOneof("part") != "config":
                    raise invalid("config", "the first message must carry config")
                check_format(first.config.encoding, first.config.sample_rate_hertz)
                check_language(self._engine, first.config.language)
                audio = decode_audio(request_iterator, self._count_audio)
                name = self._engine.name
                async for batch in self._engine.recognize(first.config, audio):
                    if not batch:
                        continue  # an empty message would read as a default segment
                    if first.config.segment_batches:
                        yield gpu_pb2.RecognizeResponse(segments=batch, engine=name)
                    else:
                        for segment in batch:
                            yield gpu_pb2.RecognizeResponse(segment=segment, engine=name)
        except MeshError as error:
            if accepted:
                await drain(request_iterator, HALF_CLOSED_DRAIN_SECONDS)
            await abort(context, error)


class DiarizationServicer(gpu_pb2_grpc.SpeakerDiarizationServiceServicer):
    """`gpu.v1.SpeakerDiarizationService` over a diarization engine."""

    def __init__(self, engines: Engines, admission: Admission, max_s: float) -> None:
        self._engine = engines.diarization
        self._admission = admission
        self._max_bytes = int(max_s * SAMPLE_RATE) * 2

    async def Diarize(
        self, request_iterator: AsyncIterator[gpu_pb2.DiarizeRequest], context: Context
    ) -> gpu_pb2.DiarizeResponse:
        """Labels the recording's spans, handing its audio to the engine as it arrives."""
        accepted = False
        try:
            with self._admission.admit("Diarize"):
                await context.send_initial_metadata(())
                accepted = True
                first = await anext(request_iterator, None)
                if first is None or first.WhichOneof("part") != "config":
                    raise invalid("config", "the first message must carry config")
                check_format(first.config.encoding, first.config.sample_rate_hertz)
                received = 0

                def count(size: int) -> None:
                    nonlocal received
                    received += size
                    self._admission.audio_bytes["Diarize"] += size
                    if received > self._max_bytes:
                        raise invalid(
                            "audio",
                            f"recording longer than {self._max_bytes // 2 // SAMPLE_RATE} s",
                        )

                audio = decode_audio(request_iterator, count)
                return await self._engine.diarize(first.config, audio)
        except MeshError as error:
            if accepted:
                await drain(request_iterator, HALF_CLOSED_DRAIN_SECONDS)
            await abort(context, error)


class SummarizationServicer(gpu_pb2_grpc.SummarizationServiceServicer):
    """`gpu.v1.SummarizationService` over a summarization engine."""

    def __init__(self, engines: Engines, admission: Admission) -> None:
        self._engine = engines.summarization
        self._admission = admission

    async def Summarize(
        self, request: gpu_pb2.SummarizeRequest, context: Context
    ) -> gpu_pb2.SummarizeResponse:
        """Summarizes the lines (see gpu.proto)."""
        try:
            with self._admission.admit("Summarize"):
                if request.max_sentences < 0:
                    raise invalid("max_sentences", "max_sentences must not be negative")
                return await self._engine.summarize(
                    request.lines, request.language, request.max_sentences
                )
        except MeshError as error:
            await abort(context, error)


def check_language(engine: RecognitionEngine, language: str) -> None:
    """Refuses a language the engine does not transcribe ("" asks it to detect one).

    Raises:
        MeshError: INVALID_ARGUMENT naming the languages it does transcribe.
    """
    if language and primary_language(language) not in engine.languages:
        raise invalid(
            "config.language",
            f"{engine.name} does not transcribe {language!r}; it transcribes: "
            f"{', '.join(engine.languages)}",
        )


class CapabilitiesServicer(gpu_pb2_grpc.CapabilitiesServiceServicer):
    """`gpu.v1.CapabilitiesService`: what this node's engines can do."""

    def __init__(self, engines: Engines) -> None:
        recognition = engines.recognition
        self._capabilities = gpu_pb2.GetCapabilitiesResponse(
            recognition_engines=[recognition.name],
            languages=sorted(recognition.languages),
            language_detection=True,
            translation=recognition.translates,
            diarization_engines=[engines.diarization.name],
            summarization_engines=[engines.summarization.name],
            vocabulary=recognition.takes_vocabulary,
        )

    async def GetCapabilities(
        self, request: gpu_pb2.GetCapabilitiesRequest, context: Context
    ) -> gpu_pb2.GetCapabilitiesResponse:
        """Answers with the engines' capabilities (see gpu.proto)."""
        return self._capabilities


def add_servicers(
    server: grpc.aio.Server, engines: Engines, admission: Admission, max_diarize_s: float
) -> None:
    """Registers the services on a server.

    Args:
        server: The server, not yet started.
        engines: The engines to serve with.
        admission: The shared bound on calls in flight.
        max_diarize_s: Longest recording one Diarize call may send.
    """
    gpu_pb2_grpc.add_SpeechRecognitionServiceServicer_to_server(
        RecognitionServicer(engines, admission), server
    )
    gpu_pb2_grpc.add_SpeakerDiarizationServiceServicer_to_server(
        DiarizationServicer(engines, admission, max_diarize_s), server
    )
    gpu_pb2_grpc.add_SummarizationServiceServicer_to_server(
        SummarizationServicer(engines, admission), server
    )
    gpu_pb2_grpc.add_CapabilitiesServiceServicer_to_server(CapabilitiesServicer(engines), server)
