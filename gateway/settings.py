"""Settings of the HTTP gateway (environment prefix `MESH_`)."""

from __future__ import annotations

from pydantic import Field

from mesh_common.settings import CommonSettings


class GatewaySettings(CommonSettings):
    """What the gateway reads, besides the common settings.

    Attributes:
        gateway_host: Interface the HTTP server listens on.
        gateway_port: TCP port of the HTTP server; 0 picks a free one.
        meeting_service_target: gRPC target of meeting_service ("host:port").
        max_upload_bytes: Largest recording accepted; a larger declared Content-Length is
            answered 413 before any byte is read, a larger chunked body as soon as it
            crosses the limit.
        upload_chunk_bytes: Size of the chunks the body is cut into for UploadAudio; this
            bounds what one upload holds in memory.
        unary_timeout_s: Deadline of every unary gRPC call (streams have none).
        sse_heartbeat_s: Longest silence on an event stream before a heartbeat
            comment is sent, so proxies do not cut idle streams.
        sse_retry_ms: The `retry:` hint sent to EventSource clients.
        shutdown_grace_s: How long open streams get to end when the gateway stops.
        openai_wait_s: How long `POST /v1/audio/transcriptions` waits for the meeting to
            complete before it answers 504 (the meeting goes on).
        openai_model_ids: The model ids `GET /v1/models` lists; a transcription may name
            any model, and every one runs the mesh's own recognizer.
    """

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=0, le=65535)
    meeting_service_target: str = "127.0.0.1:50051"
    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0)
    upload_chunk_bytes: int = Field(default=1024 * 1024, ge=1024, le=4 * 1024 * 1024)
    unary_timeout_s: float = Field(default=10.0, gt=0)
    sse_heartbeat_s: float = Field(default=15.0, gt=0, le=15.0)
    sse_retry_ms: int = Field(default=3000, ge=0)
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    openai_wait_s: float = Field(default=3600.0, gt=0)
    openai_model_ids: list[str] = Field(default=["whisper-1", "meeting-mesh"], min_length=1)
