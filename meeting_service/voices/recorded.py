"""The voice of a recording of one person alone, heard by the GPU service's speaker encoder.

The recording is probed and decoded as a meeting's recording is (`recordings.probe`,
`recordings.decode`), then diarized as one speaker whose speech the engine finds itself:
the voice it returns is in the same embedding space as the voices of diarized meetings,
so it matches them the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import grpc

from contract_errors.meeting import MeetingError, invalid_field, unavailable
from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import meeting_pb2
from gpu_client import GpuConnection, GpuNotConfigured, diarize
from meeting_service.recordings.decode import UndecodableRecording, decode_pcm
from meeting_service.recordings.pcm import BYTES_PER_SECOND, SAMPLE_RATE_HZ
from meeting_service.recordings.probe import probe_audio
from meeting_service.recordings.recording_file import ReadAt
from meeting_service.voices.repository import Voice

_FIELD = "audio"


@dataclass(frozen=True)
class SampleLimits:
    """What a recording of a voice alone must be.

    Attributes:
        min_speech_s: Least speech it must hold.
        max_s: Longest it may last.
    """

    min_speech_s: float
    max_s: float


class RecordedVoices:
    """Hears the voice of a recording of one person alone.

    Args:
        gpu: The connection to gpu_proxy.
        deadline_s: The deadline, in seconds from now, of a GPU call over that many
            seconds of audio.
        limits: What a recording must be.
    """

    def __init__(
        self, gpu: GpuConnection, deadline_s: Callable[[float], float], limits: SampleLimits
    ) -> None:
        self._gpu = gpu
        self._deadline_s = deadline_s
        self._limits = limits

    async def hear(self, recording: bytes) -> Voice:
        """Returns the voice a recording holds (its `label` is empty: it is no speaker's).

        Raises:
            MeetingError: NOT_AUDIO when it is not decodable audio; INVALID_FIELD
                (`audio`) when it lasts too long or holds too little speech;
                BACKEND_UNAVAILABLE when the GPU service cannot hear it now.
        """
        await probe_audio(_reader(recording), len(recording))
        pcm = await self._decode(recording)
        seconds = len(pcm) / BYTES_PER_SECOND
        config = gpu_pb2.DiarizationConfig(
            encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
            sample_rate_hertz=SAMPLE_RATE_HZ,
            num_speakers=1,
        )
        try:
            diarized = await diarize(
                self._gpu.stubs(), config, _once(pcm), deadline=self._deadline_s(seconds)
            )
        except GpuNotConfigured as error:
            raise unavailable(f"the GPU service is not reachable: {error}") from None
        except grpc.aio.AioRpcError as error:
            raise unavailable(
                f"the GPU service could not hear the recording ({error.code().name}); "
                "try again later"
            ) from None
        speech_s = sum(voice.speech_seconds for voice in diarized.voices)
        if not diarized.voices or speech_s < self._limits.min_speech_s:
            heard = "no speech" if speech_s == 0 else f"only {speech_s:.1f} s of speech"
            raise invalid_field(
                _FIELD,
                f"the recording holds {heard}; a voice sample needs at least "
                f"{self._limits.min_speech_s:g} s of one person speaking",
            )
        (voice,) = diarized.voices  # one speaker was asked for
        return Voice("", voice.encoder, list(voice.embedding), voice.speech_seconds)

    async def _decode(self, recording: bytes) -> bytes:
        limit = int(self._limits.max_s * BYTES_PER_SECOND)
        pcm = bytearray()
        try:
            async with contextlib.aclosing(
                decode_pcm(_reader(recording), len(recording))
            ) as blocks:
                async for block in blocks:
                    pcm += block
                    if len(pcm) > limit:
                        raise invalid_field(
                            _FIELD,
                            f"the recording is longer than {self._limits.max_s:g} s, the "
                            "longest a voice sample may be",
                        )
        except UndecodableRecording as error:
            raise MeetingError(meeting_pb2.ERROR_REASON_NOT_AUDIO, str(error)) from None
        return bytes(pcm)


def _reader(recording: bytes) -> ReadAt:
    async def read_at(offset: int) -> tuple[int, bytes] | None:
        return (0, recording) if offset < len(recording) else None

    return read_at


async def _once(pcm: bytes) -> AsyncIterator[bytes]:
    yield pcm
