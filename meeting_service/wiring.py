"""The service's parts, wired once over a pool: the only module that knows them all."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gpu_client import FleetCapabilities, GpuConnection
from meeting_service.jobs.repository import JobsRepository
from meeting_service.live.session import LiveParts, LiveTranscriber
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.meetings.service import MeetingsService, SupportedLanguages
from meeting_service.processing.job import Deadlines, JobParts
from meeting_service.recordings.completion import RecordingCompletion
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.recordings.uploads import UploadsService
from meeting_service.settings import MeetingServiceSettings
from meeting_service.transcripts.event_log import EventLog
from meeting_service.transcripts.hub import EventHub
from meeting_service.transcripts.reader import TranscriptReader
from meeting_service.transcripts.repository import EventsRepository
from meeting_service.transcripts.speakers import SpeakerNaming
from meeting_service.transcripts.writer import TranscriptWriter
from meeting_service.voices.repository import VoicesRepository
from meeting_service.voices.service import VoicesService
from mesh_common.telemetry import Telemetry


@dataclass(frozen=True)
class Services:
    """What the servicer and the server use, built by `build_services`.

    Attributes:
        pool: The asyncpg pool.
        hub: The LISTEN fan-out (started by the server).
        meetings: Meeting rules (owner-scoped).
        uploads: Upload rules (owner-scoped).
        transcripts: Transcript reads and live streams (owner-scoped).
        live: LiveTranscribe sessions.
        jobs: SQL for jobs (the server's job gauges).
        gpu: The channel to gpu_proxy (opened on first use; closed by the server).
        processing: What the job workers use.
        speakers: Speaker names (owner-scoped).
        voices: Voice profiles (owner-scoped).
    """

    pool: asyncpg.Pool
    hub: EventHub
    meetings: MeetingsService
    uploads: UploadsService
    transcripts: TranscriptReader
    live: LiveTranscriber
    jobs: JobsRepository
    gpu: GpuConnection
    processing: JobParts
    speakers: SpeakerNaming
    voices: VoicesService


def _languages(fleet: FleetCapabilities) -> SupportedLanguages:
    async def supported() -> list[str] | None:
        capabilities = await fleet.get()
        return None if capabilities is None else list(capabilities.languages)

    return supported


def build_services(
    pool: asyncpg.Pool, dsn: str, settings: MeetingServiceSettings, telemetry: Telemetry
) -> Services:
    """Wires repositories, aggregates and orchestrators over a pool.

    Args:
        pool: The pool.
        dsn: The database DSN (the event hub opens its own LISTEN connection).
        settings: The settings.
        telemetry: The service's telemetry (tracing of GPU calls and jobs).

    Returns:
        The services; the hub is not started yet.
    """
    meetings = MeetingsRepository()
    uploads = UploadsRepository()
    events = EventsRepository()
    jobs = JobsRepository()
    log = EventLog(meetings, events)
    hub = EventHub(
        dsn,
        pool,
        events,
        queue_size=settings.stream_queue_size,
        check_interval=settings.health_interval_s,
    )
    transcripts = TranscriptReader(pool, meetings, events, hub)
    writer = TranscriptWriter(pool, events)
    completion = RecordingCompletion(meetings, uploads, jobs, log)
    gpu = GpuConnection(
        settings.gpu_proxy_target,
        settings.gpu_identity(),
        settings.gpu_ca(),
        settings.gpu_proxy_tls_name or None,
        telemetry.trace_channel,
    )
    live = LiveTranscriber(
        LiveParts(
            pool=pool,
            meetings=meetings,
            uploads=uploads,
            completion=completion,
            log=log,
            writer=writer,
            transcripts=transcripts,
            gpu=gpu,
            max_s=settings.pipeline_live_max_s,
            follow_s=settings.pipeline_live_follow_s,
        )
    )
    voices = VoicesRepository()
    speakers = SpeakerNaming(pool, meetings, events, log, writer)
    processing = JobParts(
        pool=pool,
        meetings=meetings,
        uploads=uploads,
        jobs=jobs,
        log=log,
        transcripts=transcripts,
        writer=writer,
        gpu=gpu,
        voices=voices,
        speakers=speakers,
        deadlines=Deadlines(
            settings.pipeline_gpu_deadline_base_s, settings.pipeline_gpu_deadline_per_audio_s
        ),
        tracer=telemetry.tracer(),
    )
    return Services(
        pool=pool,
        hub=hub,
        meetings=MeetingsService(pool, meetings, log, _languages(FleetCapabilities(gpu))),
        uploads=UploadsService(
            pool, meetings, uploads, log, completion, limit_bytes=settings.upload_limit_bytes
        ),
        transcripts=transcripts,
        live=live,
        jobs=jobs,
        gpu=gpu,
        processing=processing,
        speakers=speakers,
        voices=VoicesService(pool, meetings, voices),
    )
