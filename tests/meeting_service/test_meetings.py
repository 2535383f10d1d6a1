"""Meetings over real gRPC and PostgreSQL: CRUD, ownership, idempotency, pages, auth."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_service.server import RunningMeetingService
from mesh_common.auth import issue_token
from tests.support.meeting import auth, error_reason

Stub = meeting_service_pb2_grpc.MeetingServiceStub


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def _create(
    stub: Stub, user: str, title: str = "standup", **fields: object
) -> meeting_pb2.Meeting:
    response = await stub.CreateMeeting(
        meeting_service_pb2.CreateMeetingRequest(
            meeting=meeting_pb2.Meeting(title=title, **fields)  # type: ignore[arg-type]
        ),
        metadata=auth(user),
    )
    meeting: meeting_pb2.Meeting = response.meeting
    return meeting


async def _fails(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return error_reason(caught.value)


async def test_create_then_get_returns_the_stored_meeting(meeting_stub: Stub) -> None:
    user = _user()
    created = await _create(meeting_stub, user, "weekly sync", language="en", expected_speakers=3)
    assert created.owner == user
    assert created.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO
    assert uuid.UUID(created.id)
    assert created.create_time.seconds > 0

    got = await meeting_stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=created.id), metadata=auth(user)
    )
    assert got.meeting == created


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "x" * 201}, "title"),
        ({"language": "not a language"}, "language"),
        ({"expected_speakers": -1}, "expected_speakers"),
        # Text PostgreSQL cannot store, and a code with a trailing newline.
        ({"title": "stand\x00up"}, "title"),
        ({"language": "en\n"}, "language"),
        ({"vocabulary": [f"word{i}" for i in range(101)]}, "vocabulary"),
        ({"vocabulary": ["Priya", "x" * 65]}, "vocabulary[1]"),
    ],
)
async def test_create_rejects_bad_fields(
    meeting_stub: Stub, fields: dict[str, object], field: str
) -> None:
    code, reason, metadata = await _fails(
        meeting_stub.CreateMeeting(
            meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting(**fields)),  # type: ignore[arg-type]
            metadata=auth(_user()),
        )
    )
    assert (code, reason, metadata["field"]) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        field,
    )


async def test_create_is_idempotent_on_request_id(meeting_stub: Stub) -> None:
    user = _user()
    request = meeting_service_pb2.CreateMeetingRequest(
        meeting=meeting_pb2.Meeting(title="retry me"), request_id="req-1"
    )
    results = await asyncio.gather(
        *(meeting_stub.CreateMeeting(request, metadata=auth(user)) for _ in range(5))
    )
    assert len({r.meeting.id for r in results}) == 1
    listed = await meeting_stub.ListMeetings(
        meeting_service_pb2.ListMeetingsRequest(), metadata=auth(user)
    )
    assert [m.id for m in listed.meetings] == [results[0].meeting.id]
    # The same key from another caller is another meeting.
    other = await meeting_stub.CreateMeeting(request, metadata=auth(_user()))
    assert other.meeting.id != results[0].meeting.id


async def test_list_pages_newest_first_and_stable_under_inserts(meeting_stub: Stub) -> None:
    user = _user()
    first_batch = [await _create(meeting_stub, user, f"m{i}") for i in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await meeting_stub.ListMeetings(
            meeting_service_pb2.ListMeetingsRequest(page_size=3, page_token=token),
            metadata=auth(user),
        )
        seen.extend(m.id for m in page.meetings)
        pages += 1
        # Meetings created while paging sort before the cursor: they neither shift a
        # page nor appear twice.
        await _create(meeting_stub, user, f"late{pages}")
        token = page.next_page_token
        if not token:
            break
    assert seen == [m.id for m in reversed(first_batch)]
    assert pages == 3


async def test_list_shows_only_the_callers_meetings(meeting_stub: Stub) -> None:
    alice, bob = _user(), _user()
    mine = await _create(meeting_stub, alice)
    await _create(meeting_stub, bob)
    listed = await meeting_stub.ListMeetings(
        meeting_service_pb2.ListMeetingsRequest(), metadata=auth(alice)
    )
    assert [m.id for m in listed.meetings] == [mine.id]


@pytest.mark.parametrize("token", ["garbage", "eyJvIjoiMSJ9"])
async def test_list_rejects_foreign_or_forged_page_tokens(meeting_stub: Stub, token: str) -> None:
    code, reason, _ = await _fails(
        meeting_stub.ListMeetings(
            meeting_service_pb2.ListMeetingsRequest(page_token=token), metadata=auth(_user())
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")


async def test_page_token_of_another_user_is_rejected(meeting_stub: Stub) -> None:
    alice = _user()
    for i in range(3):
        await _create(meeting_stub, alice, f"a{i}")
    page = await meeting_stub.ListMeetings(
        meeting_service_pb2.ListMeetingsRequest(page_size=1), metadata=auth(alice)
    )
    assert page.next_page_token
    _code, reason, _ = await _fails(
        meeting_stub.ListMeetings(
            meeting_service_pb2.ListMeetingsRequest(page_token=page.next_page_token),
            metadata=auth(_user()),
        )
    )
    assert reason == "INVALID_PAGE_TOKEN"


async def test_list_rejects_oversized_pages(meeting_stub: Stub) -> None:
    _code, reason, metadata = await _fails(
        meeting_stub.ListMeetings(
            meeting_service_pb2.ListMeetingsRequest(page_size=101), metadata=auth(_user())
        )
    )
    assert (reason, metadata["field"]) == ("INVALID_FIELD", "page_size")


async def test_update_changes_only_masked_fields(meeting_stub: Stub) -> None:
    user = _user()
    created = await _create(meeting_stub, user, "before", language="en")
    updated = await meeting_stub.UpdateMeeting(
        meeting_service_pb2.UpdateMeetingRequest(
            meeting=meeting_pb2.Meeting(id=created.id, title="after", language="de"),
            update_mask=field_mask_pb2.FieldMask(paths=["title"]),
        ),
        metadata=auth(user),
    )
    assert (updated.meeting.title, updated.meeting.language) == ("after", "en")
    assert updated.meeting.update_time.ToDatetime() >= created.update_time.ToDatetime()


async def test_a_vocabulary_is_kept_trimmed_without_repeats_and_can_change(
    meeting_stub: Stub,
) -> None:
    user = _user()
    created = await _create(meeting_stub, user, vocabulary=[" Priya ", "", "Priya", "Kubernetes"])
    assert list(created.vocabulary) == ["Priya", "Kubernetes"]
    updated = await meeting_stub.UpdateMeeting(
        meeting_service_pb2.UpdateMeetingRequest(
            meeting=meeting_pb2.Meeting(id=created.id, vocabulary=["Siobhan"]),
            update_mask=field_mask_pb2.FieldMask(paths=["vocabulary"]),
        ),
        metadata=auth(user),
    )
    assert list(updated.meeting.vocabulary) == ["Siobhan"]


@pytest.mark.parametrize("paths", [[], ["status"], ["owner"], ["no_such_field"], ["title", "id"]])
async def test_update_rejects_unknown_or_immutable_paths(
    meeting_stub: Stub, paths: list[str]
) -> None:
    user = _user()
    created = await _create(meeting_stub, user)
    code, reason, _ = await _fails(
        meeting_stub.UpdateMeeting(
            meeting_service_pb2.UpdateMeetingRequest(
                meeting=meeting_pb2.Meeting(id=created.id, title="x"),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            ),
            metadata=auth(user),
        )
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_UPDATE_MASK")
    got = await meeting_stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=created.id), metadata=auth(user)
    )
    assert got.meeting.title == created.title


async def test_delete_removes_the_meeting(meeting_stub: Stub) -> None:
    user = _user()
    created = await _create(meeting_stub, user)
    await meeting_stub.DeleteMeeting(
        meeting_service_pb2.DeleteMeetingRequest(meeting_id=created.id), metadata=auth(user)
    )
    for call in (
        meeting_stub.GetMeeting(
            meeting_service_pb2.GetMeetingRequest(meeting_id=created.id), metadata=auth(user)
        ),
        meeting_stub.DeleteMeeting(
            meeting_service_pb2.DeleteMeetingRequest(meeting_id=created.id), metadata=auth(user)
        ),
        meeting_stub.GetUploadStatus(
            meeting_service_pb2.GetUploadStatusRequest(meeting_id=created.id), metadata=auth(user)
        ),
    ):
        code, reason, _ = await _fails(call)
        assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "MEETING_NOT_FOUND")


async def test_malformed_and_missing_ids_are_invalid(meeting_stub: Stub) -> None:
    for meeting_id in ("", "not-a-uuid"):
        code, _reason, metadata = await _fails(
            meeting_stub.GetMeeting(
                meeting_service_pb2.GetMeetingRequest(meeting_id=meeting_id), metadata=auth(_user())
            )
        )
        assert (code, metadata["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "meeting_id")


async def test_transcript_and_summary_are_not_ready_before_processing(meeting_stub: Stub) -> None:
    user = _user()
    created = await _create(meeting_stub, user)
    for call in (
        meeting_stub.GetTranscript(
            meeting_service_pb2.GetTranscriptRequest(meeting_id=created.id), metadata=auth(user)
        ),
        meeting_stub.GetSummary(
            meeting_service_pb2.GetSummaryRequest(meeting_id=created.id), metadata=auth(user)
        ),
    ):
        code, reason, metadata = await _fails(call)
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_READY")
        assert metadata["status"] == "MEETING_STATUS_AWAITING_AUDIO"


async def test_live_transcribe_without_a_gpu_service_says_so_and_keeps_the_meeting(
    meeting_stub: Stub,
) -> None:
    user = _user()
    created = await _create(meeting_stub, user, "live")

    async def requests() -> AsyncIterator[meeting_service_pb2.LiveTranscribeRequest]:
        yield meeting_service_pb2.LiveTranscribeRequest(
            config=meeting_service_pb2.LiveAudioConfig(meeting_id=created.id)
        )

    call = meeting_stub.LiveTranscribe(requests(), metadata=auth(user))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in call:
            pass
    code, reason, _ = error_reason(caught.value)
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
    assert "live transcription is unavailable" in (caught.value.details() or "")
    # Nothing was started: the meeting still waits for its audio.
    again = await meeting_stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=created.id), metadata=auth(user)
    )
    assert again.meeting.status == meeting_pb2.MEETING_STATUS_AWAITING_AUDIO


# --- the auth matrix: every RPC, every way to be refused ----------------------------------


def _every_call(
    stub: Stub, meeting_id: str, metadata: tuple[tuple[str, str], ...]
) -> dict[str, object]:
    async def one_upload() -> AsyncIterator[meeting_service_pb2.UploadAudioRequest]:
        yield meeting_service_pb2.UploadAudioRequest(
            metadata=meeting_service_pb2.UploadMetadata(
                meeting_id=meeting_id, content_type="audio/wav"
            )
        )

    return {
        "CreateMeeting": lambda: stub.CreateMeeting(
            meeting_service_pb2.CreateMeetingRequest(meeting=meeting_pb2.Meeting()),
            metadata=metadata,
        ),
        "GetMeeting": lambda: stub.GetMeeting(
            meeting_service_pb2.GetMeetingRequest(meeting_id=meeting_id), metadata=metadata
        ),
        "ListMeetings": lambda: stub.ListMeetings(
            meeting_service_pb2.ListMeetingsRequest(), metadata=metadata
        ),
        "UpdateMeeting": lambda: stub.UpdateMeeting(
            meeting_service_pb2.UpdateMeetingRequest(
                meeting=meeting_pb2.Meeting(id=meeting_id, title="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["title"]),
            ),
            metadata=metadata,
        ),
        "DeleteMeeting": lambda: stub.DeleteMeeting(
            meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting_id), metadata=metadata
        ),
        "UploadAudio": lambda: stub.UploadAudio(one_upload(), metadata=metadata),
        "GetUploadStatus": lambda: stub.GetUploadStatus(
            meeting_service_pb2.GetUploadStatusRequest(meeting_id=meeting_id), metadata=metadata
        ),
        "StreamTranscript": lambda: _first(
            stub.StreamTranscript(
                meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting_id),
                metadata=metadata,
            )
        ),
        "GetTranscript": lambda: stub.GetTranscript(
            meeting_service_pb2.GetTranscriptRequest(meeting_id=meeting_id), metadata=metadata
        ),
        "GetSummary": lambda: stub.GetSummary(
            meeting_service_pb2.GetSummaryRequest(meeting_id=meeting_id), metadata=metadata
        ),
    }


async def _first(call: object) -> object:
    async for item in call:  # type: ignore[attr-defined]
        return item
    return None


def _bad_tokens() -> dict[str, tuple[tuple[str, str], ...]]:
    return {
        "none": (),
        "not bearer": (("authorization", "Basic dXNlcjpwYXNz"),),
        "garbage": (("authorization", "Bearer not.a.jwt"),),
        "wrong secret": (
            (
                "authorization",
                "Bearer "
                + issue_token("mallory", "some-other-secret-that-is-long-enough-for-hs256"),
            ),
        ),
        "expired": auth("alice", ttl_s=-3600),
        "wrong audience": (
            (
                "authorization",
                "Bearer "
                + issue_token(
                    "alice", "test-secret-not-for-production-0123456789abcdef", audience="elsewhere"
                ),
            ),
        ),
    }


@pytest.mark.parametrize("token_kind", list(_bad_tokens()))
async def test_every_rpc_refuses_missing_or_bad_tokens(meeting_stub: Stub, token_kind: str) -> None:
    user = _user()
    owned = await _create(meeting_stub, user)
    metadata = _bad_tokens()[token_kind]
    for name, call in _every_call(meeting_stub, owned.id, metadata).items():
        code, reason, _ = await _fails(call())  # type: ignore[operator]
        assert (name, code, reason) == (name, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    # Nothing changed for the owner.
    got = await meeting_stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=owned.id), metadata=auth(user)
    )
    assert got.meeting == owned


async def test_another_users_meeting_is_not_found_on_every_rpc(meeting_stub: Stub) -> None:
    owner = _user()
    owned = await _create(meeting_stub, owner)
    calls = _every_call(meeting_stub, owned.id, auth(_user()))
    del calls["CreateMeeting"], calls["ListMeetings"]
    for name, call in calls.items():
        code, reason, _ = await _fails(call())  # type: ignore[operator]
        assert (name, code, reason) == (name, grpc.StatusCode.NOT_FOUND, "MEETING_NOT_FOUND")
    got = await meeting_stub.GetMeeting(
        meeting_service_pb2.GetMeetingRequest(meeting_id=owned.id), metadata=auth(owner)
    )
    assert got.meeting == owned


async def test_health_and_reflection_need_no_token(meeting_service: RunningMeetingService) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with grpc.aio.insecure_channel(meeting_service.address) as channel:
        health_stub: Any = health_pb2_grpc.HealthStub(channel)
        health = await health_stub.Check(
            health_pb2.HealthCheckRequest(service="meeting.v1.MeetingService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection: Any = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[arg-type]

        async def ask() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")

        async for answer in reflection.ServerReflectionInfo(ask()):
            names = {s.name for s in answer.list_services_response.service}
            break
    assert {"meeting.v1.MeetingService", "grpc.health.v1.Health"} <= names
