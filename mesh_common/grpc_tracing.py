"""A client span and a `traceparent` header for every call on a grpc.aio channel.

OpenTelemetry's own aio client interceptors await the call inside the interceptor for
client-streaming methods (to read its status), so the call object reaches the caller only
once the call is over. A caller that waits for the server's initial metadata before
sending (`mesh_common.streams.start_gated`, what gpu_proxy and the pipeline do) then waits
forever. This interceptor returns the call at once and ends the span from the call's done
callback, the same for all four method shapes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode

# Probes of health (every few seconds, per node) would bury the traces of real work.
_UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


class _Tracing:
    """Starts a CLIENT span per call, child of the current span, and sends its context.

    grpc.aio files each interceptor under one method shape only (the first it is an
    instance of), so each shape has its own small subclass below.

    Args:
        tracer: The calling service's tracer.
    """

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._ending: set[asyncio.Task[None]] = set()

    async def _traced(
        self, continuation: Any, details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        method = _text(details.method)
        if method.startswith(_UNTRACED_PREFIXES):
            return await continuation(details, request)
        service, _, name = method.lstrip("/").partition("/")
        span = self._tracer.start_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *carrier.items())
        traced_details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        try:
            call = await continuation(traced_details, request)
        except BaseException as error:
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()
            raise
        call.add_done_callback(lambda done: self._end_when_known(span, done))
        return call

    def _end_when_known(self, span: trace.Span, call: Any) -> None:
        # The status is read with a coroutine; the call is over, so it answers at once.
        task = asyncio.ensure_future(_end(span, call))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)


class _UnaryUnary(_Tracing, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._traced(continuation, client_call_details, request)


class _UnaryStream(_Tracing, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._traced(continuation, client_call_details, request)


class _StreamUnary(_Tracing, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await self._traced(continuation, client_call_details, requests)


class _StreamStream(_Tracing, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await self._traced(continuation, client_call_details, requests)


def tracing_client_interceptors(tracer: trace.Tracer) -> list[grpc.aio.ClientInterceptor]:
    """Returns the interceptors that trace every call of a channel, one per method shape.

    Args:
        tracer: The calling service's tracer.

    Returns:
        Interceptors for `grpc.aio.*_channel(interceptors=...)`.
    """
    return [_UnaryUnary(tracer), _UnaryStream(tracer), _StreamUnary(tracer), _StreamStream(tracer)]


async def _end(span: trace.Span, call: Any) -> None:
    try:
        code: grpc.StatusCode = await call.code()
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
