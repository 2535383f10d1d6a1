"""The one table of errors: domain reasons, gRPC status codes and HTTP statuses.

A service raises `MeshError(reason, message)`; transport code turns it into a
`google.rpc.Status` with an `ErrorInfo` (gRPC) or the JSON error body of DESIGN.md (HTTP).
The gateway reads the same table backwards, from a gRPC status to an HTTP answer, so a rule
lives here once and both directions agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gen.meeting.v1 import meeting_pb2

DOMAIN = "meeting-mesh"
Reason = meeting_pb2.ErrorReason

# The canonical gRPC -> HTTP mapping (google/rpc/code.proto), used in both directions.
HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Each domain reason has exactly one gRPC code.
REASON_CODE: Mapping[int, grpc.StatusCode] = {
    Reason.ERROR_REASON_UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Reason.ERROR_REASON_MEETING_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Reason.ERROR_REASON_INVALID_FIELD: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.ERROR_REASON_INVALID_UPDATE_MASK: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.ERROR_REASON_INVALID_PAGE_TOKEN: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.ERROR_REASON_UPLOAD_OFFSET_MISMATCH: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ERROR_REASON_UPLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.ERROR_REASON_UPLOAD_CHECKSUM_MISMATCH: grpc.StatusCode.DATA_LOSS,
    Reason.ERROR_REASON_NOT_AUDIO: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.ERROR_REASON_WRONG_STATE: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ERROR_REASON_NOT_READY: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.ERROR_REASON_BACKEND_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.ERROR_REASON_OVERLOADED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.ERROR_REASON_UNSUPPORTED_AUDIO: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.ERROR_REASON_INTERNAL: grpc.StatusCode.INTERNAL,
    Reason.ERROR_REASON_WEBHOOK_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
}

# Codes whose HTTP answer carries Retry-After.
RETRYABLE_CODES = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


def reason_name(reason: int) -> str:
    """Returns the `ErrorInfo.reason` string of a reason: its enum name without the prefix.

    Args:
        reason: A `meeting.v1.ErrorReason` value.

    Returns:
        For example "MEETING_NOT_FOUND".
    """
    return Reason.Name(reason).removeprefix("ERROR_REASON_")  # type: ignore[arg-type]


@dataclass
class MeshError(Exception):
    """A domain error that every transport knows how to report.

    Attributes:
        reason: Why, as a `meeting.v1.ErrorReason` value; it fixes the gRPC code.
        message: What a user can read; never a secret, never a stack trace.
        metadata: Machine-readable detail for `ErrorInfo.metadata` (e.g. `field`).
        retry_after: Seconds a client should wait, for overload and unavailability.
    """

    reason: int
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    retry_after: float | None = None

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def code(self) -> grpc.StatusCode:
        """The gRPC status code of this error."""
        return REASON_CODE[self.reason]

    def to_status(self) -> grpc.Status:
        """Builds the rich gRPC status (`google.rpc.Status` with `ErrorInfo`).

        Returns:
            A status suitable for `context.abort_with_status`.
        """
        return build_status(
            self.code, self.message, reason_name(self.reason), self.metadata, self.retry_after
        )


def build_status(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> grpc.Status:
    """Builds a rich gRPC status from its parts.

    Args:
        code: The gRPC status code.
        message: The human-readable message.
        reason: The `ErrorInfo.reason`.
        metadata: The `ErrorInfo.metadata`.
        retry_after: When set, a `RetryInfo` detail with this delay in seconds.

    Returns:
        The status, with the `grpc-status-details-bin` trailer filled in.
    """
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata or {}))
    )
    details.append(info)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        retry = any_pb2.Any()
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext[Any, Any], error: MeshError) -> NoReturn:
    """Ends a gRPC call with a domain error.

    Args:
        context: The servicer context of the call.
        error: The error to report.

    Raises:
        grpc.aio.AbortError: Always; that is how grpc.aio ends the call.
    """
    await context.abort_with_status(error.to_status())
    raise AssertionError("unreachable: abort_with_status raises")  # pragma: no cover


@dataclass(frozen=True)
class ErrorView:
    """What an HTTP client is told about a failed gRPC call."""

    http_status: int
    grpc_code: grpc.StatusCode
    message: str
    details: list[dict[str, Any]]
    retry_after: float | None

    def body(self) -> dict[str, Any]:
        """Returns the JSON error body of DESIGN.md."""
        return {
            "error": {
                "code": self.http_status,
                "status": self.grpc_code.name,
                "message": self.message,
                "details": self.details,
            }
        }


def view_rpc_error(error: grpc.aio.AioRpcError) -> ErrorView:
    """Translates a failed gRPC call into its HTTP answer.

    Args:
        error: The error raised by a grpc.aio stub call.

    Returns:
        The HTTP status, message, details and retry delay.
    """
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    details: list[dict[str, Any]] = []
    retry_after: float | None = None
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": info.reason,
                        "domain": info.domain,
                        "metadata": dict(info.metadata),
                    }
                )
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    if retry_after is None and code in RETRYABLE_CODES:
        retry_after = 1.0
    return ErrorView(HTTP_STATUS.get(code, 500), code, message, details, retry_after)


def grpc_code_for_http(http_status: int) -> grpc.StatusCode:
    """Returns the gRPC code that the canonical table maps to an HTTP status.

    Args:
        http_status: An HTTP status code.

    Returns:
        The first gRPC code with that HTTP status, UNKNOWN when none has it.
    """
    for code, status in HTTP_STATUS.items():
        if status == http_status:
            return code
    return grpc.StatusCode.UNKNOWN
