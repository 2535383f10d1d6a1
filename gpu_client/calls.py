"""The streaming calls with audio: `Recognize` and `Diarize`, fed from any PCM source.

Each call takes its deadline from the caller; a traced channel carries the current span
as `traceparent`. Streams wait for the proxy to accept them before sending audio
(`mesh_common.streams.start_gated`), so a refusal is seen as the proxy sent it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import grpc

from gen.gpu.v1 import gpu_pb2
from gpu_client.channel import GpuStubs
from mesh_common.lanes import BATCH, LANE_KEY, LIVE
from mesh_common.streams import start_gated

# The contract allows at most 1 MiB of audio per message.
MAX_AUDIO_MESSAGE_BYTES = 1 << 20

Metadata = Sequence[tuple[str, str]]


class _Feed:
    """Audio messages for a call, remembering why the audio source failed.

    grpc.aio cancels a call whose request iterator raises and drops the exception; the
    call's caller then sees only CANCELLED. Keeping the error here lets it re-raise the
    real cause (a decode error, a lost database).
    """

    def __init__(self, first: object, pcm: AsyncIterator[bytes], wrap: type) -> None:
        self._first = first
        self._pcm = pcm
        self._wrap = wrap
        self.error: BaseException | None = None

    async def messages(self) -> AsyncIterator[object]:
        yield self._first
        try:
            async for block in self._pcm:
                for start in range(0, len(block), MAX_AUDIO_MESSAGE_BYTES):
                    yield self._wrap(audio=block[start : start + MAX_AUDIO_MESSAGE_BYTES])
        except Exception as error:
            self.error = error
            raise

    def reraise(self) -> None:
        """Raises the audio source's error in place of the call's own, if it failed.

        Not when this task is itself being cancelled: that cancellation must go on.
        """
        task = asyncio.current_task()
        if self.error is not None and (task is None or not task.cancelling()):
            raise self.error


async def recognize(
    gpu: GpuStubs,
    config: gpu_pb2.RecognitionConfig,
    pcm: AsyncIterator[bytes],
    *,
    deadline: float,
    metadata: Metadata = (),
) -> AsyncGenerator[gpu_pb2.RecognizedSegment]:
    """Streams PCM to `Recognize` and yields the segments as they come back.

    A live-mode call draws on the GPU's live capacity (`mesh_common.lanes`). The call
    asks for `segment_batches` and reads both kinds of response, so a node that sends one
    segment per response is read alike.

    Args:
        gpu: The stubs.
        config: The recognition config (sent first).
        pcm: LINEAR16 blocks of any size (split to the contract's 1 MiB here).
        deadline: Deadline of the call, in seconds from now.
        metadata: Extra call metadata.

    Yields:
        Segment versions, partial and final, in the order the node sent them.

    Raises:
        grpc.aio.AioRpcError: The call failed.
        Exception: Whatever the audio source raised (it ends the call).
    """
    first = gpu_pb2.RecognizeRequest(config=config)
    # Fewer, larger responses: the segments a node has ready at once come together.
    first.config.segment_batches = True
    feed = _Feed(first, pcm, gpu_pb2.RecognizeRequest)
    lane = LIVE if config.mode == gpu_pb2.RECOGNITION_MODE_LIVE else BATCH
    call = start_gated(
        gpu.recognition.Recognize,
        feed.messages(),
        timeout=deadline,
        metadata=(*metadata, (LANE_KEY, lane)),
    )
    try:
        async for response in call:
            if response.HasField("segment"):
                yield response.segment
            for segment in response.segments:
                yield segment
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        feed.reraise()
        raise
    finally:
        call.cancel()
    feed.reraise()


async def diarize(
    gpu: GpuStubs,
    config: gpu_pb2.DiarizationConfig,
    pcm: AsyncIterator[bytes],
    *,
    deadline: float,
    metadata: Metadata = (),
) -> gpu_pb2.DiarizeResponse:
    """Streams PCM to `Diarize` and returns who spoke when.

    Args:
        gpu: The stubs.
        config: The diarization config (sent first), with the spans to label.
        pcm: LINEAR16 blocks of any size.
        deadline: Deadline of the call, in seconds from now.
        metadata: Call metadata.

    Returns:
        The turns.

    Raises:
        grpc.aio.AioRpcError: The call failed.
        Exception: Whatever the audio source raised.
    """
    feed = _Feed(gpu_pb2.DiarizeRequest(config=config), pcm, gpu_pb2.DiarizeRequest)
    call = start_gated(
        gpu.diarization.Diarize, feed.messages(), timeout=deadline, metadata=tuple(metadata)
    )
    try:
        response: gpu_pb2.DiarizeResponse = await call
    except (grpc.aio.AioRpcError, asyncio.CancelledError):
        feed.reraise()
        raise
    finally:
        call.cancel()
    return response
