"""gRPC transport of the proxy: the three `gpu.v1` services, each call handed to the forwarder.

Nothing here reads the messages: the proxy forwards audio and text it does not need to
understand, as the bytes they arrived in (`generic_handlers` registers the methods with no
deserializer, and the calls to the nodes have no serializer), so no message is parsed and
serialized again on its way through. A streaming call is accepted towards the caller
(initial metadata sent) only once a node has accepted it, so a caller using
`mesh_common.streams.start_gated` writes nothing into a call the proxy refuses; a call that
fails after that point has the rest of its request stream drained before the status goes
back (see `mesh_common.streams`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, cast

import grpc

from gen.gpu.v1 import gpu_pb2
from gpu_proxy.forwarder import Forwarder, NodeStatusError
from gpu_proxy.replay import ReplayBuffer
from mesh_common.errors import MeshError, abort
from mesh_common.lanes import LANE_KEY, lane_of
from mesh_common.streams import HALF_CLOSED_DRAIN_SECONDS, start_gated

Context = grpc.aio.ServicerContext[Any, Any]

_SERVICES = gpu_pb2.DESCRIPTOR.services_by_name
RECOGNITION = _SERVICES["SpeechRecognitionService"].full_name
DIARIZATION = _SERVICES["SpeakerDiarizationService"].full_name
SUMMARIZATION = _SERVICES["SummarizationService"].full_name
RECOGNIZE = f"/{RECOGNITION}/Recognize"
DIARIZE = f"/{DIARIZATION}/Diarize"
SUMMARIZE = f"/{SUMMARIZATION}/Summarize"


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


class ProxyServicers:
    """All three services, forwarded as bytes (register them with `generic_handlers`).

    Args:
        forwarder: Runs calls against the nodes.
        replay_buffer_bytes: Request bytes kept per streaming call for replay.
    """

    def __init__(self, forwarder: Forwarder, replay_buffer_bytes: int) -> None:
        self._forwarder = forwarder
        self._replay_bytes = replay_buffer_bytes

    async def Recognize(
        self, request_iterator: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[bytes]:
        """Forwards a recognition stream; segments come back as the node sends them.

        The stream draws on the lane its metadata names (`mesh_common.lanes`), here and
        on the node.
        """
        requests = ReplayBuffer(request_iterator, self._replay_bytes)
        accepted = _Acceptance(context)
        lane = lane_of(context.invocation_metadata())

        def open_call(
            channel: grpc.aio.Channel, stream: AsyncIterator[Any] | None, timeout: float | None
        ) -> tuple[grpc.aio.Call, AsyncIterator[Any]]:
            method: grpc.aio.StreamStreamMultiCallable[bytes, bytes]
            method = channel.stream_stream(RECOGNIZE)
            call = start_gated(
                method,
                cast(AsyncIterator[Any], stream),
                timeout=timeout,
                metadata=((LANE_KEY, lane),),
            )
            return call, aiter(call)

        try:
            forwarded = self._forwarder.forward(
                open_call, requests, context.time_remaining(), "Recognize", accepted, lane
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    yield response
        except (MeshError, NodeStatusError) as error:
            await _fail(context, error, requests if accepted.sent else None)
        finally:
            requests.close()

    async def Diarize(self, request_iterator: AsyncIterator[bytes], context: Context) -> bytes:
        """Forwards a diarization stream; the single response comes at its end."""
        requests = ReplayBuffer(request_iterator, self._replay_bytes)
        accepted = _Acceptance(context)

        def open_call(
            channel: grpc.aio.Channel, stream: AsyncIterator[Any] | None, timeout: float | None
        ) -> tuple[grpc.aio.Call, AsyncIterator[Any]]:
            method: grpc.aio.StreamUnaryMultiCallable[bytes, bytes]
            method = channel.stream_unary(DIARIZE)
            call = start_gated(method, cast(AsyncIterator[Any], stream), timeout=timeout)
            return call, _once(call)

        try:
            forwarded = self._forwarder.forward(
                open_call, requests, context.time_remaining(), "Diarize", accepted
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    return cast(bytes, response)
            raise AssertionError("a unary call ended without a response")  # pragma: no cover
        except (MeshError, NodeStatusError) as error:
            await _fail(context, error, requests if accepted.sent else None)
            raise  # pragma: no cover - _fail always raises
        finally:
            requests.close()

    async def Summarize(self, request: bytes, context: Context) -> bytes:
        """Forwards a summarization request."""

        def open_call(
            channel: grpc.aio.Channel, _: AsyncIterator[Any] | None, timeout: float | None
        ) -> tuple[grpc.aio.Call, AsyncIterator[Any]]:
            method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]
            method = channel.unary_unary(SUMMARIZE)
            call = method(request, timeout=timeout)
            return call, _once(call)

        try:
            forwarded = self._forwarder.forward(
                open_call, None, context.time_remaining(), "Summarize"
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    return cast(bytes, response)
            raise AssertionError("a unary call ended without a response")  # pragma: no cover
        except (MeshError, NodeStatusError) as error:
            await _fail(context, error, None)
            raise  # pragma: no cover - _fail always raises


def generic_handlers(servicers: ProxyServicers) -> list[grpc.GenericRpcHandler]:
    """The three services' methods, taking and returning the messages' bytes as they are."""
    return [
        grpc.method_handlers_generic_handler(
            RECOGNITION, {"Recognize": grpc.stream_stream_rpc_method_handler(servicers.Recognize)}
        ),
        grpc.method_handlers_generic_handler(
            DIARIZATION, {"Diarize": grpc.stream_unary_rpc_method_handler(servicers.Diarize)}
        ),
        grpc.method_handlers_generic_handler(
            SUMMARIZATION, {"Summarize": grpc.unary_unary_rpc_method_handler(servicers.Summarize)}
        ),
    ]


async def _fail(
    context: Context, error: MeshError | NodeStatusError, rest: ReplayBuffer[Any] | None
) -> None:
    if rest is not None:
        await rest.drain(HALF_CLOSED_DRAIN_SECONDS)
    if isinstance(error, MeshError):
        await abort(context, error)
    await error.abort(context)
