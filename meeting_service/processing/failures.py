"""Why a job attempt failed, in words a user can read, and whether trying again can help."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from gen.gpu.v1 import gpu_pb2
from gpu_client import GpuNotConfigured, GpuUnreachable
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.recordings.decode import UndecodableRecording
from meeting_service.recordings.s3_store import S3_ERRORS
from mesh_common.errors import view_rpc_error
from mesh_common.retry import RETRYABLE_CODES

# What a GPU answer means for the job, in words.
_WHAT_HAPPENED: dict[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "the GPU service is unavailable",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "the GPU service is overloaded",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the GPU service took too long",
    grpc.StatusCode.ABORTED: "the GPU service aborted the work",
    grpc.StatusCode.INTERNAL: "the GPU service failed",
    grpc.StatusCode.UNKNOWN: "the GPU service failed",
    grpc.StatusCode.CANCELLED: "the GPU service cancelled the work",
}
# The GPU service has no node to run the work on (none up, every breaker open, every node
# busy, or gpu_proxy itself unreachable): no fault of the recording, so the job waits for a
# node rather than spending its attempts.
_NO_GPU_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# Beyond the codes any caller retries at once, a later attempt of the whole job also
# outlives a slow fleet or a crashed engine; a refusal of the request itself (bad audio,
# unknown method) would only repeat.
_TRANSIENT_CODES = RETRYABLE_CODES | {
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
}


@dataclass(frozen=True)
class Failure:
    """A failed attempt.

    Attributes:
        reason: What happened, for `failure_reason` and the status event.
        retryable: Whether another attempt may succeed.
        retry_after: The least delay before it, when the service said so.
        waits_for_gpu: No GPU node could take the work: the job waits for one (see
            `pipeline_gpu_wait_max_s`) and the attempt does not count.
    """

    reason: str
    retryable: bool
    retry_after: float | None = None
    waits_for_gpu: bool = False


def classify(error: BaseException, step: str) -> Failure:
    """Explains an attempt's error.

    Args:
        error: What the attempt raised.
        step: What it was doing, e.g. "speech recognition".

    Returns:
        The failure.
    """
    if isinstance(error, grpc.aio.AioRpcError):
        view = view_rpc_error(error, (gpu_pb2.ErrorReason,))
        code = view.grpc_code
        detail = view.message.strip()
        if code in _NO_GPU_CODES:
            what = _WHAT_HAPPENED[code]
            return Failure(
                f"waiting for a GPU node: {step} failed: {what} ({detail})",
                True,
                view.retry_after,
                waits_for_gpu=True,
            )
        if view.retryable or code in _TRANSIENT_CODES:
            what = _WHAT_HAPPENED.get(code, "the GPU service failed")
            return Failure(f"{step} failed: {what} ({detail})", True, view.retry_after)
        return Failure(f"{step} failed: the GPU service refused the work ({detail})", False)
    if isinstance(error, UndecodableRecording):
        # The same bytes decode the same way every time: retrying cannot help.
        return Failure(str(error), False)
    if isinstance(error, GpuUnreachable):
        # Not the recording's fault: the job waits for the GPU service like for a node.
        return Failure(f"waiting for a GPU node: {step} failed: {error}", True, waits_for_gpu=True)
    if isinstance(error, GpuNotConfigured):
        return Failure(f"{step} failed: this server cannot reach the GPU service ({error})", True)
    if isinstance(error, CONNECTION_ERRORS):
        return Failure(f"{step} failed: the database was unreachable", True)
    if isinstance(error, S3_ERRORS):
        return Failure(f"{step} failed: the object storage was unreachable", True)
    return Failure(f"{step} failed: an internal error occurred ({type(error).__name__})", True)
