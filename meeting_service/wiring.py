"""The service's parts, wired once over a pool: the only module that knows them all."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gpu_client import GpuConnection
from meeting_service.jobs.repository import JobsRepository
from meeting_service.live.session import LiveParts, LiveTranscriber
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.meetings.service import MeetingsService
from meeting_service.processing.job import Deadlines, JobParts
from meeting_service.recordings.completion import RecordingCompletion
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.recordings.uploads import UploadsService
from meeting_service.settings import MeetingServiceSettings
from meeting_service.transcripts.event_log import EventLog
from meeting_service.transcripts.hub import EventHub
from meeting_service.transcripts.reader import TranscriptReader
from meeting_service.transcripts.repository import EventsRepository
from meeting_service.transcripts.writer import TranscriptWriter
from meeting_service.webhooks.delivery import DeliveryPolicy, WebhookDispatcher
from meeting_service.webhooks.outbox import WebhookOutbox
from meeting_service.webhooks.repository import WebhooksRepository
from meeting_service.webhooks.service import WebhooksService
from meeting_service.webhooks.signing import SecretBox
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
        webhooks: Webhook endpoints and deliveries (owner-scoped).
        webhook_delivery: The delivery loops (started by the server).
        completion: Completes recordings; the server's job workers wake on its jobs.
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
    webhooks: WebhooksService
    webhook_delivery: WebhookDispatcher
    completion: RecordingCompletion


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
    webhooks = WebhooksRepository()
    box = SecretBox(settings.webhook_sealing_key())
    log = EventLog(meetings, events, WebhookOutbox(meetings, webhooks))
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
    processing = JobParts(
        pool=pool,
        meetings=meetings,
        uploads=uploads,
        jobs=jobs,
        log=log,
        transcripts=transcripts,
        writer=writer,
        gpu=gpu,
        deadlines=Deadlines(
            settings.pipeline_gpu_deadline_base_s, settings.pipeline_gpu_deadline_per_audio_s
        ),
        tracer=telemetry.tracer(),
    )
    return Services(
        pool=pool,
        hub=hub,
        meetings=MeetingsService(pool, meetings, log),
        uploads=UploadsService(
            pool, meetings, uploads, log, completion, limit_bytes=settings.upload_limit_bytes
        ),
        transcripts=transcripts,
        live=live,
        jobs=jobs,
        gpu=gpu,
        processing=processing,
        webhooks=WebhooksService(pool, webhooks, box, allow_private=settings.webhook_allow_private),
        webhook_delivery=WebhookDispatcher(pool, webhooks, box, _delivery_policy(settings)),
        completion=completion,
    )


def _delivery_policy(settings: MeetingServiceSettings) -> DeliveryPolicy:
    return DeliveryPolicy(
        workers=settings.webhook_workers,
        poll_interval_s=settings.webhook_poll_interval_s,
        timeout_s=settings.webhook_timeout_s,
        backoff_initial_s=settings.webhook_backoff_initial_s,
        backoff_max_s=settings.webhook_backoff_max_s,
        retry_for_s=settings.webhook_retry_for_s,
        disable_after=settings.webhook_disable_after,
        allow_private=settings.webhook_allow_private,
    )
