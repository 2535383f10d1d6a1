"""The bare gRPC hop that `proxy_overhead` measures gpu_proxy against (`bench/bare_relay.py`).

A reference that dropped segments, hung gated callers or hid a node's refusal would make the
scenario's ratio meaningless, so it is held to what gpu_proxy is held to on those points.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from bench.bare_relay import bare_relay
from gen.gpu.v1 import gpu_pb2
from gpu_client import calls
from gpu_node.server import RunningNode, run_gpu_node
from tests.support.gpu import WAIT, Pki, chunks, conversation, node_settings, pcm16, stubs


@pytest.fixture(scope="module")
async def node(pki: Pki) -> AsyncIterator[RunningNode]:
    async with run_gpu_node(node_settings(pki)) as running:
        yield running


async def _segments(pki: Pki, target: str) -> list[gpu_pb2.RecognizedSegment]:
    async def blocks() -> AsyncIterator[bytes]:
        for block in chunks(pcm16(conversation()), 32_000):
            yield block

    channel, gpu = stubs(pki, target)
    async with channel:
        config = gpu_pb2.RecognitionConfig(
            encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16, sample_rate_hertz=16_000, language="en"
        )
        return [s async for s in calls.recognize(gpu, config, blocks(), deadline=WAIT)]


async def test_a_gated_caller_gets_the_nodes_segments_through_it(
    pki: Pki, node: RunningNode
) -> None:
    straight = await _segments(pki, node.address)
    async with bare_relay(node.address, pki.proxy, pki.ca.cert) as address:
        relayed = await _segments(pki, address)
    assert len(straight) == 3
    assert relayed == straight


async def test_a_call_the_node_refuses_ends_with_the_nodes_status(
    pki: Pki, node: RunningNode
) -> None:
    async def audio_first() -> AsyncIterator[gpu_pb2.RecognizeRequest]:
        yield gpu_pb2.RecognizeRequest(audio=b"\0\0" * 1600)

    async with bare_relay(node.address, pki.proxy, pki.ca.cert) as address:
        channel, gpu = stubs(pki, address)
        async with channel:
            call = gpu.recognition.Recognize(audio_first(), timeout=WAIT)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                _ = [response async for response in call]
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "the first message must carry config" in (refused.value.details() or "")
