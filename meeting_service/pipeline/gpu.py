"""The pipeline's side of gpu_proxy: one mTLS channel, opened on first use, and the calls.

Every call gets a deadline from `Deadlines` (proportional to the audio's length); the
channel's tracing interceptor carries the current span (the job's stage) as `traceparent`.
Streams wait for the proxy to accept them before sending audio
(`mesh_common.streams.start_gated`), so a refusal is seen as the proxy sent it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from gen.gpu.v1 import gpu_pb2
from gpu_proxy.client import GpuStubs, connect
from meeting_service.settings import MeetingServiceSettings
from mesh_common.grpc_tracing import ChannelWrapper, untraced
from mesh_common.streams import start_gated
from mesh_common.tls import KeyPair

# The contract allows at most 1 MiB of audio per message.
MAX_AUDIO_MESSAGE_BYTES = 1 << 20

Metadata = Sequence[tuple[str, str]]


class GpuNotConfigured(Exception):
    """The client certificate (or the CA) for gpu_proxy is missing; the message says which."""


class GpuConnection:
    """The channel to gpu_proxy, shared by every job and live session of the process.

    Args:
        target: gpu_proxy's "host:port".
        identity: This service's client certificate and key.
        ca: The CA gpu_proxy's certificate must chain to.
        tls_name: Name to check in gpu_proxy's certificate; None checks the target's host.
        trace_channel: Wraps the channel in the service's tracing.
    """

    def __init__(
        self,
        target: str,
        identity: KeyPair,
        ca: Path,
        tls_name: str | None = None,
        trace_channel: ChannelWrapper = untraced,
    ) -> None:
        self.target = target
        self._identity = identity
        self._ca = ca
        self._tls_name = tls_name
        self._trace_channel = trace_channel
        self._channel: grpc.aio.Channel | None = None
        self._stubs: GpuStubs | None = None

    @classmethod
    def from_settings(
        cls,
        settings: MeetingServiceSettings,
        trace_channel: ChannelWrapper = untraced,
    ) -> GpuConnection:
        """Builds the connection the settings describe (nothing is opened yet)."""
        return cls(
            settings.gpu_proxy_target,
            settings.gpu_identity(),
            settings.gpu_ca(),
            settings.gpu_proxy_tls_name or None,
            trace_channel,
        )

    def problem(self) -> str | None:
        """Says what keeps the channel from opening (a missing file), or None."""
        for what, path in (
            ("client certificate", self._identity.cert),
            ("client key", self._identity.key),
            ("CA certificate", self._ca),
        ):
            if not path.is_file():
                return f"the {what} for gpu_proxy is missing at {path}"
        return None

    def stubs(self) -> GpuStubs:
        """Returns the stubs, opening the channel on first use.

        Raises:
            GpuNotConfigured: A certificate file is missing.
        """
        if self._stubs is None:
            problem = self.problem()
            if problem is not None:
                raise GpuNotConfigured(problem)
            self._channel = self._trace_channel(
                connect(self.target, self._identity, self._ca, tls_name=self._tls_name)
            )
            self._stubs = GpuStubs.of(self._channel)
        return self._stubs

    async def close(self) -> None:
        """Closes the channel (calls in flight are cancelled)."""
        if self._channel is not None:
            await self._channel.close()
        self._channel = None
        self._stubs = None


@dataclass(frozen=True)
class Deadlines:
    """Deadlines of GPU calls: a fixed part plus a part per second of audio.

    Attributes:
        base_s: Seconds every call gets.
        per_audio_s: Seconds added per second of audio.
    """

    base_s: float
    per_audio_s: float

    def for_audio(self, audio_seconds: float) -> float:
        """Returns the deadline, in seconds from now, of a call over that much audio."""
        return self.base_s + self.per_audio_s * max(0.0, audio_seconds)


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
    feed = _Feed(gpu_pb2.RecognizeRequest(config=config), pcm, gpu_pb2.RecognizeRequest)
    call = start_gated(
        gpu.recognition.Recognize, feed.messages(), timeout=deadline, metadata=tuple(metadata)
    )
    try:
        async for response in call:
            yield response.segment
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
