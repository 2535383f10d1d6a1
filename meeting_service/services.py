"""The service's parts, wired once over a pool: what servicers and the pipeline use."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from opentelemetry import trace

from meeting_service.domain.event_hub import EventHub
from meeting_service.domain.event_log import EventLog
from meeting_service.domain.meetings import MeetingsService
from meeting_service.domain.transcript import TranscriptService, TranscriptWriter
from meeting_service.domain.uploads import UploadsService
from meeting_service.live import LiveDependencies, LiveTranscriber
from meeting_service.pipeline.gpu import GpuConnection
from meeting_service.repositories.events import EventsRepository
from meeting_service.repositories.jobs import JobsRepository
from meeting_service.repositories.meetings import MeetingsRepository
from meeting_service.repositories.uploads import UploadsRepository
from meeting_service.settings import MeetingServiceSettings
from mesh_common.telemetry import Telemetry


@dataclass(frozen=True)
class Services:
    """Everything above the pool, built by `build_services`.

    Attributes:
        pool: The asyncpg pool.
        hub: The LISTEN fan-out (started by the server).
        meetings: Meeting rules (owner-scoped).
        uploads: Upload rules (owner-scoped).
        transcripts: Transcript reads and live streams (owner-scoped).
        writer: Transcript writes for the pipeline (internal, not owner-scoped).
        event_log: Event writes inside a caller's transaction.
        meetings_repo: SQL for meetings (internal reads, e.g. language of a job's meeting).
        uploads_repo: SQL for recordings (`iter_chunks` reads one back).
        jobs_repo: SQL for processing jobs.
        gpu: The channel to gpu_proxy (opened on first use; closed by the server).
        live: LiveTranscribe sessions.
        tracer: The service's tracer (the pipeline's spans).
    """

    pool: asyncpg.Pool
    hub: EventHub
    meetings: MeetingsService
    uploads: UploadsService
    transcripts: TranscriptService
    writer: TranscriptWriter
    event_log: EventLog
    meetings_repo: MeetingsRepository
    uploads_repo: UploadsRepository
    jobs_repo: JobsRepository
    gpu: GpuConnection
    live: LiveTranscriber
    tracer: trace.Tracer


def build_services(
    pool: asyncpg.Pool, dsn: str, settings: MeetingServiceSettings, telemetry: Telemetry
) -> Services:
    """Wires repositories and domain services over a pool.

    Args:
        pool: The pool.
        dsn: The database DSN (the event hub opens its own LISTEN connection).
        settings: The settings.
        telemetry: The service's telemetry (tracing of GPU calls and jobs).

    Returns:
        The services; the hub is not started yet.
    """
    meetings_repo = MeetingsRepository()
    uploads_repo = UploadsRepository()
    events_repo = EventsRepository()
    jobs_repo = JobsRepository()
    log = EventLog(meetings_repo, events_repo)
    hub = EventHub(
        dsn,
        pool,
        events_repo,
        queue_size=settings.stream_queue_size,
        check_interval=settings.health_interval_s,
    )
    transcripts = TranscriptService(pool, meetings_repo, events_repo, hub)
    writer = TranscriptWriter(pool, log)
    gpu = GpuConnection.from_settings(settings, telemetry.trace_channel)
    live = LiveTranscriber(
        LiveDependencies(
            pool=pool,
            meetings=meetings_repo,
            uploads=uploads_repo,
            jobs=jobs_repo,
            log=log,
            writer=writer,
            transcripts=transcripts,
            gpu=gpu,
            max_seconds=settings.pipeline_live_max_s,
            follow_seconds=settings.pipeline_live_follow_s,
        )
    )
    return Services(
        pool=pool,
        hub=hub,
        meetings=MeetingsService(pool, meetings_repo, log),
        uploads=UploadsService(
            pool,
            meetings_repo,
            uploads_repo,
            jobs_repo,
            log,
            limit_bytes=settings.upload_limit_bytes,
        ),
        transcripts=transcripts,
        writer=writer,
        event_log=log,
        meetings_repo=meetings_repo,
        uploads_repo=uploads_repo,
        jobs_repo=jobs_repo,
        gpu=gpu,
        live=live,
        tracer=telemetry.tracer(),
    )
