"""Settings of the meeting service, from the environment (prefix `MESH_`) or `.env`."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, model_validator

from mesh_common.settings import CommonSettings

GIB = 1024**3


class MeetingServiceSettings(CommonSettings):
    """What the meeting service reads.

    Attributes:
        database_url: PostgreSQL DSN, read from `DATABASE_URL` (no prefix, the convention
            every hosting platform uses). Absent means: start the embedded PostgreSQL in
            `<data_dir>/postgres`.
        db_pool_min: Connections the pool keeps open.
        db_pool_max: Most connections the pool opens.
        meeting_host: Interface the gRPC server binds.
        meeting_port: Port of the gRPC server; 0 picks a free one (tests).
        upload_limit_bytes: Largest recording accepted.
        gpu_proxy_target: Where the processing pipeline reaches gpu_proxy.
        grace_seconds: How long in-flight calls may run on after a stop is asked for.
        health_interval_seconds: How often the database is checked for health.
        stream_queue_size: Events buffered per StreamTranscript subscriber; a subscriber
            that falls further behind is cut off and resumes by sequence.
        ready_timeout_seconds: How long `run_meeting_service` waits for the database.
    """

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    db_pool_min: int = Field(default=2, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=500)
    meeting_host: str = "127.0.0.1"
    meeting_port: int = Field(default=50051, ge=0, le=65535)
    upload_limit_bytes: int = Field(default=2 * GIB, ge=1)
    gpu_proxy_target: str = "127.0.0.1:50052"
    grace_seconds: float = Field(default=10.0, ge=0)
    health_interval_seconds: float = Field(default=2.0, gt=0)
    stream_queue_size: int = Field(default=256, ge=1)
    ready_timeout_seconds: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _pool_bounds(self) -> MeetingServiceSettings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("MESH_DB_POOL_MIN must not exceed MESH_DB_POOL_MAX")
        return self

    @property
    def meeting_address(self) -> str:
        """The `host:port` the gRPC server binds."""
        return f"{self.meeting_host}:{self.meeting_port}"
