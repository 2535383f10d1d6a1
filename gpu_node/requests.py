"""Reading the `gpu.v1` request streams: config first, then LINEAR16 audio.

The rules live here once for both streaming services: the first message must be the
config, later ones audio; 16 kHz LINEAR16 is the only format; an odd trailing byte of a
chunk belongs to the next one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from contract_errors.gpu import GpuError
from gen.gpu.v1 import gpu_pb2
from gpu_node.engines.base import SAMPLE_RATE, Audio, pcm16_to_float


def invalid(field: str, message: str) -> GpuError:
    """Returns the INVALID_ARGUMENT error for a bad request field.

    Args:
        field: The field's path, put in `ErrorInfo.metadata.field`.
        message: What is wrong.

    Returns:
        The error.
    """
    return GpuError(gpu_pb2.ERROR_REASON_INVALID_FIELD, message, {"field": field})


def check_format(encoding: int, sample_rate_hertz: int) -> None:
    """Accepts 16 kHz LINEAR16 (0 and UNSPECIFIED mean exactly that).

    Args:
        encoding: The config's `AudioEncoding`.
        sample_rate_hertz: The config's sample rate.

    Raises:
        MeshError: UNSUPPORTED_AUDIO (INVALID_ARGUMENT) naming the field.
    """
    if encoding not in (gpu_pb2.AUDIO_ENCODING_UNSPECIFIED, gpu_pb2.AUDIO_ENCODING_LINEAR16):
        raise GpuError(
            gpu_pb2.ERROR_REASON_UNSUPPORTED_AUDIO,
            "only LINEAR16 audio is supported",
            {"field": "config.encoding"},
        )
    if sample_rate_hertz not in (0, SAMPLE_RATE):
        raise GpuError(
            gpu_pb2.ERROR_REASON_UNSUPPORTED_AUDIO,
            f"sample rate {sample_rate_hertz} Hz is not supported; send {SAMPLE_RATE} Hz",
            {"field": "config.sample_rate_hertz"},
        )


async def decode_audio(
    requests: AsyncIterator[gpu_pb2.RecognizeRequest] | AsyncIterator[gpu_pb2.DiarizeRequest],
    on_bytes: Callable[[int], None] = lambda _: None,
) -> AsyncIterator[Audio]:
    """Decodes the audio messages that follow the config.

    Args:
        requests: The request stream, its config already read.
        on_bytes: Told the size of each audio message as it arrives.

    Yields:
        float32 chunks; empty messages yield nothing.

    Raises:
        MeshError: INVALID_FIELD when a later message carries a config.
    """
    carry = b""
    async for request in requests:
        if request.WhichOneof("part") != "audio":
            raise invalid("config", "only the first message may carry config")
        audio = request.audio  # read once: each read of a bytes field copies it (upb)
        on_bytes(len(audio))
        data = carry + audio
        cut = len(data) - len(data) % 2
        carry = data[cut:]
        if cut:
            yield pcm16_to_float(data[:cut])
    # An odd byte left at the very end is half a sample: nothing to decode.
