"""The meeting service's errors that are raised from more than one place, by name.

Each builds a `MeshError` whose reason fixes its gRPC code and HTTP status (the one table
in `mesh_common.errors`); the metadata keys are part of the contract (`meeting.v1.ErrorReason`).
"""

from __future__ import annotations

from gen.meeting.v1 import meeting_pb2
from mesh_common.errors import MeshError


def invalid(field: str, message: str) -> MeshError:
    """A request field is missing or malformed."""
    return MeshError(meeting_pb2.ERROR_REASON_INVALID_FIELD, message, {"field": field})


def unsupported_language(field: str, language: str, supported: list[str]) -> MeshError:
    """No GPU node transcribes the language a meeting asks for."""
    return MeshError(
        meeting_pb2.ERROR_REASON_INVALID_FIELD,
        f"no GPU node transcribes {language!r}; leave {field} empty to detect the language, "
        f"or use one of: {', '.join(supported)}",
        {"field": field, "supported": ",".join(supported)},
    )


def not_found(meeting_id: object) -> MeshError:
    """The meeting is missing or not the caller's (the two are never told apart)."""
    return MeshError(
        meeting_pb2.ERROR_REASON_MEETING_NOT_FOUND,
        f"meeting {meeting_id} not found",
        {"meeting_id": str(meeting_id)},
    )


def status_name(status: int) -> str:
    """The name of a `MeetingStatus` value, as errors and logs show it."""
    return meeting_pb2.MeetingStatus.Name(status)  # type: ignore[arg-type]


def wrong_state(status: str, message: str) -> MeshError:
    """The meeting's status does not allow the call; `status` is its name."""
    return MeshError(meeting_pb2.ERROR_REASON_WRONG_STATE, message, {"status": status})


def not_ready(status: int, message: str) -> MeshError:
    """What was asked for does not exist yet."""
    return MeshError(meeting_pb2.ERROR_REASON_NOT_READY, message, {"status": status_name(status)})


def upload_too_large(limit_bytes: int) -> MeshError:
    """The recording is over the configured limit."""
    return MeshError(
        meeting_pb2.ERROR_REASON_UPLOAD_TOO_LARGE,
        f"the recording is larger than the limit of {limit_bytes} bytes",
        {"limit_bytes": str(limit_bytes)},
    )


def offset_mismatch(stored_size: int, message: str) -> MeshError:
    """An upload stream does not continue at the stored size."""
    return MeshError(
        meeting_pb2.ERROR_REASON_UPLOAD_OFFSET_MISMATCH,
        message,
        {"stored_size": str(stored_size)},
    )


def unavailable(
    message: str, metadata: dict[str, str] | None = None, *, retry_after: float = 1.0
) -> MeshError:
    """A backend (the database, the GPU service) cannot be reached; retry later."""
    return MeshError(
        meeting_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
        message,
        metadata or {},
        retry_after=retry_after,
    )
