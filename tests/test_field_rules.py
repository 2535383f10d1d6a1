"""mesh_common.validation: the contract's field rules, read from real descriptors."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, voice_audio_pb2
from mesh_common.validation import FieldViolation, check_field, check_message

_MEETING = meeting_pb2.Meeting.DESCRIPTOR.fields_by_name
_UPLOAD = meeting_service_pb2.UploadMetadata.DESCRIPTOR.fields_by_name
_AUDIO = voice_audio_pb2.AddVoiceAudioRequest.DESCRIPTOR.fields_by_name["audio"]
_ID = "0b6a3c52-8d4e-4a56-9a43-6f1f3c1b2d7e"


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        (_MEETING["title"], "x" * 201, "title", "title is longer than 200 characters"),
        (_MEETING["title"], "a\x00b", "title", "title must not contain a NUL character"),
        (
            _MEETING["language"],
            "en\n",
            "language",
            "language must be a BCP-47 code such as 'en' or 'pt-BR'",
        ),
        (
            _MEETING["expected_speakers"],
            101,
            "expected_speakers",
            "expected_speakers must be 0 to 100",
        ),
        (_UPLOAD["offset"], -1, "offset", "offset must be 0 or more"),
        (_UPLOAD["meeting_id"], "", "meeting_id", "meeting_id is required"),
        (_UPLOAD["meeting_id"], "nope", "meeting_id", "meeting_id must be a UUID"),
        (
            _UPLOAD["sha256"],
            "AB" * 32,
            "sha256",
            "sha256 must be 64 lowercase hexadecimal characters",
        ),
        (_AUDIO, b"", "audio", "audio is required"),
        (_AUDIO, bytes(4 * 1024 * 1024 + 1), "audio", "audio is longer than 4194304 bytes"),
    ],
)
def test_a_value_that_breaks_its_fields_rules_is_a_violation_naming_the_field(
    field: FieldDescriptor, value: str | bytes | int, path: str, message: str
) -> None:
    with pytest.raises(FieldViolation) as raised:
        check_field(field, value)
    assert (raised.value.field, raised.value.message) == (path, message)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (_MEETING["title"], "é" * 200),
        (_MEETING["language"], ""),
        (_MEETING["language"], "pt-BR"),
        (_MEETING["expected_speakers"], 0),
        (_UPLOAD["sha256"], ""),
        (_UPLOAD["sha256"], "ab" * 32),
        (_UPLOAD["meeting_id"], _ID),
        (_AUDIO, bytes(4 * 1024 * 1024)),
        # A field with no rules takes any value of its type.
        (_MEETING["failure_reason"], "x\x00" * 1000),
    ],
)
def test_a_value_within_its_fields_rules_passes(
    field: FieldDescriptor, value: str | bytes | int
) -> None:
    check_field(field, value)


def test_a_violation_in_a_nested_message_is_named_by_its_path() -> None:
    request = meeting_service_pb2.CreateMeetingRequest(
        meeting=meeting_pb2.Meeting(title="ok", expected_speakers=-1), request_id="r"
    )
    with pytest.raises(FieldViolation) as raised:
        check_message(request)
    assert raised.value.field == "meeting.expected_speakers"


def test_a_whole_message_within_its_rules_passes_and_unset_required_fields_do_not() -> None:
    metadata = meeting_service_pb2.UploadMetadata(
        meeting_id=_ID, content_type="audio/wav", total_size=0, sha256="ab" * 32
    )
    check_message(metadata)
    with pytest.raises(FieldViolation) as raised:
        check_message(meeting_service_pb2.UploadMetadata(meeting_id=_ID), "metadata.")
    assert raised.value.field == "metadata.content_type"
