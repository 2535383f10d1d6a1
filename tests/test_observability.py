"""Observability of the whole mesh: one trace from the gateway to the GPU node, log lines
that find it, no token anywhere, and metrics that move with traffic.

Every service runs in this process with its own telemetry (its own `service.name`), all
exporting to one in-memory exporter, as they would to one collector.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gpu_node.server import RunningNode, run_gpu_node
from gpu_proxy.server import RunningProxy, run_gpu_proxy
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from mesh_common.logging import logger
from mesh_common.telemetry import create_telemetry
from tests.support.gateway import RunningGateway, gateway_settings, run_gateway, wait_until
from tests.support.gpu import as_wav, dialogue, make_pki, node_settings, proxy_settings
from tests.support.meeting import TEST_JWT_SECRET, make_token, pipeline_settings

WITHIN = 60.0
SERVICES = {"gateway", "meeting-service", "gpu-proxy", "gpu-node"}


@dataclass
class Mesh:
    gateway: RunningGateway
    meeting: RunningMeetingService
    proxy: RunningProxy
    node: RunningNode
    spans: InMemorySpanExporter
    lines: list[dict[str, Any]]


@pytest_asyncio.fixture(scope="module")
async def mesh(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    spans = InMemorySpanExporter()
    lines: list[dict[str, Any]] = []
    # Every line as its sink would render it: the message and all bound fields.
    sink = logger.add(
        lambda m: lines.append(
            {"message": m.record["message"], "level": m.record["level"].name, **m.record["extra"]}
        ),
        level="DEBUG",
    )
    pki = make_pki(tmp_path_factory.mktemp("pki"))
    try:
        async with AsyncExitStack() as stack:
            node = await stack.enter_async_context(
                run_gpu_node(node_settings(pki), telemetry=create_telemetry("gpu-node", spans))
            )
            proxy = await stack.enter_async_context(
                run_gpu_proxy(
                    proxy_settings(pki, [node.address]),
                    telemetry=create_telemetry("gpu-proxy", spans),
                )
            )
            settings = pipeline_settings(
                database_url,
                tmp_path_factory.mktemp("meeting-service"),
                pki,
                proxy.address,
                health_interval_s=0.2,
            )
            meeting = await stack.enter_async_context(
                run_meeting_service(
                    settings,
                    database=Database(database_url),
                    telemetry=create_telemetry("meeting-service", spans),
                )
            )
            gateway = await stack.enter_async_context(
                run_gateway(
                    # Frequent heartbeats: a client that left is noticed at the next one.
                    gateway_settings(meeting.address, TEST_JWT_SECRET, sse_heartbeat_s=0.2),
                    create_telemetry("gateway", spans),
                )
            )
            yield Mesh(gateway, meeting, proxy, node, spans, lines)
    finally:
        logger.remove(sink)


async def _eventually[T](probe: Callable[[], T | None], what: str) -> T:
    """Asks `probe` until it returns something (state seen only by asking)."""
    try:
        async with asyncio.timeout(WITHIN):
            while (found := probe()) is None:  # noqa: ASYNC110 - nothing to wait on
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {WITHIN} s: {what}") from None
    return found


def _service(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def _trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


async def _scrape(url: str) -> dict[str, float]:
    """Reads a Prometheus text page into {"name{labels}": value}."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def _metrics_urls(mesh: Mesh) -> dict[str, str]:
    return {
        "gateway": f"{mesh.gateway.url}/metrics",
        "meeting-service": f"http://127.0.0.1:{mesh.meeting.metrics_port}/metrics",
        "gpu-proxy": f"http://127.0.0.1:{mesh.proxy.metrics.port}/metrics",
        "gpu-node": f"http://127.0.0.1:{mesh.node.metrics.port}/metrics",
    }


async def _completed(http: aiohttp.ClientSession, meeting_id: str) -> bool:
    async with http.get(f"/v1/meetings/{meeting_id}") as response:
        body = await response.json()
    status: str = body["meeting"]["status"]
    assert status != "MEETING_STATUS_FAILED", body
    return status == "MEETING_STATUS_COMPLETED"


async def _upload_and_process(mesh: Mesh, token: str) -> str:
    """Creates a meeting, uploads a recording, waits until it is COMPLETED; returns its id."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(mesh.gateway.url, headers=headers) as http:
        async with http.post("/v1/meetings", json={"title": "traced"}) as r:
            assert r.status == 201
            meeting_id: str = (await r.json())["meeting"]["id"]
        async with http.put(
            f"/v1/meetings/{meeting_id}/audio",
            data=as_wav(dialogue(2)),
            headers={"Content-Type": "audio/wav"},
        ) as r:
            assert r.status == 200, await r.text()
        await wait_until(lambda: _completed(http, meeting_id), WITHIN)
    return meeting_id


def _strings(span: ReadableSpan) -> list[str]:
    """Everything a span says: its name, attribute values and event attributes."""
    found = [span.name, *(str(v) for v in (span.attributes or {}).values())]
    for event in span.events:
        found += [event.name, *(str(v) for v in (event.attributes or {}).values())]
    return found


async def test_an_upload_is_one_trace_from_the_gateway_to_the_gpu_node(mesh: Mesh) -> None:
    mesh.spans.clear()
    meeting_id = await _upload_and_process(mesh, make_token("tracer"))

    def upload_span() -> ReadableSpan | None:
        return next(
            (
                s
                for s in mesh.spans.get_finished_spans()
                if _service(s) == "gateway" and s.kind.name == "SERVER" and s.name.startswith("PUT")
            ),
            None,
        )

    upload = await _eventually(upload_span, "the gateway traced the upload")
    trace_id = _trace(upload)
    stages = {"queue wait", "process meeting", "speech recognition", "speaker identification"}
    stages.add("summarization")

    def whole_trace() -> Sequence[ReadableSpan] | None:
        in_trace = [s for s in mesh.spans.get_finished_spans() if _trace(s) == trace_id]
        names = {s.name for s in in_trace}
        return in_trace if stages <= names else None

    spans = await _eventually(whole_trace, "the pipeline's spans")
    assert {_service(s) for s in spans} == SERVICES
    by_service: dict[str, set[str]] = {}
    for span in spans:
        by_service.setdefault(_service(span), set()).add(span.name)
    assert "/meeting.v1.MeetingService/UploadAudio" in by_service["meeting-service"]
    # The database hop: statements of the upload and of the job, never their parameters.
    sql = [s for s in spans if (s.attributes or {}).get("db.system") == "postgresql"]
    assert sql and all("db.statement" in (s.attributes or {}) for s in sql)
    for method in ("Recognize", "Diarize", "Summarize"):
        assert any(name.endswith(f"/{method}") for name in by_service["gpu-proxy"]), method
        assert any(name.endswith(f"/{method}") for name in by_service["gpu-node"]), method
    # The stages hang under the job, the GPU calls under their stage.
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    (job,) = [s for s in spans if s.name == "process meeting"]
    assert (job.attributes or {})["meeting.id"] == meeting_id
    recognition = next(s for s in spans if s.name == "speech recognition")
    assert recognition.parent is not None and by_id[recognition.parent.span_id] is job
    node_recognize = next(
        s for s in spans if _service(s) == "gpu-node" and s.name.endswith("/Recognize")
    )
    ancestors = []
    current: ReadableSpan | None = node_recognize
    while current is not None and current.parent is not None:
        current = by_id.get(current.parent.span_id)
        ancestors.append(current)
    assert recognition in ancestors

    # Log lines written while serving the upload, and by the job, carry the trace id.
    access = [
        line
        for line in mesh.lines
        if line.get("kind") == "access" and line.get("route") == "/v1/meetings/{meeting_id}/audio"
    ]
    assert access and access[-1]["trace_id"] == trace_id
    job_lines = [
        line
        for line in mesh.lines
        if line.get("meeting_id") == meeting_id and line["message"] == "job completed"
    ]
    assert job_lines and job_lines[-1]["trace_id"] == trace_id


async def test_no_token_reaches_a_log_line_or_a_span(mesh: Mesh) -> None:
    mesh.spans.clear()
    token = make_token("secretive")
    meeting_id = await _upload_and_process(mesh, token)
    # Browsers put the token in the URL for event streams.
    async with (
        aiohttp.ClientSession(mesh.gateway.url) as http,
        http.get(f"/v1/meetings/{meeting_id}/events?access_token={token}") as stream,
    ):
        assert stream.status == 200
        async with asyncio.timeout(WITHIN):
            async for line in stream.content:
                if b"MEETING_STATUS_COMPLETED" in line:
                    break
    # A rejected token is not logged either.
    async with (
        aiohttp.ClientSession(mesh.gateway.url) as http,
        http.get("/v1/meetings", headers={"Authorization": f"Bearer {token}x"}) as refused,
    ):
        assert refused.status == 401

    def sse_span() -> ReadableSpan | None:
        return next(
            (s for s in mesh.spans.get_finished_spans() if s.name.startswith("GET /v1/meetings/")),
            None,
        )

    await _eventually(sse_span, "the event stream was traced")
    signature = token.rsplit(".", 1)[1]
    for span in mesh.spans.get_finished_spans():
        for text in _strings(span):
            assert signature not in text, (span.name, text)
    rendered = json.dumps(mesh.lines, default=str)
    assert signature not in rendered
    assert "access_token" not in rendered


async def test_metrics_are_served_by_every_service_and_move_with_traffic(mesh: Mesh) -> None:
    urls = _metrics_urls(mesh)

    async def sse_open() -> float:
        return (await _scrape(urls["gateway"]))["mesh_sse_streams_open"]

    async def no_sse_open() -> bool:
        return await sse_open() == 0

    await wait_until(no_sse_open, WITHIN)  # streams of earlier tests end at a heartbeat
    before = {name: await _scrape(url) for name, url in urls.items()}
    token = make_token("counted")
    meeting_id = await _upload_and_process(mesh, token)
    async with (
        aiohttp.ClientSession(mesh.gateway.url) as http,
        http.get(f"/v1/meetings/{meeting_id}/events?access_token={token}") as stream,
    ):
        await stream.content.readline()  # the stream is open
        assert await sse_open() == 1
    await wait_until(no_sse_open, WITHIN)

    def grew(service: str, key: str) -> float:
        return after[service].get(key, 0.0) - before[service].get(key, 0.0)

    # The job gauges are refreshed every health interval; the node series at scrape time.
    after: dict[str, dict[str, float]] = {}

    async def job_done() -> bool:
        after.update({name: await _scrape(url) for name, url in urls.items()})
        return after["meeting-service"].get('mesh_jobs{status="RUNNING"}') == 0.0

    await wait_until(job_done, WITHIN)

    route = 'route="/v1/meetings/{meeting_id}/audio"'
    assert grew("gateway", f'mesh_http_requests_total{{method="PUT",{route},status="200"}}') == 1
    assert grew("gateway", "mesh_gateway_upload_bytes_total") == len(as_wav(dialogue(2)))
    assert any(
        k.startswith("mesh_http_request_duration_seconds_bucket") and route in k
        for k in after["gateway"]
    )
    upload_rpc = 'method="/meeting.v1.MeetingService/UploadAudio"'
    assert (
        grew("meeting-service", f'mesh_grpc_server_requests_total{{code="OK",{upload_rpc}}}') == 1
    )
    assert grew("meeting-service", "mesh_upload_bytes_total") == len(as_wav(dialogue(2)))
    assert {'mesh_jobs{status="QUEUED"}', 'mesh_jobs{status="FAILED"}'} <= after[
        "meeting-service"
    ].keys()
    assert "mesh_oldest_queued_job_age_seconds" in after["meeting-service"]
    node = f'node="{mesh.node.address}"'
    assert after["gpu-proxy"][f'mesh_gpu_node_breaker_state{{{node},state="closed"}}'] == 1.0
    assert after["gpu-proxy"][f"mesh_gpu_node_pool_size{{{node}}}"] >= 1
    assert after["gpu-proxy"][f"mesh_gpu_node_streams_in_flight{{{node}}}"] == 0
    assert "mesh_gpu_proxy_queue_length" in after["gpu-proxy"]
    recognize = 'method="/gpu.v1.SpeechRecognitionService/Recognize"'
    assert grew("gpu-proxy", f'mesh_grpc_server_requests_total{{code="OK",{recognize}}}') == 1
    assert grew("gpu-node", 'mesh_gpu_node_calls_started_total{method="Recognize"}') == 1
    assert grew("gpu-node", 'mesh_gpu_node_audio_bytes_total{method="Recognize"}') > 0
    assert after["gpu-node"]['mesh_gpu_node_call_limit{lane="batch"}'] >= 1
    assert after["gpu-node"]['mesh_gpu_node_call_limit{lane="live"}'] >= 1
