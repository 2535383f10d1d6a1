"""Settings of the meeting service, from the environment (prefix `MESH_`) or `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, model_validator

from mesh_common.settings import CommonSettings
from mesh_common.tls import KeyPair

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
        meeting_metrics_port: Port of the Prometheus `/metrics` endpoint (HTTP, on
            `meeting_host`); 0 picks a free one.
        upload_limit_bytes: Largest recording accepted.
        gpu_proxy_target: Where the processing pipeline reaches gpu_proxy.
        grace_s: How long in-flight calls may run on after a stop is asked for.
        health_interval_s: How often the database is checked for health.
        stream_queue_size: Events buffered per StreamTranscript subscriber; a subscriber
            that falls further behind catches up from the table.
        ready_timeout_s: How long `run_meeting_service` waits for the database.
        gpu_proxy_cert: The client certificate presented to gpu_proxy; default
            `<data_dir>/certs/meeting-service.pem`.
        gpu_proxy_key: Its key; default `<data_dir>/certs/meeting-service.key`.
        gpu_proxy_ca: The CA gpu_proxy's certificate must chain to; default
            `<data_dir>/certs/ca.pem`.
        gpu_proxy_tls_name: Name to check in gpu_proxy's certificate when the target is an
            address the certificate does not name ("" checks the target's host).
        pipeline_workers: Jobs one process runs at once; 0 runs none (LiveTranscribe still
            works). See docs/pipeline.md for how the pipeline behaves.
        pipeline_poll_interval_s: How often an idle worker looks for a queued job.
        pipeline_lease_s: How long a claimed job stays this worker's without a heartbeat
            (sent every third of it); after that another worker takes it over, so a dead
            worker's job is taken over within this plus `pipeline_poll_interval_s`.
        pipeline_max_attempts: Attempts per job before the meeting is FAILED.
        pipeline_backoff_initial_s: Delay before the first retry (exponential, full jitter).
        pipeline_backoff_max_s: Longest delay between retries.
        pipeline_gpu_wait_max_s: How long a job waits for a GPU node (none up, every one
            busy or failing) before its meeting is FAILED; tries that find none are not
            attempts.
        pipeline_gpu_wait_retry_max_s: Longest delay between two such tries, so a job
            resumes soon after a node returns.
        pipeline_gpu_deadline_base_s: Fixed part of every GPU call's deadline.
        pipeline_gpu_deadline_per_audio_s: Deadline seconds added per second of audio.
        pipeline_live_max_s: Longest live session (the deadline of its recognition stream).
        pipeline_live_follow_s: How long LiveTranscribe, after the audio ended, keeps
            returning the events of the diarization and summary job before it ends the call.
    """

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    db_pool_min: int = Field(default=2, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=500)
    meeting_host: str = "127.0.0.1"
    meeting_port: int = Field(default=50051, ge=0, le=65535)
    meeting_metrics_port: int = Field(default=9151, ge=0, le=65535)
    upload_limit_bytes: int = Field(default=2 * GIB, ge=1)
    gpu_proxy_target: str = "127.0.0.1:50052"
    grace_s: float = Field(default=10.0, ge=0)
    health_interval_s: float = Field(default=2.0, gt=0)
    stream_queue_size: int = Field(default=256, ge=1)
    ready_timeout_s: float = Field(default=60.0, gt=0)
    gpu_proxy_cert: Path | None = None
    gpu_proxy_key: Path | None = None
    gpu_proxy_ca: Path | None = None
    gpu_proxy_tls_name: str = ""
    pipeline_workers: int = Field(default=2, ge=0, le=64)
    pipeline_poll_interval_s: float = Field(default=1.0, gt=0)
    pipeline_lease_s: float = Field(default=8.0, gt=0)
    pipeline_max_attempts: int = Field(default=5, ge=1)
    pipeline_backoff_initial_s: float = Field(default=5.0, gt=0)
    pipeline_backoff_max_s: float = Field(default=300.0, gt=0)
    pipeline_gpu_wait_max_s: float = Field(default=6 * 3600.0, gt=0)
    pipeline_gpu_wait_retry_max_s: float = Field(default=30.0, gt=0)
    pipeline_gpu_deadline_base_s: float = Field(default=60.0, gt=0)
    pipeline_gpu_deadline_per_audio_s: float = Field(default=1.0, ge=0)
    pipeline_live_max_s: float = Field(default=4 * 3600.0, gt=0)
    pipeline_live_follow_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _pool_bounds(self) -> MeetingServiceSettings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("MESH_DB_POOL_MIN must not exceed MESH_DB_POOL_MAX")
        return self

    def gpu_identity(self) -> KeyPair:
        """Returns the certificate and key this service presents to gpu_proxy."""
        certs = self.data_dir / "certs"
        return KeyPair(
            self.gpu_proxy_cert or certs / "meeting-service.pem",
            self.gpu_proxy_key or certs / "meeting-service.key",
        )

    def gpu_ca(self) -> Path:
        """Returns the CA file gpu_proxy's certificate is checked against."""
        return self.gpu_proxy_ca or self.data_dir / "certs" / "ca.pem"

    @property
    def meeting_address(self) -> str:
        """The `host:port` the gRPC server binds."""
        return f"{self.meeting_host}:{self.meeting_port}"
