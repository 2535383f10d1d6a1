"""gpu_proxy between real callers and real nodes: forwarding, pooling, balancing, limits."""

from __future__ import annotations

import asyncio

import grpc
import psutil
import pytest
from grpc_health.v1 import health_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from mesh_common.errors import view_rpc_error
from mesh_common.grpc_server import check_health
from mesh_common.lanes import LANE_KEY, LIVE
from tests.support.gpu import (
    WAIT,
    Gate,
    Pki,
    conversation,
    eventually,
    node_settings,
    pcm16,
    proxy_settings,
    recognize,
    segments,
    silence,
    stubs,
)

SUMMARY_REQUEST = gpu_pb2.SummarizeRequest(
    lines=[gpu_pb2.TranscriptLine(speaker="SPEAKER_1", text="Carol will draft the plan.")]
)


async def test_forwards_the_three_services_unchanged(pki: Pki) -> None:
    async with (
        run_gpu_node(node_settings(pki)) as node,
        run_gpu_proxy(proxy_settings(pki, [node.address])) as proxy,
    ):
        direct_channel, direct = stubs(pki, node.address)
        channel, gpu = stubs(pki, proxy.address)
        async with direct_channel, channel:
            audio = conversation()
            via_proxy = await recognize(gpu, audio, interim_results=True)
            assert via_proxy == await recognize(direct, audio, interim_results=True)
            assert any(not r.segment.is_final for r in via_proxy)
            batched = await recognize(gpu, audio, interim_results=True, segment_batches=True)
            assert batched == await recognize(
                direct, audio, interim_results=True, segment_batches=True
            )
            assert all(r.segments for r in batched)
            assert segments(batched) == segments(via_proxy)

            requests = [
                gpu_pb2.DiarizeRequest(config=gpu_pb2.DiarizationConfig()),
                gpu_pb2.DiarizeRequest(audio=pcm16(audio)),
            ]
            diarized = await gpu.diarization.Diarize(iter(requests), timeout=WAIT)
            assert diarized.speaker_count == 2

            summary = await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
            assert [a.owner for a in summary.action_items] == ["Carol"]

            # A node's own error reaches the caller as the node said it, details included.
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await recognize(gpu, silence(0.1), sample_rate_hertz=8000)
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert view_rpc_error(bad.value).details[0]["reason"] == "UNSUPPORTED_AUDIO"

            assert await check_health(channel) == health_pb2.HealthCheckResponse.SERVING
        # The proxy's own port is mTLS too.
        async with grpc.aio.insecure_channel(proxy.address) as plaintext:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await check_health(plaintext)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_refuses_a_node_whose_certificate_is_not_from_its_ca(pki: Pki) -> None:
    async with (
        run_gpu_node(node_settings(pki, identity=pki.rogue_node)) as node,
        run_gpu_proxy(proxy_settings(pki, [node.address], gpu_proxy_max_attempts=1)) as proxy,
    ):
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert await check_health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert node.admission.started.total() == 0


def established_to(port: int) -> int:
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


async def test_the_pool_opens_separate_connections(pki: Pki) -> None:
    async with (
        run_gpu_node(node_settings(pki)) as node,
        run_gpu_proxy(proxy_settings(pki, [node.address], gpu_proxy_channels_per_node=3)) as proxy,
    ):
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            for _ in range(6):
                await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
        assert node.admission.started["Summarize"] == 6
        assert established_to(node.port) == 3


async def test_load_balancing_prefers_the_idle_node(pki: Pki) -> None:
    async with (
        run_gpu_node(node_settings(pki)) as first,
        run_gpu_node(node_settings(pki)) as second,
        run_gpu_proxy(proxy_settings(pki, [first.address, second.address])) as proxy,
    ):
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            gate = Gate[gpu_pb2.RecognizeRequest]()
            stream = gpu.recognition.Recognize(aiter(gate), timeout=WAIT)
            gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
            nodes = (first, second)
            await eventually(
                lambda: sum(n.admission.active["Recognize"] for n in nodes) == 1, "stream placed"
            )
            busy, idle = sorted(nodes, key=lambda n: -n.admission.active["Recognize"])
            for _ in range(4):
                await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
            assert idle.admission.started["Summarize"] == 4
            assert busy.admission.started["Summarize"] == 0
            gate.end()
            assert [r async for r in stream] == []


async def test_beyond_the_cap_and_the_queue_calls_fail_fast_with_a_retry_hint(pki: Pki) -> None:
    async with run_gpu_node(node_settings(pki)) as node:
        settings = proxy_settings(
            pki,
            [node.address],
            gpu_proxy_max_streams_per_node=1,
            gpu_proxy_queue_length=1,
            gpu_proxy_retry_after_s=3.0,
        )
        async with run_gpu_proxy(settings) as proxy:
            channel, gpu = stubs(pki, proxy.address)
            async with channel:
                gate = Gate[gpu_pb2.RecognizeRequest]()
                holding = gpu.recognition.Recognize(aiter(gate), timeout=WAIT)
                gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
                await eventually(lambda: node.admission.active["Recognize"] == 1, "cap reached")
                queued = asyncio.ensure_future(
                    gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                )
                await eventually(lambda: proxy.balancer.waiting == 1, "second call queued")
                with pytest.raises(grpc.aio.AioRpcError) as full:
                    await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                view = view_rpc_error(full.value)
                assert view.retry_after == pytest.approx(3.0)
                assert view.details[0]["reason"] == "OVERLOADED"
                assert not queued.done()
                # Live recognition has a lane of its own: it neither waits nor is refused.
                live_gate = Gate[gpu_pb2.RecognizeRequest]()
                live = gpu.recognition.Recognize(
                    aiter(live_gate), timeout=WAIT, metadata=((LANE_KEY, LIVE),)
                )
                live_gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
                live_gate.end()
                assert [r async for r in live] == []
                assert node.admission.started["Recognize"] == 2
                assert not queued.done()

                gate.end()
                assert [r async for r in holding] == []
                assert [a.owner for a in (await queued).action_items] == ["Carol"]
                assert node.admission.started["Summarize"] == 1


async def test_a_call_that_waits_too_long_in_the_queue_is_refused(pki: Pki) -> None:
    async with run_gpu_node(node_settings(pki)) as node:
        settings = proxy_settings(
            pki, [node.address], gpu_proxy_max_streams_per_node=1, gpu_proxy_queue_timeout_s=0.2
        )
        async with run_gpu_proxy(settings) as proxy:
            channel, gpu = stubs(pki, proxy.address)
            async with channel:
                gate = Gate[gpu_pb2.RecognizeRequest]()
                holding = gpu.recognition.Recognize(aiter(gate), timeout=WAIT)
                gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
                await eventually(lambda: node.admission.active["Recognize"] == 1, "cap reached")
                with pytest.raises(grpc.aio.AioRpcError) as waited:
                    await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                assert waited.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert "within 0.2 s" in (waited.value.details() or "")
                gate.end()
                assert [r async for r in holding] == []
