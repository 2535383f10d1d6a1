"""Settings of the meeting service, from the environment (prefix `MESH_`) or `.env`."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator

from meeting_service.voices.matching import DEFAULT_THRESHOLD
from mesh_common.settings import CommonSettings
from mesh_common.tls import KeyPair

GIB = 1024**3
WEBHOOK_KEY_BYTES = 32


def _base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


class MeetingServiceSettings(CommonSettings):
    """What the meeting service reads.

    Attributes:
        database_url: PostgreSQL DSN, read from `DATABASE_URL` (no prefix, the convention
            every hosting platform uses). Absent means: start the embedded PostgreSQL in
            `<data_dir>/postgres`.
        db_pool_min: Connections the pool keeps open.
        db_pool_max: Most connections the pool opens.
        db_query_timeout_s: Longest a query may take (a statement the server does not
            answer, the server's network silent): then it is cancelled and the call answers
            UNAVAILABLE. A database that answers nothing is a lost database within this
            bound. Migrations, on a connection of their own, have none.
        db_connect_timeout_s: Longest a new connection may take to be established.
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
        live_resume_grace_s: How long a LIVE meeting whose stream dropped (without the
            client ending it) waits for a new stream to resume it before it is finalised
            (docs/live.md).
        live_lease_s: How long a live session's hold on its meeting lasts without being
            renewed (it is renewed every third of that); a new stream takes a meeting over
            from a session whose replica died once this has passed.
        webhook_workers: Webhook deliveries one process makes at once; 0 makes none (other
            replicas deliver). See docs/webhooks.md.
        webhook_poll_interval_s: How often an idle delivery loop looks for a due delivery.
        webhook_timeout_s: Longest delivery attempt.
        webhook_backoff_initial_s: Ceiling of the first retry's delay (exponential, full
            jitter).
        webhook_backoff_max_s: Highest ceiling of a retry's delay.
        webhook_retry_for_s: How long a delivery is retried before it is FAILED.
        webhook_disable_after: Consecutive failed attempts that disable an endpoint.
        webhook_allow_private: Let endpoints resolve to loopback, private and link-local
            addresses (the dev mesh does; a shared server should not).
        webhook_secret_key: Base64 of 32 bytes that seals the endpoints' signing secrets
            in the database (AES-GCM); unset stores them unsealed.
        storage: Where recordings' bytes are kept: "postgres" (rows of the database) or
            "s3" (an S3-compatible object store; docs/meeting_service.md).
        s3_endpoint: The object store's URL; "" for AWS's endpoint of `s3_region`.
        s3_bucket: The bucket holding the recordings (it must exist).
        s3_region: The region requests are signed for.
        s3_path_style: Address the bucket in the URL's path (most S3-compatible servers).
        s3_prefix: Start of every recording's object key.
        s3_part_bytes: Size of the parts a recording is uploaded in (the memory one upload
            holds; S3 wants at least 5 MiB).
        s3_access_key_id: Credentials; unset uses the standard AWS chain (`AWS_ACCESS_KEY_ID`
            and `AWS_SECRET_ACCESS_KEY`, `AWS_SHARED_CREDENTIALS_FILE`, a pod or instance role).
        s3_secret_access_key: Its secret.
        s3_abandoned_after_s: Age after which an upload nobody writes to is aborted (its
            recording then starts again from offset 0).
        s3_sweep_interval_s: How often abandoned uploads are looked for.
        s3_timeout_s: Longest wait to connect to the object store, for each read of an
            answer, and for sent bytes to be acknowledged; a request is tried 3 times in
            all before it fails.
        seal_sweep_interval_s: How often recordings left sealed by a sealer that is
            gone (a killed replica, a cancelled call) are looked for and completed.
        quota_concurrent_jobs: Jobs of one caller processed at once; more wait queued.
            0: no limit. (Quotas: docs/security.md.)
        quota_live_sessions: Live sessions of one caller at once; 0: no limit.
        quota_uploads_per_minute: New uploads one caller may start per minute; 0: no
            limit.
        quota_stored_bytes: Bytes one caller's recordings may hold; 0: no limit.
        voice_sample_min_speech_s: Least speech a recording of a voice alone must hold to
            make a voice profile's sample (less embeds too unreliably to name anyone).
        voice_sample_max_s: Longest such recording (its decoded audio is held whole).
        voice_match_threshold: Lowest cosine similarity between a speaker's voice and a
            profile's that names the speaker after it. Higher names fewer strangers and
            misses more of the enrolled; how it was calibrated is in docs/engines.md.
    """

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "database_url")
    )
    db_pool_min: int = Field(default=2, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=500)
    db_query_timeout_s: float = Field(default=15.0, gt=0)
    db_connect_timeout_s: float = Field(default=10.0, gt=0)
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
    live_resume_grace_s: float = Field(default=30.0, ge=0)
    live_lease_s: float = Field(default=10.0, gt=0)
    webhook_workers: int = Field(default=4, ge=0, le=64)
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=60)
    webhook_backoff_initial_s: float = Field(default=10.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_retry_for_s: float = Field(default=24 * 3600.0, ge=0)
    webhook_disable_after: int = Field(default=100, ge=1)
    webhook_allow_private: bool = False
    webhook_secret_key: SecretStr | None = None
    storage: Literal["postgres", "s3"] = "postgres"
    s3_endpoint: str = ""
    s3_bucket: str = "meeting-mesh-recordings"
    s3_region: str = "us-east-1"
    s3_path_style: bool = False
    s3_prefix: str = "recordings/"
    s3_part_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024, le=5 * GIB)
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_abandoned_after_s: float = Field(default=24 * 3600.0, gt=0)
    s3_sweep_interval_s: float = Field(default=3600.0, gt=0)
    s3_timeout_s: float = Field(default=15.0, gt=0)
    seal_sweep_interval_s: float = Field(default=30.0, gt=0)
    quota_concurrent_jobs: int = Field(default=0, ge=0)
    quota_live_sessions: int = Field(default=0, ge=0)
    quota_uploads_per_minute: int = Field(default=0, ge=0)
    quota_stored_bytes: int = Field(default=0, ge=0)
    voice_sample_min_speech_s: float = Field(default=3.0, ge=0)
    voice_sample_max_s: float = Field(default=120.0, gt=0)
    voice_match_threshold: float = Field(default=DEFAULT_THRESHOLD, gt=0, le=1)

    @model_validator(mode="after")
    def _pool_bounds(self) -> MeetingServiceSettings:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("MESH_DB_POOL_MIN must not exceed MESH_DB_POOL_MAX")
        return self

    @field_validator("webhook_secret_key")
    @classmethod
    def _sealing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(_base64(value.get_secret_value())) != WEBHOOK_KEY_BYTES:
            raise ValueError(f"must be the base64 of {WEBHOOK_KEY_BYTES} bytes")
        return value

    def webhook_sealing_key(self) -> bytes | None:
        """Returns the key that seals webhook secrets, or None to store them unsealed."""
        if self.webhook_secret_key is None:
            return None
        return _base64(self.webhook_secret_key.get_secret_value())

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
