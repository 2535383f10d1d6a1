"""One trace across a gRPC hop, trace ids in log lines, access logs and metrics that move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh_common.grpc_server import add_health_and_reflection, check_health, set_serving
from mesh_common.logging import logger
from mesh_common.telemetry import Telemetry, create_telemetry


@pytest.fixture
async def traced_server() -> AsyncIterator[tuple[str, Telemetry, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    telemetry = create_telemetry("server-svc", exporter)
    server = grpc.aio.server(interceptors=telemetry.grpc_server_interceptors())
    health = add_health_and_reflection(server, [])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await set_serving(health, [], True)
    yield f"127.0.0.1:{port}", telemetry, exporter
    await server.stop(None)


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
        async with grpc.aio.insecure_channel(
            target, interceptors=client.grpc_client_interceptors()
        ) as channel:
            with client.tracer().start_as_current_span("caller") as caller:
                status = await check_health(channel)
                trace_id = format(caller.get_span_context().trace_id, "032x")
    finally:
        logger.remove(sink)

    assert status == health_pb2.HealthCheckResponse.SERVING
    server_side = server_spans.get_finished_spans()
    assert server_side, "the server recorded no span"
    assert {format(s.context.trace_id, "032x") for s in server_side} == {trace_id}
    assert server_side[0].resource.attributes["service.name"] == "server-svc"
    assert client_spans.get_finished_spans()[0].resource.attributes["service.name"] == (
        "client-svc"
    )

    access = [line for line in lines if line.get("kind") == "access"]
    assert access and access[0]["method"] == "/grpc.health.v1.Health/Check"
    assert access[0]["code"] == "OK"
    assert access[0]["trace_id"] == trace_id

    count = server_telemetry.registry.get_sample_value(
        "mesh_grpc_server_requests_total",
        {"method": "/grpc.health.v1.Health/Check", "code": "OK"},
    )
    assert count == 1.0
