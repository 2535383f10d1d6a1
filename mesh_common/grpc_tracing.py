"""A client span and a `traceparent` header for every call on a grpc.aio channel.

`TracedChannel` wraps a channel's multicallables rather than installing client
interceptors: grpc.aio runs an intercepted call through an extra task and wrapper objects,
about 100 µs of CPU per unary call, a tenth of the gateway's per request; and
OpenTelemetry's own aio client interceptors await client-streaming calls inside the
interceptor, so a caller that waits for the server's initial metadata before sending
(`mesh_common.streams.start_gated`, what gpu_proxy and the pipeline do) would wait forever.
Each call here gets its span and its `traceparent` and returns grpc's own call object at
once; a recorded span ends from the call's done callback, an unsampled one at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

# Probes of health (every few seconds, per node) would bury the traces of real work.
UNTRACED_PREFIXES = ("/grpc.health.", "/grpc.reflection.")

Metadata = grpc.aio.Metadata | Sequence[tuple[str, str | bytes]] | None
ChannelWrapper = Callable[[grpc.aio.Channel], grpc.aio.Channel]


def untraced(channel: grpc.aio.Channel) -> grpc.aio.Channel:
    """The `ChannelWrapper` that adds nothing (a channel with no tracing)."""
    return channel


class _Tracing:
    """Starts the CLIENT span of one call and ends it when the call's status is known."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer
        self._ending: set[asyncio.Task[None]] = set()
        # Under a parent-based sampler a child of an unsampled span is never sampled, so
        # its context can be made here without the SDK's span (sampler, attributes, span
        # object: most of what tracing costs per call when nothing is recorded).
        sampler = getattr(tracer, "sampler", None)
        ids = getattr(tracer, "id_generator", None)
        self._unsampled_ids: IdGenerator | None = (
            ids if isinstance(sampler, ParentBased) and isinstance(ids, IdGenerator) else None
        )

    def start(self, method: str, metadata: Metadata) -> tuple[trace.Span | None, Metadata]:
        """Starts a call's span; returns it (None when untraced) and the call's metadata."""
        if method.startswith(UNTRACED_PREFIXES):
            return None, metadata
        parent = trace.get_current_span().get_span_context()
        if self._unsampled_ids is not None and parent.is_valid and not parent.trace_flags.sampled:
            # What the SDK would make: the parent's trace and trace state, a new span id.
            child = SpanContext(
                trace_id=parent.trace_id,
                span_id=self._unsampled_ids.generate_span_id(),
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.DEFAULT),
                trace_state=parent.trace_state,
            )
            carrier: dict[str, str] = {}
            inject(carrier, context=trace.set_span_in_context(NonRecordingSpan(child)))
            return None, (*(metadata or ()), *carrier.items())
        service, _, name = method.lstrip("/").partition("/")
        span = self._tracer.start_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        )
        carrier = {}
        inject(carrier, context=trace.set_span_in_context(span))
        traced = (*(metadata or ()), *carrier.items())
        if not span.is_recording():
            span.end()  # unsampled: only its context travels
            return None, traced
        return span, traced

    def watch(self, span: trace.Span | None, call: Any) -> Any:
        """Ends `span` once `call` is over, with its status; returns the call."""
        if span is not None:
            call.add_done_callback(lambda done: self._end_when_known(span, done))
        return call

    def _end_when_known(self, span: trace.Span, call: Any) -> None:
        # The status is read with a coroutine; the call is over, so it answers at once.
        task = asyncio.ensure_future(_end(span, call))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)


class _Traced:
    """What the four traced multicallables share: the wrapped one, the tracing, the method."""

    def __init__(self, inner: Any, tracing: _Tracing, method: str) -> None:
        self._inner, self._tracing, self._method = inner, tracing, method

    def _call(self, request: Any, metadata: Metadata, **kwargs: Any) -> Any:
        span, metadata = self._tracing.start(self._method, metadata)
        try:
            call = self._inner(request, metadata=metadata, **kwargs)
        except BaseException:
            _fail(span)
            raise
        return self._tracing.watch(span, call)


class _UnaryUnary(_Traced, grpc.aio.UnaryUnaryMultiCallable[Any, Any]):
    def __call__(
        self, request: Any, *, metadata: Metadata = None, **kwargs: Any
    ) -> grpc.aio.UnaryUnaryCall[Any, Any]:
        return self._call(request, metadata, **kwargs)  # type: ignore[no-any-return]


class _UnaryStream(_Traced, grpc.aio.UnaryStreamMultiCallable[Any, Any]):
    def __call__(
        self, request: Any, *, metadata: Metadata = None, **kwargs: Any
    ) -> grpc.aio.UnaryStreamCall[Any, Any]:
        return self._call(request, metadata, **kwargs)  # type: ignore[no-any-return]


# The streaming shapes spell their parameters out: their base classes take them by position.
class _StreamUnary(_Traced, grpc.aio.StreamUnaryMultiCallable[Any, Any]):
    def __call__(
        self,
        request_iterator: AsyncIterator[Any] | Iterator[Any] | None = None,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.aio.StreamUnaryCall[Any, Any]:
        return self._call(  # type: ignore[no-any-return]
            request_iterator,
            metadata,
            timeout=timeout,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )


class _StreamStream(_Traced, grpc.aio.StreamStreamMultiCallable[Any, Any]):
    def __call__(
        self,
        request_iterator: AsyncIterator[Any] | Iterator[Any] | None = None,
        timeout: float | None = None,
        metadata: Metadata = None,
        credentials: grpc.CallCredentials | None = None,
        wait_for_ready: bool | None = None,
        compression: grpc.Compression | None = None,
    ) -> grpc.aio.StreamStreamCall[Any, Any]:
        return self._call(  # type: ignore[no-any-return]
            request_iterator,
            metadata,
            timeout=timeout,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
        )


class TracedChannel(grpc.aio.Channel):
    """A grpc.aio channel whose every call has a CLIENT span and sends its `traceparent`.

    The span is a child of the current span (health and reflection calls are not
    traced). Everything else is the wrapped channel's.

    Args:
        channel: The channel to wrap (closed with this one).
        tracer: The calling service's tracer.
    """

    def __init__(self, channel: grpc.aio.Channel, tracer: trace.Tracer) -> None:
        self._channel = channel
        self._tracing = _Tracing(tracer)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        return _UnaryUnary(
            self._channel.unary_unary(method, *args, **kwargs), self._tracing, method
        )

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        inner = self._channel.unary_stream(method, *args, **kwargs)
        return _UnaryStream(inner, self._tracing, method)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        inner = self._channel.stream_unary(method, *args, **kwargs)
        return _StreamUnary(inner, self._tracing, method)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:  # noqa: D102
        inner = self._channel.stream_stream(method, *args, **kwargs)
        return _StreamStream(inner, self._tracing, method)

    async def __aenter__(self) -> TracedChannel:
        await self._channel.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._channel.__aexit__(*exc_info)

    async def close(self, grace: float | None = None) -> None:  # noqa: D102
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:  # noqa: D102
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(  # noqa: D102
        self, last_observed_state: grpc.ChannelConnectivity
    ) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:  # noqa: D102
        await self._channel.channel_ready()


def _fail(span: trace.Span | None) -> None:
    if span is not None:
        span.set_status(Status(StatusCode.ERROR, "the call could not start"))
        span.end()


async def _end(span: trace.Span, call: Any) -> None:
    try:
        code: grpc.StatusCode = await call.code()
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()
