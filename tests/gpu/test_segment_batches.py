"""Segment batches: what a node has ready at once comes in one response, and nothing waits.

A caller that asks for `segment_batches` gets fewer responses carrying the same segments;
a caller that does not (an older client) gets one segment per response as before; and
gpu_client reads both, so it works with a node of either kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np
import pytest

from gen.gpu.v1 import gpu_pb2, gpu_pb2_grpc
from gpu_client import calls
from gpu_client.channel import GpuStubs
from gpu_node.server import RunningNode, run_gpu_node
from tests.support.gpu import (
    WAIT,
    Gate,
    Pki,
    conversation,
    node_settings,
    pcm16,
    recognize,
    segments,
    silence,
    stubs,
    tone,
)


@pytest.fixture(scope="module")
async def node(pki: Pki) -> AsyncIterator[RunningNode]:
    async with run_gpu_node(node_settings(pki)) as running:
        yield running


async def test_a_batching_caller_gets_the_same_segments_in_fewer_responses(
    pki: Pki, node: RunningNode
) -> None:
    channel, gpu = stubs(pki, node.address)
    whole = len(pcm16(conversation()))  # one audio message: every segment is ready at once
    async with channel:
        one_each = await recognize(gpu, conversation(), whole)
        batched = await recognize(gpu, conversation(), whole, segment_batches=True)
    assert [s.segment_index for s in segments(one_each)] == [0, 1, 2]
    assert all(r.HasField("segment") and not r.segments for r in one_each)
    assert len(batched) == 1
    assert not batched[0].HasField("segment")
    assert segments(batched) == segments(one_each)
    assert {r.engine for r in batched} == {"mock"}


async def test_a_ready_segment_is_sent_before_the_next_audio_arrives(
    pki: Pki, node: RunningNode
) -> None:
    channel, gpu = stubs(pki, node.address)
    gate = Gate[gpu_pb2.RecognizeRequest]()
    async with channel:
        call = gpu.recognition.Recognize(aiter(gate), timeout=WAIT)
        gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig(segment_batches=True)))
        gate.push(gpu_pb2.RecognizeRequest(audio=pcm16(np.concatenate([tone(1.0), silence(0.5)]))))
        # The stream stays open: the first utterance's final must not wait for more.
        first = await call.read()
        assert isinstance(first, gpu_pb2.RecognizeResponse)
        assert [(s.segment_index, s.is_final) for s in first.segments] == [(0, True)]
        gate.push(gpu_pb2.RecognizeRequest(audio=pcm16(np.concatenate([tone(1.0), silence(0.5)]))))
        second = await call.read()
        assert isinstance(second, gpu_pb2.RecognizeResponse)
        assert [(s.segment_index, s.is_final) for s in second.segments] == [(1, True)]
        gate.end()
        assert await call.read() == grpc.aio.EOF


class _OlderNode(gpu_pb2_grpc.SpeechRecognitionServiceServicer):
    """A node from before segment batches: one segment per response, whatever was asked."""

    def __init__(self, answers: list[gpu_pb2.RecognizedSegment]) -> None:
        self._answers = answers

    async def Recognize(
        self,
        request_iterator: AsyncIterator[gpu_pb2.RecognizeRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[gpu_pb2.RecognizeResponse]:
        await context.send_initial_metadata(())
        async for _ in request_iterator:
            pass
        for segment in self._answers:
            yield gpu_pb2.RecognizeResponse(segment=segment, engine="mock")


async def _pcm() -> AsyncIterator[bytes]:
    yield pcm16(conversation())


async def test_gpu_client_reads_batched_and_single_responses_alike(
    pki: Pki, node: RunningNode
) -> None:
    config = gpu_pb2.RecognitionConfig()
    channel, gpu = stubs(pki, node.address)
    async with channel:
        from_node = [s async for s in calls.recognize(gpu, config, _pcm(), deadline=WAIT)]
    assert [(s.segment_index, s.is_final) for s in from_node] == [(0, True), (1, True), (2, True)]
    older = grpc.aio.server()
    gpu_pb2_grpc.add_SpeechRecognitionServiceServicer_to_server(_OlderNode(from_node), older)
    port = older.add_insecure_port("127.0.0.1:0")
    await older.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as plain:
            old_gpu = GpuStubs.of(plain)
            from_older = [s async for s in calls.recognize(old_gpu, config, _pcm(), deadline=WAIT)]
    finally:
        await older.stop(None)
    assert from_older == from_node
