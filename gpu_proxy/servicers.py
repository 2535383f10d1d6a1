"""gRPC transport of the proxy: the three `gpu.v1` services, each call handed to the forwarder.

Nothing here reads the messages: the proxy forwards audio and text it does not need to
understand. A streaming call is accepted towards the caller (initial metadata sent) only
once a node has accepted it, so a caller using `mesh_common.streams.start_gated` writes
nothing into a call the proxy refuses; a call that fails after that point has the rest of
its request stream drained before the status goes back (see `mesh_common.streams`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, cast

import grpc

from gen.gpu.v1 import gpu_pb2, gpu_pb2_grpc
from gpu_proxy.forwarder import Forwarder, NodeStatusError
from gpu_proxy.replay import ReplayBuffer
from mesh_common.errors import MeshError, abort
from mesh_common.streams import start_gated

Context = grpc.aio.ServicerContext[Any, Any]

DRAIN_SECONDS = 10.0


async def _once(call: Any) -> AsyncIterator[Any]:
    # Unary-response calls seen as a stream of one, so one loop forwards every shape.
    yield await call


class _Acceptance:
    """Sends the caller our initial metadata once, when a node accepted the call."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self.sent = False

    async def __call__(self) -> None:
        if not self.sent:
            self.sent = True
            await self._context.send_initial_metadata(())


class ProxyServicers(
    gpu_pb2_grpc.SpeechRecognitionServiceServicer,
    gpu_pb2_grpc.SpeakerDiarizationServiceServicer,
    gpu_pb2_grpc.SummarizationServiceServicer,
):
    """All three services, forwarded.

    Args:
        forwarder: Runs calls against the nodes.
        replay_buffer_bytes: Request bytes kept per streaming call for replay.
    """

    def __init__(self, forwarder: Forwarder, replay_buffer_bytes: int) -> None:
        self._forwarder = forwarder
        self._replay_bytes = replay_buffer_bytes

    async def Recognize(
        self, request_iterator: AsyncIterator[gpu_pb2.RecognizeRequest], context: Context
    ) -> AsyncIterator[gpu_pb2.RecognizeResponse]:
        """Forwards a recognition stream; segments come back as the node sends them."""
        requests = ReplayBuffer(request_iterator, self._replay_bytes)
        accepted = _Acceptance(context)

        def open_call(
            channel: grpc.aio.Channel, stream: AsyncIterator[Any] | None, timeout: float | None
        ) -> tuple[grpc.aio.Call, AsyncIterator[Any]]:
            stub = gpu_pb2_grpc.SpeechRecognitionServiceStub(channel)
            call = start_gated(stub.Recognize, cast(AsyncIterator[Any], stream), timeout=timeout)
            return call, aiter(call)

        try:
            forwarded = self._forwarder.forward(
                open_call, requests, context.time_remaining(), "Recognize", accepted
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    yield response
        except (MeshError, NodeStatusError) as error:
            await _fail(context, error, requests if accepted.sent else None)
        finally:
            requests.close()

    async def Diarize(
        self, request_iterator: AsyncIterator[gpu_pb2.DiarizeRequest], context: Context
    ) -> gpu_pb2.DiarizeResponse:
        """Forwards a diarization stream; the single response comes at its end."""
        requests = ReplayBuffer(request_iterator, self._replay_bytes)
        accepted = _Acceptance(context)

        def open_call(
            channel: grpc.aio.Channel, stream: AsyncIterator[Any] | None, timeout: float | None
        ) -> tuple[grpc.aio.Call, AsyncIterator[Any]]:
            stub = gpu_pb2_grpc.SpeakerDiarizationServiceStub(channel)
            call = start_gated(stub.Diarize, cast(AsyncIterator[Any], stream), timeout=timeout)
            return call, _once(call)

        try:
            forwarded = self._forwarder.forward(
                open_call, requests, context.time_remaining(), "Diarize", accepted
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    return cast(gpu_pb2.DiarizeResponse, response)
            raise AssertionError("a unary call ended without a response")  # pragma: no cover
        except (MeshError, NodeStatusError) as error:
            await _fail(context, error, requests if accepted.sent else None)
            raise  # pragma: no cover - _fail always raises
        finally:
            requests.close()

    async def Summarize(
        self, request: gpu_pb2.SummarizeRequest, context: Context
    ) -> gpu_pb2.SummarizeResponse:
        """Forwards a summarization request."""

        def open_call(
            channel: grpc.aio.Channel, _: AsyncIterator[Any] | None, timeout: float | None
        ) -> tuple[grpc.aio.Call, AsyncIterator[Any]]:
            call = gpu_pb2_grpc.SummarizationServiceStub(channel).Summarize(
                request, timeout=timeout
            )
            return call, _once(call)

        try:
            forwarded = self._forwarder.forward(
                open_call, None, context.time_remaining(), "Summarize"
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    return cast(gpu_pb2.SummarizeResponse, response)
            raise AssertionError("a unary call ended without a response")  # pragma: no cover
        except (MeshError, NodeStatusError) as error:
            await _fail(context, error, None)
            raise  # pragma: no cover - _fail always raises


async def _fail(
    context: Context, error: MeshError | NodeStatusError, rest: ReplayBuffer[Any] | None
) -> None:
    if rest is not None:
        await rest.drain(DRAIN_SECONDS)
    if isinstance(error, MeshError):
        await abort(context, error)
    await error.abort(context)
