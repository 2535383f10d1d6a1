"""The contracts keep the promises of docs/architecture.md, and every field is documented."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc_tools
import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

from gen.meeting.v1 import meeting_service_pb2
from mesh_common.scopes import grantable_scopes, method_scope

ROOT = Path(__file__).resolve().parent.parent
PROTO_FILES = sorted(str(p.relative_to(ROOT / "proto")) for p in (ROOT / "proto").rglob("*.proto"))


@pytest.fixture(scope="module")
def descriptors(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path_factory.mktemp("descriptors") / "set.binpb"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{ROOT / 'third_party' / 'proto'}",
            f"-I{well_known}",
            "--include_source_info",
            f"--descriptor_set_out={out}",
            *PROTO_FILES,
        ]
    )
    assert code == 0
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _methods(fds: descriptor_pb2.FileDescriptorSet, service: str) -> dict[str, tuple[bool, bool]]:
    for file in fds.file:
        for svc in file.service:
            if f"{file.package}.{svc.name}" == service:
                return {m.name: (m.client_streaming, m.server_streaming) for m in svc.method}
    raise AssertionError(f"service {service} not found")


def test_meeting_service_has_every_rpc_with_its_streaming_shape(
    descriptors: descriptor_pb2.FileDescriptorSet,
) -> None:
    assert _methods(descriptors, "meeting.v1.MeetingService") == {
        "CreateMeeting": (False, False),
        "GetMeeting": (False, False),
        "ListMeetings": (False, False),
        "UpdateMeeting": (False, False),
        "DeleteMeeting": (False, False),
        "UploadAudio": (True, False),
        "GetUploadStatus": (False, False),
        "StreamTranscript": (False, True),
        "GetTranscript": (False, False),
        "GetSummary": (False, False),
        "LiveTranscribe": (True, True),
        "ExportTranscript": (False, False),
        "SearchTranscripts": (False, False),
        "CreateWebhook": (False, False),
        "ListWebhooks": (False, False),
        "DeleteWebhook": (False, False),
        "ListWebhookDeliveries": (False, False),
        "RedeliverWebhook": (False, False),
        "CreateApiKey": (False, False),
        "ListApiKeys": (False, False),
        "RevokeApiKey": (False, False),
        "StreamUserEvents": (False, True),
        "RenameSpeaker": (False, False),
        "CreateVoiceProfile": (False, False),
        "AddVoiceSample": (False, False),
        "ListVoiceProfiles": (False, False),
        "RenameVoiceProfile": (False, False),
        "DeleteVoiceProfile": (False, False),
        "CreateVoiceProfileFromAudio": (False, False),
        "AddVoiceAudio": (False, False),
    }


def test_every_meeting_service_rpc_declares_the_scope_it_needs() -> None:
    service = meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"]
    undeclared = [m.name for m in service.methods if not method_scope(m)]
    assert undeclared == []
    assert grantable_scopes(service) == {
        "meetings:read",
        "meetings:write",
        "audio:upload",
        "webhooks:manage",
        "keys:manage",
    }


def test_gpu_services_have_their_streaming_shapes(
    descriptors: descriptor_pb2.FileDescriptorSet,
) -> None:
    assert _methods(descriptors, "gpu.v1.SpeechRecognitionService") == {"Recognize": (True, True)}
    assert _methods(descriptors, "gpu.v1.SpeakerDiarizationService") == {"Diarize": (True, False)}
    assert _methods(descriptors, "gpu.v1.SummarizationService") == {"Summarize": (False, False)}
    assert _methods(descriptors, "gpu.v1.CapabilitiesService") == {
        "GetCapabilities": (False, False)
    }


def test_meeting_lifecycle_and_segment_fields() -> None:
    from gen.meeting.v1 import meeting_pb2

    statuses = set(meeting_pb2.MeetingStatus.keys())
    for status in (
        "AWAITING_AUDIO",
        "UPLOADING",
        "QUEUED",
        "TRANSCRIBING",
        "DIARIZING",
        "SUMMARIZING",
        "COMPLETED",
        "FAILED",
    ):
        assert f"MEETING_STATUS_{status}" in statuses
    meeting = set(meeting_pb2.Meeting.DESCRIPTOR.fields_by_name)
    assert {
        "owner",
        "title",
        "language",
        "status",
        "failure_reason",
        "create_time",
        "update_time",
        "duration",
    } <= meeting
    segment = set(meeting_pb2.Segment.DESCRIPTOR.fields_by_name)
    assert {
        "sequence",
        "start_offset",
        "end_offset",
        "text",
        "speaker",
        "confidence",
        "words",
        "final",
    } <= segment
    upload = set(
        importlib.import_module(
            "gen.meeting.v1.meeting_service_pb2"
        ).UploadMetadata.DESCRIPTOR.fields_by_name
    )
    assert {"meeting_id", "content_type", "total_size", "request_id", "offset"} <= upload


def test_every_field_that_names_a_meeting_carries_the_same_rules() -> None:
    # meeting_service checks every meeting id by the rules of GetMeetingRequest.meeting_id,
    # and the OpenAPI document states each route's own: they must be the same.
    from gen.meeting.v1 import meeting_service_pb2
    from mesh_common.validation import rules_of

    requests = meeting_service_pb2.DESCRIPTOR.message_types_by_name
    expected = rules_of(requests["GetMeetingRequest"].fields_by_name["meeting_id"])
    assert expected.required and expected.uuid
    ids = {
        name: rules_of(message.fields_by_name["meeting_id"])
        for name, message in requests.items()
        if "meeting_id" in message.fields_by_name
    }
    assert len(ids) >= 8
    assert {name for name, rules in ids.items() if rules != expected} == set()


def _comment_paths(file: descriptor_pb2.FileDescriptorProto) -> set[tuple[int, ...]]:
    return {
        tuple(loc.path)
        for loc in file.source_code_info.location
        if loc.leading_comments.strip() or loc.trailing_comments.strip()
    }


def _message_elements(
    msg: descriptor_pb2.DescriptorProto, path: tuple[int, ...], prefix: str
) -> Iterator[tuple[tuple[int, ...], str]]:
    yield path, prefix + msg.name
    for i, fld in enumerate(msg.field):
        yield (*path, 2, i), f"{prefix}{msg.name}.{fld.name}"
    for i, nested in enumerate(msg.nested_type):
        if nested.options.map_entry:
            continue  # synthesized for a map field, which carries the documentation
        yield from _message_elements(nested, (*path, 3, i), f"{prefix}{msg.name}.")


def _elements(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[tuple[int, ...], str]]:
    """Every message, field, enum, enum value, service and method with its source path."""
    for i, msg in enumerate(file.message_type):
        yield from _message_elements(msg, (4, i), "")
    for i, enum in enumerate(file.enum_type):
        yield (5, i), enum.name
        for j, value in enumerate(enum.value):
            yield (5, i, 2, j), f"{enum.name}.{value.name}"
    for i, svc in enumerate(file.service):
        yield (6, i), svc.name
        for j, method in enumerate(svc.method):
            yield (6, i, 2, j), f"{svc.name}.{method.name}"


def test_every_message_field_enum_value_and_rpc_is_documented(
    descriptors: descriptor_pb2.FileDescriptorSet,
) -> None:
    undocumented: list[str] = []
    checked = 0
    for file in descriptors.file:
        if file.name not in PROTO_FILES:
            continue
        documented = _comment_paths(file)
        for path, name in _elements(file):
            checked += 1
            if path not in documented:
                undocumented.append(f"{file.name}: {name}")
    assert checked > 200
    assert undocumented == []


def test_every_enum_starts_with_unspecified_zero(
    descriptors: descriptor_pb2.FileDescriptorSet,
) -> None:
    for file in descriptors.file:
        if file.name not in PROTO_FILES:
            continue
        for enum in file.enum_type:
            first = enum.value[0]
            assert first.number == 0, enum.name
            assert first.name.endswith("_UNSPECIFIED"), enum.name


@pytest.mark.parametrize(
    "module",
    [
        "gen.meeting.v1.meeting_pb2",
        "gen.meeting.v1.meeting_service_pb2",
        "gen.meeting.v1.meeting_service_pb2_grpc",
        "gen.meeting.v1.exports_pb2",
        "gen.meeting.v1.search_pb2",
        "gen.meeting.v1.webhooks_pb2",
        "gen.gpu.v1.gpu_pb2",
        "gen.gpu.v1.gpu_pb2_grpc",
        "gen.mesh.v1.validate_pb2",
    ],
)
def test_generated_modules_import(module: str) -> None:
    assert importlib.import_module(module).__name__ == module


def test_cli_help_lists_every_subcommand_of_the_design() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meeting_mesh.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    for command in (
        "dev",
        "gateway",
        "meeting-service",
        "gpu-proxy",
        "gpu-node",
        "migrate",
        "certs",
        "token",
        "upload",
        "export",
        "keys",
        "meetings",
        "search",
        "follow",
    ):
        assert f"    {command} " in result.stdout
