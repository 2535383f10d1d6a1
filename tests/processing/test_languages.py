"""Honest languages: the fleet tells what it transcribes, and a meeting asks for nothing else."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2, status_pb2

from gen.gpu.v1 import gpu_pb2, gpu_pb2_grpc
from gen.meeting.v1 import meeting_pb2, meeting_service_pb2
from gpu_client import connect
from gpu_proxy.capabilities import merge
from tests.support.gpu import Pki, as_wav
from tests.support.meeting import auth
from tests.support.mesh import (
    USER,
    WAIT,
    create_meeting,
    dialogue,
    follow,
    run_mesh,
    upload,
)


def _error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError("no ErrorInfo")


async def test_a_language_no_node_transcribes_is_refused_at_create_and_update(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    async with run_mesh(db_url, pki, tmp_path) as mesh:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await create_meeting(mesh, title="Besprechung", language="de")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        info = _error_info(refused.value)
        assert info.reason == "INVALID_FIELD"
        assert dict(info.metadata) == {"field": "language", "supported": "en"}
        assert "no GPU node transcribes 'de'" in (refused.value.details() or "")

        # A regional variant of a language it does transcribe, and detection, are fine.
        assert (await create_meeting(mesh, language="en-GB")).language == "en-GB"
        detected = await create_meeting(mesh, title="detect")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await mesh.stub.UpdateMeeting(
                meeting_service_pb2.UpdateMeetingRequest(
                    meeting=meeting_pb2.Meeting(id=detected.id, language="xx"),
                    update_mask=field_mask_pb2.FieldMask(paths=["language"]),
                ),
                metadata=auth(USER),
                timeout=WAIT,
            )
        assert _error_info(refused.value).metadata["supported"] == "en"

        # The detected language is stored and shown once speech was recognized.
        await upload(mesh, detected.id, as_wav(dialogue(2)))
        await follow(mesh, detected.id)
        got = await mesh.stub.GetMeeting(
            meeting_service_pb2.GetMeetingRequest(meeting_id=detected.id),
            metadata=auth(USER),
            timeout=WAIT,
        )
        assert (got.meeting.language, got.meeting.detected_language) == ("", "und")


async def test_the_proxy_answers_with_what_its_nodes_can_do(
    db_url: str, pki: Pki, tmp_path: Path
) -> None:
    async with (
        run_mesh(db_url, pki, tmp_path, engines=(None, None)) as mesh,
        connect(mesh.proxy.address, pki.client, pki.ca.cert) as channel,
    ):
        stub = gpu_pb2_grpc.CapabilitiesServiceStub(channel)
        answer = await stub.GetCapabilities(gpu_pb2.GetCapabilitiesRequest(), timeout=WAIT)
    assert list(answer.recognition_engines) == ["mock"]
    assert list(answer.languages) == ["en"]
    assert answer.language_detection and not answer.vocabulary


def test_the_fleet_can_do_what_any_node_can() -> None:
    english = gpu_pb2.GetCapabilitiesResponse(
        recognition_engines=["whisper:tiny.en"], languages=["en"], vocabulary=True
    )
    many = gpu_pb2.GetCapabilitiesResponse(
        recognition_engines=["whisper:base"], languages=["de", "en", "fr"], translation=True
    )
    merged = merge([english, many])
    assert list(merged.languages) == ["de", "en", "fr"]
    assert list(merged.recognition_engines) == ["whisper:base", "whisper:tiny.en"]
    assert merged.translation and merged.vocabulary and not merged.language_detection
