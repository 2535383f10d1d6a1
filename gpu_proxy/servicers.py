"""gRPC transport of the proxy: the three `gpu.v1` services, each call handed to the forwarder.

Nothing here reads the messages: the proxy forwards audio and text it does not need to
understand.
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

Context = grpc.aio.ServicerContext[Any, Any]


async def _once(call: Any) -> AsyncIterator[Any]:
    # Unary-response calls seen as a stream of one, so one loop forwards every shape.
    yield await call


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

        def open_call(
            channel: grpc.aio.Channel, stream: AsyncIterator[Any] | None, timeout: float | None
        ) -> AsyncIterator[gpu_pb2.RecognizeResponse]:
            call = gpu_pb2_grpc.SpeechRecognitionServiceStub(channel).Recognize(
                stream, timeout=timeout
            )
            return aiter(call)

        try:
            forwarded = self._forwarder.forward(
                open_call, requests, context.time_remaining(), "Recognize"
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    yield response
        except MeshError as error:
            await abort(context, error)
        except NodeStatusError as error:
            await error.abort(context)
        finally:
            requests.close()

    async def Diarize(
        self, request_iterator: AsyncIterator[gpu_pb2.DiarizeRequest], context: Context
    ) -> gpu_pb2.DiarizeResponse:
        """Forwards a diarization stream; the single response comes at its end."""
        requests = ReplayBuffer(request_iterator, self._replay_bytes)

        def open_call(
            channel: grpc.aio.Channel, stream: AsyncIterator[Any] | None, timeout: float | None
        ) -> AsyncIterator[gpu_pb2.DiarizeResponse]:
            stub = gpu_pb2_grpc.SpeakerDiarizationServiceStub(channel)
            return _once(stub.Diarize(stream, timeout=timeout))

        response = await self._unary_response(open_call, requests, context, "Diarize")
        return cast(gpu_pb2.DiarizeResponse, response)

    async def Summarize(
        self, request: gpu_pb2.SummarizeRequest, context: Context
    ) -> gpu_pb2.SummarizeResponse:
        """Forwards a summarization request."""

        def open_call(
            channel: grpc.aio.Channel, _: AsyncIterator[Any] | None, timeout: float | None
        ) -> AsyncIterator[gpu_pb2.SummarizeResponse]:
            stub = gpu_pb2_grpc.SummarizationServiceStub(channel)
            return _once(stub.Summarize(request, timeout=timeout))

        response = await self._unary_response(open_call, None, context, "Summarize")
        return cast(gpu_pb2.SummarizeResponse, response)

    async def _unary_response(
        self,
        open_call: Any,
        requests: ReplayBuffer[Any] | None,
        context: Context,
        method: str,
    ) -> Any:
        try:
            forwarded = self._forwarder.forward(
                open_call, requests, context.time_remaining(), method
            )
            async with aclosing(forwarded):
                async for response in forwarded:
                    return response
            raise AssertionError("a unary call ended without a response")  # pragma: no cover
        except MeshError as error:
            await abort(context, error)
        except NodeStatusError as error:
            await error.abort(context)
        finally:
            if requests is not None:
                requests.close()
