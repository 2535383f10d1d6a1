"""The error table of the mesh, read from the contracts, and the gRPC side of reporting.

Each contract declares its error reasons as an enum whose values carry the
`(mesh.v1.error)` option (proto/mesh/v1/errors.proto): the gRPC code, the HTTP status, the
WebSocket close code and whether the call may be tried again, in one declaration. A
service raises a `MeshError` subclass bound to its contract's enum; it leaves as a
`google.rpc.Status` with an `ErrorInfo` (gRPC), and a caller that receives one reads the
reason's row back by its `ErrorInfo.reason` (`view_rpc_error`). An error without a known
reason falls back on the canonical gRPC code -> HTTP status mapping, in that direction only.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn, Protocol

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.descriptor import EnumDescriptor
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gen.mesh.v1 import errors_pb2
from mesh_common.retry import RETRYABLE_CODES, effective_code

DOMAIN = "meeting-mesh"
_PREFIX = "ERROR_REASON_"
_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
WEBSOCKET_CLOSE_BASE = 4000

# The canonical gRPC -> HTTP mapping (google/rpc/code.proto), for errors without a reason.
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
_CODES_BY_NUMBER: Mapping[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


class ErrorEnum(Protocol):
    """A generated `ErrorReason` enum of a contract."""

    DESCRIPTOR: EnumDescriptor


@dataclass(frozen=True)
class ErrorSpec:
    """One row of the table: how one reason is reported on every transport.

    Attributes:
        reason: The `ErrorInfo.reason`: the enum value's name without `ERROR_REASON_`.
        code: The gRPC status code.
        http_status: The HTTP status of the JSON error answer.
        close_code: The WebSocket close code.
        retryable: Whether the same call may succeed later.
    """

    reason: str
    code: grpc.StatusCode
    http_status: int
    close_code: int
    retryable: bool


@functools.cache
def _table(enum: EnumDescriptor) -> Mapping[int, ErrorSpec]:
    rows: dict[int, ErrorSpec] = {}
    for value in enum.values:
        if value.number == 0:
            continue
        options = value.GetOptions()
        if not options.HasExtension(errors_pb2.error):
            raise LookupError(f"{enum.full_name}.{value.name} has no (mesh.v1.error) option")
        mapping = options.Extensions[errors_pb2.error]
        rows[value.number] = ErrorSpec(
            reason=value.name.removeprefix(_PREFIX),
            code=_CODES_BY_NUMBER[mapping.grpc_code],
            http_status=mapping.http_status,
            close_code=mapping.websocket_close_code,
            retryable=mapping.retryable,
        )
    return rows


def error_table(enum: ErrorEnum) -> Mapping[int, ErrorSpec]:
    """Returns the rows of a contract's error enum, by value number.

    Args:
        enum: An `ErrorReason` enum whose values carry `(mesh.v1.error)`.

    Returns:
        Every value but UNSPECIFIED, with its row.

    Raises:
        LookupError: A value lacks the option.
    """
    return _table(enum.DESCRIPTOR)


class MeshError(Exception):
    """A domain error that every transport knows how to report.

    Each contract binds a subclass to its `ErrorReason` enum
    (`class MeetingError(MeshError, reasons=meeting_pb2.ErrorReason)`); this class itself
    carries the reasons of `mesh.v1`, which any service may send.

    Attributes:
        reason: Why, as a value of the class's enum; it fixes the row of the table.
        message: What a user can read; never a secret, never a stack trace.
        metadata: Machine-readable detail for `ErrorInfo.metadata` (e.g. `field`).
        retry_after: Seconds a client should wait before trying again.
        retryable: Whether the call may succeed later; the table's answer unless the
            raiser knows better.
    """

    reasons: ClassVar[ErrorEnum] = errors_pb2.ErrorReason

    def __init_subclass__(cls, *, reasons: ErrorEnum, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        error_table(reasons)  # every value must be mapped before any is raised
        cls.reasons = reasons

    def __init__(
        self,
        reason: int,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.spec = error_table(self.reasons)[reason]
        self.retryable = self.spec.retryable if retryable is None else retryable
        self.retry_after = retry_after

    @property
    def code(self) -> grpc.StatusCode:
        """The gRPC status code of this error."""
        return self.spec.code

    def view(self) -> ErrorView:
        """Returns what a client of another transport is told about this error."""
        return ErrorView(
            self.spec.http_status,
            self.spec.close_code,
            self.spec.code,
            self.message,
            [_error_info(self.spec.reason, self.metadata)],
            self.retryable,
            self.retry_after,
        )

    def to_status(self) -> grpc.Status:
        """Builds the rich gRPC status (`google.rpc.Status` with `ErrorInfo`).

        Returns:
            A status suitable for `context.abort_with_status`, with a `RetryInfo` when
            the error has a delay.
        """
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(
                reason=self.spec.reason, domain=DOMAIN, metadata=self.metadata
            )
        )
        details = [info]
        if self.retry_after is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after * 1e9))
            retry = any_pb2.Any()
            retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            details.append(retry)
        status = status_pb2.Status(code=self.code.value[0], message=self.message, details=details)
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


def _error_info(reason: str, metadata: Mapping[str, str]) -> dict[str, Any]:
    return {"@type": _ERROR_INFO_TYPE, "reason": reason, "domain": DOMAIN, "metadata": metadata}


@dataclass(frozen=True)
class ErrorView:
    """What a client of HTTP or WebSocket is told about a failure.

    Attributes:
        http_status: The HTTP status.
        close_code: The WebSocket close code.
        grpc_code: The gRPC code, named in the body's `status`.
        message: What a user can read.
        details: The body's `details` (the `ErrorInfo`, as JSON).
        retryable: Whether the same request may succeed later.
        retry_after: Seconds to wait before trying again, when the server said so.
    """

    http_status: int
    close_code: int
    grpc_code: grpc.StatusCode
    message: str
    details: list[dict[str, Any]]
    retryable: bool
    retry_after: float | None

    def body(self) -> dict[str, Any]:
        """Returns the JSON error body (docs/errors.md)."""
        return {
            "error": {
                "code": self.http_status,
                "status": self.grpc_code.name,
                "message": self.message,
                "details": self.details,
            }
        }


def view_rpc_error(error: grpc.aio.AioRpcError, reasons: Iterable[ErrorEnum] = ()) -> ErrorView:
    """Translates a failed gRPC call into what an HTTP or WebSocket client is told.

    Args:
        error: The error raised by a grpc.aio stub call.
        reasons: The error enums of the callee's contract; an `ErrorInfo` naming one of
            their reasons gives the HTTP status and close code of its row.

    Returns:
        The statuses, message, details and retry delay.
    """
    code = effective_code(error)
    message: str = error.details() or code.name
    details: list[dict[str, Any]] = []
    retry_after: float | None = None
    spec: ErrorSpec | None = None
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                details.append(_error_info(info.reason, dict(info.metadata)))
                if info.domain == DOMAIN:
                    spec = spec or _spec_named(info.reason, code, reasons)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    if spec is not None:
        return ErrorView(
            spec.http_status, spec.close_code, code, message, details, spec.retryable, retry_after
        )
    http_status = HTTP_STATUS.get(code, 500)
    return ErrorView(
        http_status,
        WEBSOCKET_CLOSE_BASE + http_status,
        code,
        message,
        details,
        code in RETRYABLE_CODES,
        retry_after,
    )


def _spec_named(
    reason: str, code: grpc.StatusCode, reasons: Iterable[ErrorEnum]
) -> ErrorSpec | None:
    for enum in reasons:
        value = enum.DESCRIPTOR.values_by_name.get(_PREFIX + reason)
        if value is not None and value.number != 0:
            spec = error_table(enum)[value.number]
            # A reason names its code; a status that disagrees was not built from it.
            if spec.code == code:
                return spec
    return None
