"""The plaintext health-only port of gpu_node and gpu_proxy (what the kubelet's `grpc:` probe
asks): it answers `grpc.health.v1` without a client certificate, reports what the mTLS port
reports (NOT_SERVING while draining, while no node is usable), and serves nothing else."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_client.channel import GpuStubs
from gpu_node.server import run_gpu_node
from gpu_proxy.server import run_gpu_proxy
from mesh_common.grpc_server import LIVENESS_SERVICE, check_health
from tests.support.gpu import (
    WAIT,
    Gate,
    Pki,
    eventually,
    node_settings,
    proxy_settings,
    stubs,
    wait_health,
)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def plaintext(port: int) -> grpc.aio.Channel:
    """A channel without TLS, as the kubelet's probe dials."""
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")


async def test_the_node_health_port_answers_health_in_plaintext_and_serves_nothing_else(
    pki: Pki,
) -> None:
    async with run_gpu_node(node_settings(pki, gpu_node_health_port=0)) as node:
        assert node.health_port is not None and node.health_port.port != node.port
        async with plaintext(node.health_port.port) as channel:
            assert await check_health(channel) == SERVING
            assert await check_health(channel, LIVENESS_SERVICE) == SERVING
            assert await check_health(channel, "gpu.v1.SpeechRecognitionService") == SERVING
            # No business service and no reflection: nothing to learn or call here.
            gpu = GpuStubs.of(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gpu.summarization.Summarize(gpu_pb2.SummarizeRequest(), timeout=WAIT)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            reflect = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.aio.AioRpcError) as hidden:
                await reflect(iter([request]), timeout=WAIT).read()
            assert hidden.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The mTLS port still refuses a plaintext caller.
        async with plaintext(node.port) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as no_tls:
                await check_health(channel, deadline=2.0)
            assert no_tls.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_without_the_setting_there_is_no_health_port(pki: Pki) -> None:
    async with run_gpu_node(node_settings(pki)) as node:
        assert node.health_port is None


async def test_a_draining_node_reports_not_serving_there_while_its_calls_finish(
    pki: Pki,
) -> None:
    async with run_gpu_node(node_settings(pki, gpu_node_health_port=0)) as node:
        assert node.health_port is not None
        channel, gpu = stubs(pki, node.address)
        gate = Gate[gpu_pb2.RecognizeRequest]()
        async with channel, plaintext(node.health_port.port) as probe:
            call = gpu.recognition.Recognize(aiter(gate), timeout=WAIT)
            gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
            await eventually(lambda: node.admission.active.total() == 1, "the call admitted")
            stopping = asyncio.create_task(node.stop(grace=WAIT))
            await wait_health(probe, NOT_SERVING)
            # Still draining: the call in flight is not cut, and the process is alive.
            assert not stopping.done()
            assert await check_health(probe, LIVENESS_SERVICE) == SERVING
            gate.end()
            assert [r async for r in call] == []
            await stopping
            with pytest.raises(grpc.aio.AioRpcError) as gone:
                await check_health(probe, deadline=2.0)
            assert gone.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_proxy_health_port_follows_whether_a_node_is_usable(
    pki: Pki,
) -> None:
    async with run_gpu_node(node_settings(pki)) as node:
        settings = proxy_settings(pki, [node.address], gpu_proxy_health_port=0)
        async with run_gpu_proxy(settings) as proxy:
            assert proxy.health_port is not None
            async with plaintext(proxy.health_port.port) as probe:
                await wait_health(probe, SERVING)
                await node.stop(grace=1.0)
                await wait_health(probe, NOT_SERVING)
                # Not ready, yet alive: a restart would not bring the node back.
                assert await check_health(probe, LIVENESS_SERVICE) == SERVING
                gpu = GpuStubs.of(probe)
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await gpu.summarization.Summarize(gpu_pb2.SummarizeRequest(), timeout=WAIT)
                assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_draining_proxy_reports_not_serving_there(pki: Pki) -> None:
    async with run_gpu_node(node_settings(pki)) as node:
        settings = proxy_settings(pki, [node.address], gpu_proxy_health_port=0)
        async with run_gpu_proxy(settings) as proxy:
            assert proxy.health_port is not None
            channel, gpu = stubs(pki, proxy.address)
            gate = Gate[gpu_pb2.RecognizeRequest]()
            async with channel, plaintext(proxy.health_port.port) as probe:
                await wait_health(probe, SERVING)
                call = gpu.recognition.Recognize(aiter(gate), timeout=WAIT)
                gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
                await eventually(lambda: node.admission.active.total() == 1, "the call placed")
                stopping = asyncio.create_task(proxy.stop(grace=WAIT))
                await wait_health(probe, NOT_SERVING)
                assert not stopping.done()
                gate.end()
                assert [r async for r in call] == []
                await stopping
