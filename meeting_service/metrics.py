"""The meeting service's own Prometheus series, beside the per-RPC ones of `Telemetry`.

Served on `meeting_metrics_port` at `/metrics`:

- `mesh_upload_bytes_total`: recording bytes received by UploadAudio;
- `mesh_jobs{status}`: processing jobs QUEUED, RUNNING and FAILED, and
  `mesh_oldest_queued_job_age_seconds`: how long the longest-waiting due job has waited;
  both read from the database every health interval, so they hold for the whole
  deployment, not only this replica;
- `mesh_transcript_streams_open`: StreamTranscript and LiveTranscribe calls being served.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from meeting_service.jobs.repository import JobStats


class MeetingMetrics:
    """The series above, registered in one service's registry.

    Args:
        registry: The service's registry (`Telemetry.registry`).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.upload_bytes = Counter(
            "mesh_upload_bytes", "Recording bytes received by UploadAudio.", registry=registry
        )
        self.jobs = Gauge(
            "mesh_jobs",
            "Processing jobs by status (whole deployment).",
            ["status"],
            registry=registry,
        )
        self.oldest_queued_age = Gauge(
            "mesh_oldest_queued_job_age_seconds",
            "Seconds the longest-waiting due job has been queued (0 when none waits).",
            registry=registry,
        )
        self.streams_open = Gauge(
            "mesh_transcript_streams_open",
            "StreamTranscript and LiveTranscribe calls being served.",
            registry=registry,
        )

    def observe_jobs(self, stats: JobStats) -> None:
        """Sets the job gauges from a fresh count."""
        for status, count in stats.counts.items():
            self.jobs.labels(status.value).set(count)
        self.oldest_queued_age.set(stats.oldest_queued_age_s)
