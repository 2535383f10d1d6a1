"""The errors of the meeting contract, raised by meeting_service and by the gateway.

Each reason's gRPC code, HTTP status and WebSocket close code are declared on the enum
value in proto/meeting/v1/meeting.proto; the constructors here are for the errors that
more than one place raises.
"""

from __future__ import annotations

from gen.meeting.v1 import meeting_pb2
from mesh_common.errors import MeshError


class MeetingError(MeshError, reasons=meeting_pb2.ErrorReason):
    """An error of the meeting contract; `reason` is a `meeting.v1.ErrorReason` value."""


def status_name(status: int) -> str:
    """The name of a `MeetingStatus` value, as errors and logs show it."""
    return meeting_pb2.MeetingStatus.Name(status)  # type: ignore[arg-type]


def invalid_field(field: str, message: str) -> MeetingError:
    """Returns the INVALID_FIELD error for a request field that is missing or malformed.

    Args:
        field: The field's name, for programs (`ErrorInfo.metadata.field`).
        message: What is wrong, for people.
    """
    return MeetingError(meeting_pb2.ERROR_REASON_INVALID_FIELD, message, {"field": field})


def unsupported_language(field: str, language: str, supported: list[str]) -> MeetingError:
    """Returns the INVALID_FIELD error for a language no GPU node transcribes.

    Args:
        field: The field that asked for it.
        language: The language asked for.
        supported: The languages the fleet transcribes (`ErrorInfo.metadata.supported`).
    """
    return MeetingError(
        meeting_pb2.ERROR_REASON_INVALID_FIELD,
        f"no GPU node transcribes {language!r}; leave {field} empty to detect the language, "
        f"or use one of: {', '.join(supported)}",
        {"field": field, "supported": ",".join(supported)},
    )


def speaker_not_found(speaker: str, speakers: list[str], message: str) -> MeetingError:
    """Returns the error for a speaker label the meeting does not have.

    Args:
        speaker: The label asked for (`ErrorInfo.metadata.speaker`).
        speakers: The labels it has (`ErrorInfo.metadata.speakers`, comma-separated).
        message: What is missing, for people.
    """
    return MeetingError(
        meeting_pb2.ERROR_REASON_SPEAKER_NOT_FOUND,
        message,
        {"speaker": speaker, "speakers": ",".join(speakers)},
    )


def not_found(meeting_id: object) -> MeetingError:
    """Returns the error for a meeting that is missing or not the caller's."""
    return MeetingError(
        meeting_pb2.ERROR_REASON_MEETING_NOT_FOUND,
        f"meeting {meeting_id} not found",
        {"meeting_id": str(meeting_id)},
    )


def webhook_not_found(webhook_id: object, delivery_id: object | None = None) -> MeetingError:
    """Returns the error for a webhook endpoint (or delivery) missing or not the caller's."""
    metadata = {"webhook_id": str(webhook_id)}
    what = f"webhook {webhook_id}"
    if delivery_id is not None:
        metadata["delivery_id"] = str(delivery_id)
        what = f"delivery {delivery_id} of {what}"
    return MeetingError(meeting_pb2.ERROR_REASON_WEBHOOK_NOT_FOUND, f"{what} not found", metadata)


def wrong_state(status: str, message: str) -> MeetingError:
    """Returns the error for a call the meeting's status does not allow.

    Args:
        status: The `MeetingStatus` name, for programs (`ErrorInfo.metadata.status`).
        message: Why, for people.
    """
    return MeetingError(meeting_pb2.ERROR_REASON_WRONG_STATE, message, {"status": status})


def not_ready(status: int, message: str) -> MeetingError:
    """Returns the error for something that does not exist yet (a transcript, a summary)."""
    return MeetingError(
        meeting_pb2.ERROR_REASON_NOT_READY, message, {"status": status_name(status)}
    )


def upload_too_large(limit: int) -> MeetingError:
    """Returns the error for a recording over the size limit of `limit` bytes."""
    return MeetingError(
        meeting_pb2.ERROR_REASON_UPLOAD_TOO_LARGE,
        f"the recording is larger than the limit of {limit} bytes",
        {"limit_bytes": str(limit)},
    )


def offset_mismatch(stored_size: int, message: str) -> MeetingError:
    """Returns the error for an upload that does not continue at the stored size.

    Args:
        stored_size: Bytes stored, where the upload must continue.
        message: What the client sent, for people.
    """
    return MeetingError(
        meeting_pb2.ERROR_REASON_UPLOAD_OFFSET_MISMATCH, message, {"stored_size": str(stored_size)}
    )


def written_by_another_stream(stored_size: int) -> MeetingError:
    """Returns the error for an upload stream another stream overtook (it wrote first).

    Args:
        stored_size: Bytes stored now, where the upload must continue.
    """
    return offset_mismatch(
        stored_size,
        f"another upload stream wrote to this meeting; continue at offset {stored_size}",
    )


def unavailable(
    message: str, metadata: dict[str, str] | None = None, *, retry_after: float = 1.0
) -> MeetingError:
    """Returns the error for a backend (the database, the GPU service) out of reach."""
    return MeetingError(
        meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE, message, metadata, retry_after=retry_after
    )


def quota_exceeded(quota: str, limit: int, message: str, *, retry_after: float) -> MeetingError:
    """Returns the error for a call over one of the caller's quotas.

    Args:
        quota: The quota's name, for programs (`ErrorInfo.metadata.quota`), e.g.
            "uploads_per_minute".
        limit: Its configured value (`ErrorInfo.metadata.limit`).
        message: What was refused, for people.
        retry_after: Seconds until the call may succeed.
    """
    return MeetingError(
        meeting_pb2.ERROR_REASON_QUOTA_EXCEEDED,
        message,
        {"quota": quota, "limit": str(limit)},
        retry_after=retry_after,
    )
