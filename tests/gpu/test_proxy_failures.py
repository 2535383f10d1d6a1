"""gpu_proxy when nodes fail: retries, breakers, health, certificate reload."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.server import RunningNode, run_gpu_node
from gpu_proxy.breaker import BreakerState
from gpu_proxy.node import Node
from gpu_proxy.server import run_gpu_proxy
from mesh_common.errors import view_rpc_error
from mesh_common.grpc_server import check_health
from mesh_common.streams import start_gated
from tests.support.gpu import (
    WAIT,
    Gate,
    Pki,
    conversation,
    eventually,
    finals,
    node_settings,
    pcm16,
    proxy_settings,
    recognize,
    silence,
    stubs,
    stubs_without_retries,
    tone,
    wait_health,
)

SUMMARY_REQUEST = gpu_pb2.SummarizeRequest(
    lines=[gpu_pb2.TranscriptLine(text="Dan will fix the build.")]
)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def state(node: Node) -> BreakerState:
    return node.breaker.state


def serving_node(nodes: tuple[RunningNode, ...], method: str) -> RunningNode:
    (node,) = [n for n in nodes if n.admission.active[method]]
    return node


async def proxy_health(channel: grpc.aio.Channel) -> int:
    return await check_health(channel)


async def test_a_stream_that_received_nothing_moves_to_the_other_node(pki: Pki) -> None:
    audio = conversation()
    async with (
        run_gpu_node(node_settings(pki)) as first,
        run_gpu_node(node_settings(pki)) as second,
        run_gpu_proxy(proxy_settings(pki, [first.address, second.address])) as proxy,
    ):
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            reference = finals(await recognize(gpu, audio))
            before = {n.port: n.admission.started["Recognize"] for n in (first, second)}

            gate = Gate[gpu_pb2.RecognizeRequest]()
            call = start_gated(gpu.recognition.Recognize, aiter(gate), timeout=WAIT)
            gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
            pieces = [pcm16(audio)[i : i + 16_000] for i in range(0, len(pcm16(audio)), 16_000)]
            gate.push(gpu_pb2.RecognizeRequest(audio=pieces[0]))  # silence: no segment yet
            await eventually(
                lambda: any(n.admission.active["Recognize"] for n in (first, second)), "placed"
            )
            victim = serving_node((first, second), "Recognize")
            survivor = second if victim is first else first
            await victim.stop(grace=None)
            for piece in pieces[1:]:
                gate.push(gpu_pb2.RecognizeRequest(audio=piece))
            gate.end()

            got = finals([response async for response in call])
            assert got == reference, "every segment exactly once, as from a healthy node"
            assert survivor.admission.started["Recognize"] == before[survivor.port] + 1


async def test_a_stream_that_received_something_fails_with_unavailable(pki: Pki) -> None:
    async with (
        run_gpu_node(node_settings(pki)) as first,
        run_gpu_node(node_settings(pki)) as second,
        run_gpu_proxy(proxy_settings(pki, [first.address, second.address])) as proxy,
    ):
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            gate = Gate[gpu_pb2.RecognizeRequest]()
            call = start_gated(gpu.recognition.Recognize, aiter(gate), timeout=WAIT)
            gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
            gate.push(gpu_pb2.RecognizeRequest(audio=pcm16(tone(1.0))))
            gate.push(gpu_pb2.RecognizeRequest(audio=pcm16(silence(0.5))))
            first_response = await call.read()
            assert isinstance(first_response, gpu_pb2.RecognizeResponse)
            assert first_response.segment.is_final

            victim = serving_node((first, second), "Recognize")
            survivor = second if victim is first else first
            await victim.stop(grace=None)
            gate.push(gpu_pb2.RecognizeRequest(audio=pcm16(tone(1.0))))
            gate.end()
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                while await call.read() is not grpc.aio.EOF:
                    pass
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
            view = view_rpc_error(failed.value)
            assert view.details[0]["reason"] == "BACKEND_UNAVAILABLE"
            assert view.details[0]["metadata"]["cause"] == "node_failed"
            assert survivor.admission.started["Recognize"] == 0


@pytest.mark.parametrize(("replay_bytes", "outcome"), [(16 << 20, "replayed"), (4_000, "lost")])
async def test_a_diarization_is_replayed_only_while_its_buffer_holds_it(
    pki: Pki, replay_bytes: int, outcome: str
) -> None:
    audio = pcm16(conversation())
    async with (
        run_gpu_node(node_settings(pki)) as first,
        run_gpu_node(node_settings(pki)) as second,
        run_gpu_proxy(
            proxy_settings(
                pki, [first.address, second.address], gpu_proxy_replay_buffer_bytes=replay_bytes
            )
        ) as proxy,
    ):
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            gate = Gate[gpu_pb2.DiarizeRequest]()
            call = start_gated(gpu.diarization.Diarize, aiter(gate), timeout=WAIT)
            gate.push(gpu_pb2.DiarizeRequest(config=gpu_pb2.DiarizationConfig()))
            half = len(audio) // 2
            gate.push(gpu_pb2.DiarizeRequest(audio=audio[:half]))
            await eventually(
                lambda: any(n.admission.audio_bytes["Diarize"] == half for n in (first, second)),
                "the first half reached a node",
            )
            victim = serving_node((first, second), "Diarize")
            await victim.stop(grace=None)
            gate.push(gpu_pb2.DiarizeRequest(audio=audio[half:]))
            gate.end()
            if outcome == "replayed":
                result = await call
                assert [t.speaker for t in result.turns] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
            else:
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await call
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value
                assert "replay" in (failed.value.details() or "")


class DeadNode:
    """A port where a crashed node's host still accepts TCP and drops it at once."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._drop, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"127.0.0.1:{port}"

    async def _drop(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        writer.close()

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def dead_node() -> AsyncIterator[DeadNode]:
    node = DeadNode()
    yield node
    await node.stop()


async def test_an_open_breaker_fails_calls_fast_without_contacting_the_node(
    pki: Pki, dead_node: DeadNode
) -> None:
    target = await dead_node.start()
    settings = proxy_settings(
        pki,
        [target],
        gpu_proxy_max_attempts=1,
        # No probe within the test: every connection counted below would be a call's.
        gpu_proxy_probe_interval_s=3600,
        gpu_proxy_health_interval_s=3600,
    )
    async with run_gpu_proxy(settings) as proxy:
        node = proxy.node(target)
        assert state(node) is BreakerState.OPEN, "the start check found it dead"
        contacted = dead_node.accepted
        assert contacted >= 1
        channel, gpu = stubs_without_retries(pki, proxy.address)
        async with channel:
            for _ in range(20):
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
                view = view_rpc_error(failed.value)
                assert view.details[0]["metadata"]["cause"] == "circuit_open"
                assert view.retry_after == pytest.approx(3600)
            gate = Gate[gpu_pb2.RecognizeRequest]()
            stream = start_gated(gpu.recognition.Recognize, aiter(gate), timeout=WAIT)
            with pytest.raises(grpc.aio.AioRpcError) as stream_failed:
                await stream.read()
            assert stream_failed.value.code() == grpc.StatusCode.UNAVAILABLE
            assert await proxy_health(channel) == NOT_SERVING
        assert dead_node.accepted == contacted, "an open breaker sends nothing to the node"


async def test_the_breaker_opens_after_failures_and_closes_when_the_node_returns(
    pki: Pki,
) -> None:
    async with run_gpu_node(node_settings(pki)) as node:
        port = node.port
        settings = proxy_settings(
            pki,
            [node.address],
            gpu_proxy_max_attempts=1,
            gpu_proxy_breaker_failures=2,
            gpu_proxy_health_interval_s=3600,  # only calls and probes tell the proxy
        )
        async with run_gpu_proxy(settings) as proxy:
            channel, gpu = stubs_without_retries(pki, proxy.address)
            async with channel:
                await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                await node.stop(grace=None)
                handle = proxy.node(node.address)
                causes = []
                for _ in range(3):
                    with pytest.raises(grpc.aio.AioRpcError) as failed:
                        await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
                    causes.append(view_rpc_error(failed.value).details[0]["metadata"]["cause"])
                assert causes == ["node_failed", "node_failed", "circuit_open"]
                assert state(handle) is BreakerState.OPEN
                await wait_health(channel, NOT_SERVING)

                async with run_gpu_node(node_settings(pki, gpu_node_port=port)) as back:
                    await wait_health(channel, SERVING)
                    assert state(handle) is BreakerState.HALF_OPEN
                    await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                    assert state(handle) is BreakerState.CLOSED
                    assert back.admission.started["Summarize"] == 1


async def test_proxy_health_follows_node_availability_without_traffic(pki: Pki) -> None:
    async with (
        run_gpu_node(node_settings(pki)) as first,
        run_gpu_node(node_settings(pki)) as second,
    ):
        ports = (first.port, second.port)
        settings = proxy_settings(
            pki, [first.address, second.address], gpu_proxy_health_interval_s=0.1
        )
        async with run_gpu_proxy(settings) as proxy:
            channel, _ = stubs(pki, proxy.address)
            async with channel:
                assert await proxy_health(channel) == SERVING
                await first.stop(grace=1.0)
                await eventually(
                    lambda: not proxy.node(first.address).breaker.usable, "first noticed"
                )
                assert await proxy_health(channel) == SERVING, "one usable node is enough"
                await second.stop(grace=None)
                await wait_health(channel, NOT_SERVING)
                async with run_gpu_node(node_settings(pki, gpu_node_port=ports[1])):
                    await wait_health(channel, SERVING)


async def test_client_certificates_reload_without_restart(pki: Pki, tmp_path: Path) -> None:
    proxy_ca = tmp_path / "proxy-ca.pem"
    shutil.copy(pki.ca.cert, proxy_ca)
    # The node presents a certificate from a CA the proxy does not trust (yet).
    async with run_gpu_node(node_settings(pki, identity=pki.rogue_node)) as node:
        settings = proxy_settings(
            pki, [node.address], gpu_proxy_ca=proxy_ca, gpu_proxy_max_attempts=1
        )
        async with run_gpu_proxy(settings) as proxy:
            channel, gpu = stubs(pki, proxy.address)
            async with channel:
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert node.admission.started.total() == 0

                # Trust the node's CA as well: written the way deploy tools do, renamed
                # into place so the proxy never reads half a file.
                staged = tmp_path / "proxy-ca.pem.new"
                staged.write_bytes(pki.ca.cert.read_bytes() + pki.other_ca.cert.read_bytes())
                staged.replace(proxy_ca)
                await eventually(lambda: proxy.credentials.generation == 1, "files reloaded")
                await wait_health(channel, SERVING)
                summary = await gpu.summarization.Summarize(SUMMARY_REQUEST, timeout=WAIT)
                assert [a.owner for a in summary.action_items] == ["Dan"]
                assert node.admission.started["Summarize"] == 1


async def test_overload_reaches_a_gated_stream_as_resource_exhausted(pki: Pki) -> None:
    async with run_gpu_node(node_settings(pki)) as node:
        settings = proxy_settings(
            pki, [node.address], gpu_proxy_max_streams_per_node=1, gpu_proxy_queue_length=0
        )
        async with run_gpu_proxy(settings) as proxy:
            channel, gpu = stubs(pki, proxy.address)
            async with channel:
                holder = Gate[gpu_pb2.RecognizeRequest]()
                holding = start_gated(gpu.recognition.Recognize, aiter(holder), timeout=WAIT)
                holder.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
                await eventually(lambda: node.admission.active["Recognize"] == 1, "cap reached")
                for _ in range(5):
                    refused = start_gated(
                        gpu.recognition.Recognize,
                        recognize_stream(),
                        timeout=WAIT,
                    )
                    with pytest.raises(grpc.aio.AioRpcError) as full:
                        [r async for r in refused]
                    assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert view_rpc_error(full.value).retry_after is not None
                holder.end()
                assert [r async for r in holding] == []
                assert proxy.balancer.waiting == 0


async def recognize_stream() -> AsyncIterator[gpu_pb2.RecognizeRequest]:
    yield gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig())
    for _ in range(50):
        yield gpu_pb2.RecognizeRequest(audio=pcm16(tone(0.5)))
