"""Settings of the HTTP gateway (environment prefix `MESH_`)."""

from __future__ import annotations

import json
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

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
        cors_origins: Origins whose pages may call the API from a browser: exact ones
            (`https://app.example.com`) or with any port (`http://localhost:*`); a JSON
            list or a comma-separated string. Empty (the default): none.
        header_timeout_s: How long a new connection may take to send its first request's
            headers; then it is closed (a client that opens connections and sends
            headers slowly cannot hold them).
        body_timeout_s: How long a JSON request body may take to arrive in full (then
            the answer is 408 and the connection is closed), and how long the unread rest
            of a refused request's body is read and dropped, to keep the connection, before
            it is closed instead.
        upload_idle_timeout_s: The longest pause in an upload's body; then the answer is
            408, the bytes received are kept and the upload resumes with HEAD and PATCH.
        keepalive_timeout_s: How long an idle keep-alive connection stays open (longer than
            the idle timeout of a load balancer in front, so the balancer closes first).
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
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip() for o in text.split(",") if o.strip()]
        return value

    header_timeout_s: float = Field(default=15.0, gt=0)
    body_timeout_s: float = Field(default=10.0, gt=0)
    upload_idle_timeout_s: float = Field(default=60.0, gt=0)
    keepalive_timeout_s: float = Field(default=75.0, gt=0)
