"""One trace across a gRPC hop, trace ids in log lines, access logs and metrics that move.

The whole mesh (gateway to gpu_node) is covered by `tests/test_observability.py`; this is
the shared module on its own, over a real grpc.aio server with one echo method.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh_common.grpc_server import add_health_and_reflection, check_health, set_serving
from mesh_common.logging import logger
from mesh_common.ports import free_port
from mesh_common.telemetry import (
    Telemetry,
    context_from_traceparent,
    create_telemetry,
    current_traceparent,
)

ECHO = "/test.Echo/Say"


async def _say(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    logger.info("echoing {} bytes", len(request))
    return request


@asynccontextmanager
async def echo_server(telemetry: Telemetry) -> AsyncIterator[str]:
    """A grpc.aio server with `test.Echo/Say` and health, traced by `telemetry`."""
    server = grpc.aio.server(interceptors=telemetry.grpc_server_interceptors())
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(_say)}
            )
        ]
    )
    health = await add_health_and_reflection(server, [])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await set_serving(health, [], True)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.fixture
async def traced_server() -> AsyncIterator[tuple[str, Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry("server-svc", exporter)
    async with echo_server(telemetry) as target:
        yield target, telemetry, exporter


async def test_a_call_is_one_trace_with_logs_and_metrics(
    traced_server: tuple[str, Telemetry, InMemorySpanExporter],
) -> None:
    target, server_telemetry, server_spans = traced_server
    client_spans = InMemorySpanExporter()
    client = create_telemetry("client-svc", client_spans)
    lines: list[dict[str, Any]] = []
    sink = logger.add(
        lambda m: lines.append({"message": m.record["message"], **m.record["extra"]}),
        level="INFO",
    )
    try:
        async with client.trace_channel(grpc.aio.insecure_channel(target)) as channel:
            say: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO)
            with client.tracer().start_as_current_span("caller") as caller:
                assert await say(b"hello", timeout=5) == b"hello"
                trace_id = format(caller.get_span_context().trace_id, "032x")
            # Health probes are answered and logged, but not traced (they would bury the
            # traces of real work).
            assert await check_health(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        logger.remove(sink)

    (server_span,) = server_spans.get_finished_spans()
    assert server_span.name == "/test.Echo/Say"
    assert format(server_span.context.trace_id, "032x") == trace_id
    assert server_span.resource.attributes["service.name"] == "server-svc"
    client_side = {s.name: s for s in client_spans.get_finished_spans()}
    assert client_side["test.Echo/Say"].resource.attributes["service.name"] == "client-svc"
    assert server_span.parent is not None
    assert server_span.parent.span_id == client_side["test.Echo/Say"].context.span_id

    (echoed,) = [line for line in lines if line["message"] == "echoing 5 bytes"]
    assert echoed["trace_id"] == trace_id
    access = {line["method"]: line for line in lines if line.get("kind") == "access"}
    assert access[ECHO]["code"] == "OK"
    assert access[ECHO]["trace_id"] == trace_id
    assert access["/grpc.health.v1.Health/Check"]["code"] == "OK"

    def served(method: str) -> float | None:
        return server_telemetry.registry.get_sample_value(
            "mesh_grpc_server_requests_total", {"method": method, "code": "OK"}
        )

    assert served(ECHO) == 1.0
    assert served("/grpc.health.v1.Health/Check") == 1.0


def test_a_traceparent_round_trips_and_garbage_starts_a_new_trace() -> None:
    telemetry = create_telemetry("svc", InMemorySpanExporter())
    assert current_traceparent() == ""
    with telemetry.tracer().start_as_current_span("upload") as span:
        stored = current_traceparent()
    parent = context_from_traceparent(stored)
    assert parent is not None
    with telemetry.tracer().start_as_current_span("job", parent) as job:
        assert job.get_span_context().trace_id == span.get_span_context().trace_id
    assert context_from_traceparent("") is None
    assert context_from_traceparent("not-a-traceparent") is None


async def test_a_dead_collector_costs_spans_not_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dead = free_port()  # a port nothing listens on
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    telemetry = create_telemetry("server-svc")
    try:
        async with (
            echo_server(telemetry) as target,
            telemetry.trace_channel(grpc.aio.insecure_channel(target)) as channel,
        ):
            say: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO)
            for _ in range(50):  # enough batches for the exporter to fail on
                assert await say(b"x", timeout=5) == b"x"
    finally:
        await asyncio.to_thread(telemetry.shutdown)


async def test_with_no_exporter_nothing_is_recorded_but_trace_ids_still_travel(
    monkeypatch: pytest.MonkeyPatch,
    traced_server: tuple[str, Telemetry, InMemorySpanExporter],
) -> None:
    """The default (no exporter, no sampler): no span is recorded for nothing to receive."""
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    target, _server, server_spans = traced_server
    client = create_telemetry("client-svc")
    lines: list[dict[str, Any]] = []
    sink = logger.add(lambda m: lines.append(dict(m.record["extra"])), level="INFO")
    try:
        async with client.trace_channel(grpc.aio.insecure_channel(target)) as channel:
            say: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO)
            with client.tracer().start_as_current_span("caller") as caller:
                assert not caller.is_recording()
                assert await say(b"hello", timeout=5) == b"hello"
                trace_id = format(caller.get_span_context().trace_id, "032x")
    finally:
        logger.remove(sink)
    # The server honours the caller's decision: an unsampled trace records nothing there...
    assert server_spans.get_finished_spans() == ()
    # ...yet its log lines still carry the caller's trace id.
    access = [line for line in lines if line.get("kind") == "access"]
    assert [line["trace_id"] for line in access] == [trace_id]

    # A trace sampled upstream is still followed (its next hop may export it).
    sampled = context_from_traceparent(f"00-{'ab' * 16}-{'cd' * 8}-01")
    with client.tracer().start_as_current_span("hop", sampled) as hop:
        assert hop.is_recording()


def test_a_configured_sampler_wins_over_the_no_exporter_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    with create_telemetry("svc").tracer().start_as_current_span("root") as span:
        assert span.is_recording()


async def test_the_metrics_port_serves_the_registry_and_nothing_else() -> None:
    telemetry = create_telemetry("metrics-svc")
    telemetry.grpc_requests.labels("/test.Echo/Say", "OK").inc()
    endpoint = await telemetry.serve_metrics("127.0.0.1", 0)
    base = f"http://127.0.0.1:{endpoint.port}"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/metrics") as response:
                assert response.status == 200
                assert response.content_type == "text/plain"
                body = await response.text()
            assert 'mesh_grpc_server_requests_total{code="OK",method="/test.Echo/Say"} 1.0' in body
            async with session.head(f"{base}/metrics") as response:
                assert response.status == 200
            async with session.get(f"{base}/") as response:
                assert response.status == 404
            async with session.post(f"{base}/metrics") as response:
                assert response.status == 405
    finally:
        await endpoint.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as session, session.get(f"{base}/metrics"):
            pass
