"""The service's parts, wired once over a pool: the only module that knows them all."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from gpu_client import FleetCapabilities, GpuConnection
from meeting_service.api_keys.repository import ApiKeysRepository
from meeting_service.api_keys.service import ApiKeysService
from meeting_service.jobs.repository import JobsRepository
from meeting_service.live.repository import LiveLeasesRepository
from meeting_service.live.session import LiveParts, LiveTranscriber
from meeting_service.live.sweeper import LiveSweeper
from meeting_service.meetings.repository import MeetingsRepository
from meeting_service.meetings.service import MeetingsService, SupportedLanguages
from meeting_service.processing.job import Deadlines, JobParts
from meeting_service.quotas.limits import Quotas
from meeting_service.quotas.repository import QuotasRepository
from meeting_service.recordings.completion import RecordingCompletion
from meeting_service.recordings.repository import UploadsRepository
from meeting_service.recordings.s3_store import S3Options, S3Store
from meeting_service.recordings.store import PostgresStore, RecordingStore
from meeting_service.recordings.uploads import UploadsService
from meeting_service.settings import MeetingServiceSettings
from meeting_service.transcripts.event_log import EventLog
from meeting_service.transcripts.hub import EventHub
from meeting_service.transcripts.reader import TranscriptReader
from meeting_service.transcripts.repository import EventsRepository, UserEventsRepository
from meeting_service.transcripts.search import TranscriptSearch
from meeting_service.transcripts.search_repository import SearchRepository
from meeting_service.transcripts.speakers import SpeakerNaming
from meeting_service.transcripts.writer import TranscriptWriter
from meeting_service.voices.recorded import RecordedVoices, SampleLimits
from meeting_service.voices.repository import VoicesRepository
from meeting_service.voices.service import VoicesService
from meeting_service.webhooks.delivery import DeliveryPolicy, WebhookDispatcher
from meeting_service.webhooks.outbox import WebhookOutbox
from meeting_service.webhooks.repository import WebhooksRepository
from meeting_service.webhooks.service import WebhooksService
from meeting_service.webhooks.signing import SecretBox
from mesh_common.keepalive import channel_options
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
        recordings: Where recordings' bytes are kept (closed by the server, which also
            runs its sweep).
        api_keys: API keys (owner-scoped management, and the check of each call's key).
        search: Full-text search across the caller's transcripts.
        live_sweeper: Finalises dropped live meetings not resumed in time (started by the
            server).
        speakers: Speaker names (owner-scoped).
        voices: Voice profiles (owner-scoped).
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
    recordings: RecordingStore
    api_keys: ApiKeysService
    search: TranscriptSearch
    live_sweeper: LiveSweeper
    speakers: SpeakerNaming
    voices: VoicesService
    completion: RecordingCompletion


def recording_store(
    pool: asyncpg.Pool, uploads: UploadsRepository, settings: MeetingServiceSettings
) -> RecordingStore:
    """The store `settings.storage` names."""
    if settings.storage == "postgres":
        return PostgresStore(pool, uploads)
    secret = settings.s3_secret_access_key
    return S3Store(
        pool,
        uploads,
        S3Options(
            bucket=settings.s3_bucket,
            endpoint=settings.s3_endpoint,
            region=settings.s3_region,
            path_style=settings.s3_path_style,
            prefix=settings.s3_prefix,
            part_bytes=settings.s3_part_bytes,
            abandoned_after_s=settings.s3_abandoned_after_s,
            timeout_s=settings.s3_timeout_s,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        ),
    )


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
    user_events = UserEventsRepository()
    jobs = JobsRepository()
    webhooks = WebhooksRepository()
    box = SecretBox(settings.webhook_sealing_key())
    log = EventLog(meetings, events, WebhookOutbox(meetings, webhooks))
    hub = EventHub(
        dsn,
        pool,
        events,
        user_events,
        queue_size=settings.stream_queue_size,
        check_interval=settings.health_interval_s,
        connect_timeout=settings.db_connect_timeout_s,
    )
    transcripts = TranscriptReader(pool, meetings, events, user_events, hub)
    writer = TranscriptWriter(pool, events)
    completion = RecordingCompletion(meetings, uploads, jobs, log)
    store = recording_store(pool, uploads, settings)
    quotas = Quotas(
        QuotasRepository(),
        concurrent_jobs=settings.quota_concurrent_jobs,
        live_sessions=settings.quota_live_sessions,
        uploads_per_minute=settings.quota_uploads_per_minute,
        stored_bytes=settings.quota_stored_bytes,
    )
    gpu = GpuConnection(
        settings.gpu_proxy_target,
        settings.gpu_identity(),
        settings.gpu_ca(),
        settings.gpu_proxy_tls_name or None,
        channel_options(settings),
        telemetry.trace_channel,
        settings.grpc_connect_timeout_s,
    )
    live_parts = LiveParts(
        pool=pool,
        meetings=meetings,
        uploads=uploads,
        store=store,
        events=events,
        leases=LiveLeasesRepository(),
        completion=completion,
        log=log,
        writer=writer,
        transcripts=transcripts,
        gpu=gpu,
        max_s=settings.pipeline_live_max_s,
        follow_s=settings.pipeline_live_follow_s,
        lease_s=settings.live_lease_s,
        grace_s=settings.live_resume_grace_s,
        quotas=quotas,
    )
    voices = VoicesRepository()
    speakers = SpeakerNaming(pool, meetings, events, log, writer)
    processing = JobParts(
        pool=pool,
        meetings=meetings,
        uploads=uploads,
        store=store,
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
        voice_match_threshold=settings.voice_match_threshold,
    )
    return Services(
        pool=pool,
        hub=hub,
        meetings=MeetingsService(pool, meetings, log, store, _languages(FleetCapabilities(gpu))),
        uploads=UploadsService(
            pool,
            meetings,
            uploads,
            log,
            completion,
            store,
            limit_bytes=settings.upload_limit_bytes,
            quotas=quotas,
        ),
        transcripts=transcripts,
        live=LiveTranscriber(live_parts),
        jobs=jobs,
        gpu=gpu,
        processing=processing,
        search=TranscriptSearch(pool, SearchRepository()),
        webhooks=WebhooksService(pool, webhooks, box, allow_private=settings.webhook_allow_private),
        webhook_delivery=WebhookDispatcher(pool, webhooks, box, _delivery_policy(settings)),
        recordings=store,
        api_keys=ApiKeysService(pool, ApiKeysRepository()),
        live_sweeper=LiveSweeper(live_parts),
        speakers=speakers,
        voices=VoicesService(
            pool,
            meetings,
            voices,
            RecordedVoices(
                gpu,
                processing.deadlines.for_audio,
                SampleLimits(settings.voice_sample_min_speech_s, settings.voice_sample_max_s),
            ),
        ),
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
