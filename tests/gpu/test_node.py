"""gpu_node over real mTLS: who may call it, what it accepts, what it answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gen.gpu.v1 import gpu_pb2, gpu_pb2_grpc
from gpu_node.server import RunningNode, run_gpu_node
from mesh_common.errors import view_rpc_error
from mesh_common.grpc_server import check_health
from mesh_common.lanes import LANE_KEY, LIVE
from mesh_common.tls import channel_credentials
from tests.support.gpu import (
    WAIT,
    Gate,
    Pki,
    conversation,
    eventually,
    finals,
    node_settings,
    pcm16,
    recognize,
    silence,
    stubs,
    tone,
)


@pytest.fixture(scope="module")
async def node(pki: Pki) -> AsyncIterator[RunningNode]:
    async with run_gpu_node(node_settings(pki, gpu_node_max_concurrent_calls=2)) as running:
        yield running


async def summarize_with(channel: grpc.aio.Channel) -> gpu_pb2.SummarizeResponse:
    stub = gpu_pb2_grpc.SummarizationServiceStub(channel)
    return await stub.Summarize(gpu_pb2.SummarizeRequest(), timeout=WAIT)


async def test_a_client_with_a_mesh_certificate_is_served(pki: Pki, node: RunningNode) -> None:
    channel, gpu = stubs(pki, node.address)
    async with channel:
        responses = await recognize(gpu, conversation())
        assert [s.segment_index for s in finals(responses)] == [0, 1, 2]
        assert {r.engine for r in responses} == {"mock"}
        assert await check_health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert await check_health(channel, "gpu.v1.SpeechRecognitionService") == (
            health_pb2.HealthCheckResponse.SERVING
        )


@pytest.mark.parametrize("client", ["plaintext", "no certificate", "another CA"])
async def test_clients_without_a_trusted_certificate_are_refused(
    pki: Pki, node: RunningNode, client: str
) -> None:
    if client == "plaintext":
        channel = grpc.aio.insecure_channel(node.address)
    elif client == "no certificate":
        channel = grpc.aio.secure_channel(
            node.address, grpc.ssl_channel_credentials(root_certificates=pki.ca.cert.read_bytes())
        )
    else:
        channel = grpc.aio.secure_channel(
            node.address, channel_credentials(pki.rogue_client, pki.ca.cert)
        )
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await summarize_with(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError):
            await check_health(channel)


async def test_reflection_lists_the_gpu_services(pki: Pki, node: RunningNode) -> None:
    channel, _ = stubs(pki, node.address)
    async with channel:
        info = channel.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in info(iter([request]), timeout=WAIT):
            names = {s.name for s in response.list_services_response.service}
            break
    assert {
        "gpu.v1.SpeechRecognitionService",
        "gpu.v1.SpeakerDiarizationService",
        "gpu.v1.SummarizationService",
    } <= names


async def test_first_message_must_be_config(pki: Pki, node: RunningNode) -> None:
    channel, gpu = stubs(pki, node.address)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            call = gpu.recognition.Recognize(
                iter([gpu_pb2.RecognizeRequest(audio=pcm16(tone(0.5)))]), timeout=WAIT
            )
            [r async for r in call]
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        view = view_rpc_error(bad.value)
        assert view.details[0]["reason"] == "INVALID_FIELD"
        assert view.details[0]["metadata"] == {"field": "config"}

        twice = [
            gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()),
            gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()),
        ]
        with pytest.raises(grpc.aio.AioRpcError) as again:
            [r async for r in gpu.recognition.Recognize(iter(twice), timeout=WAIT)]
        assert again.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        with pytest.raises(grpc.aio.AioRpcError) as diarize:
            await gpu.diarization.Diarize(iter([gpu_pb2.DiarizeRequest(audio=b"\0\0")]))
        assert diarize.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("rate", [8000, 44100])
async def test_only_16khz_is_accepted(pki: Pki, node: RunningNode, rate: int) -> None:
    channel, gpu = stubs(pki, node.address)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await recognize(gpu, silence(0.1), sample_rate_hertz=rate)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        view = view_rpc_error(bad.value)
        assert view.details[0]["reason"] == "UNSUPPORTED_AUDIO"
        assert view.details[0]["metadata"] == {"field": "config.sample_rate_hertz"}
        assert [
            s.segment_index
            for s in finals(await recognize(gpu, conversation(), **{"sample_rate_hertz": 16000}))
        ] == [0, 1, 2]


async def test_odd_sized_chunks_carry_their_last_byte(pki: Pki, node: RunningNode) -> None:
    channel, gpu = stubs(pki, node.address)
    async with channel:
        even = finals(await recognize(gpu, conversation(), chunk_bytes=16_000))
        odd = finals(await recognize(gpu, conversation(), chunk_bytes=4_001))
        assert odd == even


async def test_diarize_and_summarize(pki: Pki, node: RunningNode) -> None:
    channel, gpu = stubs(pki, node.address)
    async with channel:
        segments = finals(await recognize(gpu, conversation()))
        config = gpu_pb2.DiarizationConfig(
            spans=[
                gpu_pb2.TimeSpan(start_offset=s.start_offset, end_offset=s.end_offset)
                for s in segments
            ]
        )
        audio = pcm16(conversation())
        requests = [gpu_pb2.DiarizeRequest(config=config)] + [
            gpu_pb2.DiarizeRequest(audio=audio[i : i + 9_999]) for i in range(0, len(audio), 9_999)
        ]
        result = await gpu.diarization.Diarize(iter(requests), timeout=WAIT)
        assert [t.speaker for t in result.turns] == ["SPEAKER_1", "SPEAKER_2", "SPEAKER_1"]
        summary = await gpu.summarization.Summarize(
            gpu_pb2.SummarizeRequest(
                lines=[gpu_pb2.TranscriptLine(text="Bob will ship the release on Monday.")]
            ),
            timeout=WAIT,
        )
        assert [(a.owner, a.due) for a in summary.action_items] == [("Bob", "on Monday")]


async def test_beyond_its_call_limit_a_node_fails_fast_with_a_retry_hint(
    pki: Pki, node: RunningNode
) -> None:
    channel, gpu = stubs(pki, node.address)
    gates = [Gate[gpu_pb2.RecognizeRequest](), Gate[gpu_pb2.RecognizeRequest]()]
    async with channel:
        calls = [gpu.recognition.Recognize(aiter(gate), timeout=WAIT) for gate in gates]
        for gate in gates:
            gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
        await eventually(lambda: node.admission.active.total() == 2, "both calls admitted")
        with pytest.raises(grpc.aio.AioRpcError) as full:
            await summarize_with(channel)
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert view_rpc_error(full.value).retry_after == pytest.approx(1.0)
        # Live recognition has a lane of its own: a node full of batch work admits it.
        live_gate = Gate[gpu_pb2.RecognizeRequest]()
        live = gpu.recognition.Recognize(
            aiter(live_gate), timeout=WAIT, metadata=((LANE_KEY, LIVE),)
        )
        live_gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
        live_gate.end()
        assert [r async for r in live] == []
        for gate in gates:
            gate.end()
        for call in calls:
            assert [r async for r in call] == []
        await summarize_with(channel)


async def test_a_recording_over_the_diarization_limit_is_refused(pki: Pki) -> None:
    async with run_gpu_node(node_settings(pki, gpu_node_max_diarize_s=1.0)) as small:
        channel, gpu = stubs(pki, small.address)
        async with channel:
            config = gpu_pb2.DiarizationConfig(
                spans=[gpu_pb2.TimeSpan(end_offset=duration_pb2.Duration(seconds=1))]
            )
            audio = pcm16(conversation())
            requests = [gpu_pb2.DiarizeRequest(config=config)] + [
                gpu_pb2.DiarizeRequest(audio=audio[i : i + 8_000])
                for i in range(0, len(audio), 8_000)
            ]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await gpu.diarization.Diarize(iter(requests), timeout=WAIT)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            view = view_rpc_error(refused.value)
            assert view.details[0]["metadata"] == {"field": "audio"}
            assert "longer than 1 s" in view.message
