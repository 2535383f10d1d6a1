"""Traces, metrics and access logs, the same way in every service.

Each service builds one `Telemetry` at start (`create_telemetry("gateway")`) and hands its
pieces to the servers and channels it creates: gRPC server and client interceptors, a
Prometheus registry (served by `serve_metrics`), and `server_span` for an HTTP middleware
(the gateway's is in gateway/telemetry.py). Nothing is patched globally, so several services
can run in one process (the test suite does) and still report under their own
`service.name`.

Configuration is the standard `OTEL_*` environment: `OTEL_TRACES_EXPORTER=none|console|otlp`
(none by default), `OTEL_EXPORTER_OTLP_ENDPOINT` and friends for a collector,
`OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` for sampling. Spans are exported from a
background thread in batches, so a slow or dead collector never delays a request.

A service with no exporter and no sampler configured starts no sampled traces
(`parentbased_always_off`): recording spans that go nowhere cost the gateway about a fifth
of its CPU per request (`uv run python -m bench --only gateway_overhead`). Its spans still
carry trace ids, so log lines keep their `trace_id` and the next hop its `traceparent`, and
a trace sampled upstream is still followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import CollectorRegistry, Counter, Histogram

from mesh_common.grpc_server import current_principal, wrap_rpc_handler
from mesh_common.grpc_tracing import UNTRACED_PREFIXES, TracedChannel
from mesh_common.logging import logger
from mesh_common.metrics_endpoint import MetricsEndpoint, serve_metrics

# Request-duration histogram buckets, in seconds, of every service's gRPC and HTTP series.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_TRACE_CONTEXT = TraceContextTextMapPropagator()
# The sampler of a service with nowhere to send spans: only traces sampled upstream record.
_NO_UNSAMPLED_ROOTS = ParentBased(ALWAYS_OFF)


def current_traceparent() -> str:
    """Returns the W3C `traceparent` of the current span, "" outside any span.

    What a background job stores to continue, later and elsewhere, the trace of the
    request that queued it.
    """
    carrier: dict[str, str] = {}
    _TRACE_CONTEXT.inject(carrier)
    return carrier.get("traceparent", "")


def context_from_traceparent(traceparent: str) -> otel_context.Context | None:
    """Returns a context whose parent is the span a `traceparent` names.

    Args:
        traceparent: A W3C `traceparent` value, or "".

    Returns:
        The context to start child spans in; None when the value is empty or malformed
        (the caller then starts a new trace).
    """
    if not traceparent:
        return None
    extracted = _TRACE_CONTEXT.extract({"traceparent": traceparent})
    if not trace.get_current_span(extracted).get_span_context().is_valid:
        return None
    return extracted


@contextlib.contextmanager
def server_span(
    tracer: trace.Tracer, name: str, carrier: Mapping[str, str]
) -> Iterator[trace.Span]:
    """A SERVER span continuing the caller's `traceparent`, current while the call runs.

    Args:
        tracer: The tracer of the serving side.
        name: The span name (the gRPC method, or HTTP method and route template).
        carrier: The request's headers or metadata, read for `traceparent`.

    Yields:
        The span; it ends when the block does.
    """
    parent = _TRACE_CONTEXT.extract(carrier)
    span = _unsampled_span(tracer, parent) or tracer.start_span(
        name, context=parent, kind=SpanKind.SERVER
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    attached_in = asyncio.current_task()
    try:
        yield span
    finally:
        # A streaming handler that grpc stops iterating without closing it is closed
        # later by the event loop's async-generator finalizer, in a task of its own: the
        # token is not of that task's context, and detaching it there fails (with an
        # ERROR and a traceback). The context it was attached in is gone with its task.
        if asyncio.current_task() is attached_in:
            otel_context.detach(token)
        span.end()


def _unsampled_span(tracer: trace.Tracer, parent: otel_context.Context) -> trace.Span | None:
    """The span the SDK would make under `_NO_UNSAMPLED_ROOTS` for an unsampled call, or None.

    Under that sampler a call with no sampled parent is never recorded, so its span is only
    a context: the parent's trace (or a new one) and a new span id. Made here, it skips the
    SDK's sampler, attributes and span object, most of what a span costs when nothing is
    recorded. Under any other sampler the SDK decides (None).
    """
    if getattr(tracer, "sampler", None) is not _NO_UNSAMPLED_ROOTS:
        return None
    ids = getattr(tracer, "id_generator", None)
    context = trace.get_current_span(parent).get_span_context()
    if context.trace_flags.sampled or not isinstance(ids, IdGenerator):
        return None
    valid = context.is_valid
    return trace.NonRecordingSpan(
        SpanContext(
            trace_id=context.trace_id if valid else ids.generate_trace_id(),
            span_id=ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.DEFAULT),
            trace_state=context.trace_state if valid else None,
        )
    )


def log_http_access(method: str, route: str, status: int, seconds: float, user: str) -> None:
    """Writes the access line of one HTTP request (the gateway's; the bench's FastAPI too)."""
    logger.info(
        "{} {} {}",
        method,
        route,
        status,
        kind="access",
        method=method,
        route=route,
        status=status,
        duration_ms=round(seconds * 1000, 2),
        user=user,
    )


def _exporter_from_env() -> SpanExporter | None:
    choice = os.environ.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if choice in ("", "none"):
        return None
    if choice == "console":
        return ConsoleSpanExporter()
    if choice == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    logger.warning("unknown OTEL_TRACES_EXPORTER {!r}; tracing export disabled", choice)
    return None


@dataclass
class Telemetry:
    """One service's tracer provider, metrics registry and instrumentation.

    Attributes:
        service: The `service.name` on every span and log line.
        tracer_provider: The provider all of this service's spans come from.
        registry: This service's Prometheus registry (`/metrics` serves it).
    """

    service: str
    tracer_provider: TracerProvider
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.grpc_requests = Counter(
            "mesh_grpc_server_requests",
            "gRPC calls served, by method and status code.",
            ["method", "code"],
            registry=self.registry,
        )
        self.grpc_latency = Histogram(
            "mesh_grpc_server_request_duration_seconds",
            "Time to serve a gRPC call (streams: until the stream ends).",
            ["method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def tracer(self, name: str | None = None) -> trace.Tracer:
        """Returns a tracer of this service."""
        return self.tracer_provider.get_tracer(name or self.service)

    def grpc_server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """Interceptors for `grpc.aio.server`: a SERVER span, access log and metrics.

        Put them before any auth interceptor so rejected calls are traced and logged too.
        """
        return [_ServerTelemetry(self)]

    def trace_channel(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        """Wraps a `grpc.aio` channel: a client span and `traceparent` per call."""
        return TracedChannel(channel, self.tracer("grpc-client"))

    async def serve_metrics(self, host: str, port: int) -> MetricsEndpoint:
        """Serves `/metrics` on a small HTTP port of its own (for the gRPC services).

        Args:
            host: Interface to bind.
            port: Port to bind; 0 picks a free one.

        Returns:
            The running endpoint; `close()` stops it.

        Raises:
            OSError: The port cannot be bound.
        """
        return await serve_metrics(self.registry, host, port)

    def shutdown(self) -> None:
        """Flushes and stops span export (bounded by the exporter's own timeout)."""
        self.tracer_provider.shutdown()


def create_telemetry(service: str, exporter: SpanExporter | None = None) -> Telemetry:
    """Builds a service's telemetry from the `OTEL_*` environment.

    Args:
        service: The service name (`service.name`); it wins over `OTEL_SERVICE_NAME`, which
            would otherwise give every process of the dev mesh the same name.
        exporter: An exporter to use instead of the environment's (tests pass an in-memory
            one); it is attached with a synchronous processor so tests see spans at once.

    Returns:
        The telemetry.
    """
    resource = Resource.create().merge(Resource({SERVICE_NAME: service}))
    configured = _exporter_from_env() if exporter is None else None
    sampler = None  # the SDK's: OTEL_TRACES_SAMPLER, else parentbased_always_on
    if exporter is None and configured is None and not os.environ.get("OTEL_TRACES_SAMPLER"):
        sampler = _NO_UNSAMPLED_ROOTS  # nothing would receive the spans (module doc)
    provider = TracerProvider(resource=resource, sampler=sampler)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif configured is not None:
        provider.add_span_processor(BatchSpanProcessor(configured))
    return Telemetry(service, provider)


class _ServerTelemetry(grpc.aio.ServerInterceptor):
    """A SERVER span, one access log line and the request metrics per gRPC call.

    Our own rather than OpenTelemetry's aio server interceptor, which wraps every call in
    a layer of its own and collects its attributes even for a span nobody records: the
    span here continues the caller's `traceparent`, covers the whole call (streams until
    their last message), is the current span of the handler (its SQL spans and log lines
    hang beneath it), and gets its attributes only when recorded. Health and reflection
    calls are logged and counted but not traced: probes every few seconds would bury the
    traces of real work.
    """

    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._tracer = telemetry.tracer("grpc-server")

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """Wraps the handler so its outcome is traced, measured and logged."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        traced = not method.startswith(UNTRACED_PREFIXES)
        metadata = handler_call_details.invocation_metadata or ()
        carrier = {k: v for k, v in metadata if isinstance(v, str)}

        @asynccontextmanager
        async def measured(context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
            started = time.perf_counter()
            # Read now: asking a call that was cancelled under us for its peer crashes
            # grpcio (a segfault in 1.85), and streams end that way when clients leave.
            peer = context.peer()
            spanned = (
                server_span(self._tracer, method, carrier)
                if traced
                else contextlib.nullcontext(trace.INVALID_SPAN)
            )
            with spanned as span:
                try:
                    yield
                finally:
                    code = self._record(method, context, peer, time.perf_counter() - started)
                    if span.is_recording():
                        service, _, name = method.lstrip("/").partition("/")
                        span.set_attributes(
                            {
                                "rpc.system": "grpc",
                                "rpc.service": service,
                                "rpc.method": name,
                                "rpc.grpc.status_code": code.value[0],
                            }
                        )
                        if code is not grpc.StatusCode.OK:
                            span.set_status(trace.Status(trace.StatusCode.ERROR, code.name))

        return wrap_rpc_handler(handler, measured)

    def _record(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], peer: str, elapsed: float
    ) -> grpc.StatusCode:
        """Counts and logs a finished call; returns its status code."""
        raw = context.code()
        code = grpc.StatusCode.OK
        if isinstance(raw, grpc.StatusCode):
            code = raw
        elif isinstance(raw, int):  # grpc.aio reports a raw integer for some aborts
            code = next((c for c in grpc.StatusCode if c.value[0] == raw), grpc.StatusCode.UNKNOWN)
        code_name = code.name
        try:
            principal = current_principal()
            user, api_key_id = principal.user, principal.api_key_id
        except LookupError:
            user, api_key_id = "", ""
        self._telemetry.grpc_requests.labels(method, code_name).inc()
        self._telemetry.grpc_latency.labels(method).observe(elapsed)
        logger.bind(
            kind="access",
            method=method,
            code=code_name,
            duration_ms=round(elapsed * 1000, 2),
            user=user,
            api_key_id=api_key_id,
            peer=peer,
        ).info("{} {}", method, code_name)
        return code
