"""`meeting.v1.MeetingService` over grpc.aio: a thin layer over the aggregates.

Each method takes the caller from the auth interceptor, calls one domain method and builds
the response message (this module is the only place that builds them); domain errors
become rich statuses in one place (`_errors`), and a lost database becomes UNAVAILABLE
rather than UNKNOWN.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from contract_errors.meeting import MeetingError, unavailable
from gen.meeting.v1 import (
    api_keys_pb2,
    exports_pb2,
    meeting_pb2,
    meeting_service_pb2,
    meeting_service_pb2_grpc,
    search_pb2,
    speakers_pb2,
    user_events_pb2,
    voice_audio_pb2,
    voices_pb2,
    webhooks_pb2,
)
from meeting_service.api_keys.messages import api_key_message
from meeting_service.db.database import CONNECTION_ERRORS
from meeting_service.meetings.messages import duration_from_us, timestamp
from meeting_service.metrics import MeetingMetrics
from meeting_service.recordings.s3_store import S3_ERRORS
from meeting_service.webhooks.events import message_id
from meeting_service.webhooks.repository import DeliveryStatus, EndpointRow
from meeting_service.webhooks.service import Delivery
from meeting_service.wiring import Services
from mesh_common.errors import MeshError, abort
from mesh_common.grpc_server import current_principal
from mesh_common.logging import logger
from mesh_common.telemetry import current_traceparent

_DELIVERY_STATUS = {
    DeliveryStatus.PENDING: webhooks_pb2.WEBHOOK_DELIVERY_STATUS_PENDING,
    DeliveryStatus.SUCCEEDED: webhooks_pb2.WEBHOOK_DELIVERY_STATUS_SUCCEEDED,
    DeliveryStatus.FAILED: webhooks_pb2.WEBHOOK_DELIVERY_STATUS_FAILED,
}
SERVICE_DESCRIPTOR = meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"]
SERVICE_NAME = SERVICE_DESCRIPTOR.full_name
_TRACEPARENT = "traceparent"

Ctx = grpc.aio.ServicerContext[Any, Any]


class NotReady(Exception):
    """The service has no database yet (still starting, or its database never came up)."""


@contextlib.asynccontextmanager
async def _errors(context: Ctx) -> AsyncIterator[None]:
    try:
        yield
    except MeshError as error:
        await abort(context, error)
    except NotReady:
        await abort(context, unavailable("the meeting service is starting; retry shortly"))
    except CONNECTION_ERRORS as error:
        logger.bind(error=repr(error)).warning("database unavailable during a call")
        await abort(context, unavailable("the database is unavailable; retry shortly"))
    except S3_ERRORS as error:
        logger.bind(error=repr(error)).warning("object storage unavailable during a call")
        await abort(context, unavailable("the object storage is unavailable; retry shortly"))
    except grpc.aio.AbortError:
        raise  # the call already ended with its status
    except Exception:
        # A bug: the details go to the log, never to the caller (grpc's own answer would
        # name the exception and its message).
        logger.exception("unexpected error serving a call")
        await abort(
            context,
            MeetingError(
                meeting_pb2.ERROR_REASON_INTERNAL,
                "the meeting service failed on this call; the error was logged",
            ),
        )


class MeetingServicer(meeting_service_pb2_grpc.MeetingServiceServicer):
    """Serves `meeting.v1.MeetingService`.

    Args:
        services: Returns the wired services, or raises `NotReady` before the database is
            up (the server starts answering health checks before that).
        metrics: The service's metrics (upload bytes, open streams).
    """

    def __init__(self, services: Callable[[], Services], metrics: MeetingMetrics) -> None:
        self._services = services
        self._metrics = metrics

    async def CreateMeeting(  # noqa: D102
        self, request: meeting_service_pb2.CreateMeetingRequest, context: Ctx
    ) -> meeting_service_pb2.CreateMeetingResponse:
        async with _errors(context):
            meeting = await self._services().meetings.create(
                _owner(), request.meeting, request.request_id
            )
            return meeting_service_pb2.CreateMeetingResponse(meeting=meeting)

    async def GetMeeting(  # noqa: D102
        self, request: meeting_service_pb2.GetMeetingRequest, context: Ctx
    ) -> meeting_service_pb2.GetMeetingResponse:
        async with _errors(context):
            meeting = await self._services().meetings.get(_owner(), request.meeting_id)
            return meeting_service_pb2.GetMeetingResponse(meeting=meeting)

    async def ListMeetings(  # noqa: D102
        self, request: meeting_service_pb2.ListMeetingsRequest, context: Ctx
    ) -> meeting_service_pb2.ListMeetingsResponse:
        async with _errors(context):
            page, token = await self._services().meetings.list(
                _owner(), request.page_size, request.page_token
            )
            return meeting_service_pb2.ListMeetingsResponse(meetings=page, next_page_token=token)

    async def UpdateMeeting(  # noqa: D102
        self, request: meeting_service_pb2.UpdateMeetingRequest, context: Ctx
    ) -> meeting_service_pb2.UpdateMeetingResponse:
        async with _errors(context):
            meeting = await self._services().meetings.update(
                _owner(), request.meeting, list(request.update_mask.paths)
            )
            return meeting_service_pb2.UpdateMeetingResponse(meeting=meeting)

    async def DeleteMeeting(  # noqa: D102
        self, request: meeting_service_pb2.DeleteMeetingRequest, context: Ctx
    ) -> meeting_service_pb2.DeleteMeetingResponse:
        async with _errors(context):
            await self._services().meetings.delete(_owner(), request.meeting_id)
            return meeting_service_pb2.DeleteMeetingResponse()

    async def UploadAudio(  # noqa: D102
        self,
        request_iterator: AsyncIterator[meeting_service_pb2.UploadAudioRequest],
        context: Ctx,
    ) -> meeting_service_pb2.UploadAudioResponse:
        async with _errors(context):
            uploads = self._services().uploads
            # Accepting the call before storing a byte tells the gateway's channel that
            # this replica started it, so the channel stops keeping its messages for a
            # retry and never replays it elsewhere (gateway/channel.py).
            await context.send_initial_metadata(())
            result = await uploads.upload(
                _owner(),
                request_iterator,
                trace_context=_trace_context(context),
                count_bytes=self._metrics.upload_bytes.inc,
            )
            response = meeting_service_pb2.UploadAudioResponse(
                meeting=result.meeting, stored_size=result.stored_size, complete=result.complete
            )
            if result.duration_us is not None:
                response.duration.CopyFrom(duration_from_us(result.duration_us))
            return response

    async def GetUploadStatus(  # noqa: D102
        self, request: meeting_service_pb2.GetUploadStatusRequest, context: Ctx
    ) -> meeting_service_pb2.GetUploadStatusResponse:
        async with _errors(context):
            upload = await self._services().uploads.status(_owner(), request.meeting_id)
            response = meeting_service_pb2.GetUploadStatusResponse()
            if upload is not None:
                response.stored_size = upload.stored_size
                response.complete = upload.complete
                response.content_type = upload.content_type
                if upload.total_size is not None:
                    response.total_size = upload.total_size
            return response

    async def StreamTranscript(  # noqa: D102
        self, request: meeting_service_pb2.StreamTranscriptRequest, context: Ctx
    ) -> AsyncIterator[meeting_service_pb2.StreamTranscriptResponse]:
        async with _errors(context):
            events = self._services().transcripts.stream(
                _owner(), request.meeting_id, request.after_sequence
            )
            with self._metrics.streams_open.track_inprogress():
                async with contextlib.aclosing(events):
                    async for event in events:
                        yield meeting_service_pb2.StreamTranscriptResponse(event=event)

    async def GetTranscript(  # noqa: D102
        self, request: meeting_service_pb2.GetTranscriptRequest, context: Ctx
    ) -> meeting_service_pb2.GetTranscriptResponse:
        async with _errors(context):
            transcript = await self._services().transcripts.get_transcript(
                _owner(), request.meeting_id
            )
            return meeting_service_pb2.GetTranscriptResponse(
                segments=transcript.segments,
                speakers=transcript.speakers,
                speaker_names=transcript.speaker_names,
                last_sequence=transcript.last_sequence,
                status=transcript.status,
            )

    async def GetSummary(  # noqa: D102
        self, request: meeting_service_pb2.GetSummaryRequest, context: Ctx
    ) -> meeting_service_pb2.GetSummaryResponse:
        async with _errors(context):
            summary = await self._services().transcripts.get_summary(_owner(), request.meeting_id)
            return meeting_service_pb2.GetSummaryResponse(summary=summary)

    async def LiveTranscribe(  # noqa: D102
        self,
        request_iterator: AsyncIterator[meeting_service_pb2.LiveTranscribeRequest],
        context: Ctx,
    ) -> AsyncIterator[meeting_service_pb2.LiveTranscribeResponse]:
        async with _errors(context):
            events = self._services().live.transcribe(
                _owner(), request_iterator, trace_context=_trace_context(context)
            )
            with self._metrics.streams_open.track_inprogress():
                async with contextlib.aclosing(events):
                    async for event in events:
                        yield meeting_service_pb2.LiveTranscribeResponse(event=event)

    async def ExportTranscript(  # noqa: D102
        self, request: exports_pb2.ExportTranscriptRequest, context: Ctx
    ) -> exports_pb2.ExportTranscriptResponse:
        async with _errors(context):
            export = await self._services().transcripts.export(
                _owner(),
                request.meeting_id,
                request.format,
                with_speakers=not request.omit_speakers,
            )
            return exports_pb2.ExportTranscriptResponse(
                content_type=export.content_type, data=export.data, filename=export.filename
            )

    # --- webhooks ---

    async def CreateWebhook(  # noqa: D102
        self, request: webhooks_pb2.CreateWebhookRequest, context: Ctx
    ) -> webhooks_pb2.CreateWebhookResponse:
        async with _errors(context):
            row, secret = await self._services().webhooks.create(_owner(), request.webhook)
            return webhooks_pb2.CreateWebhookResponse(webhook=_webhook(row), secret=secret)

    async def ListWebhooks(  # noqa: D102
        self, request: webhooks_pb2.ListWebhooksRequest, context: Ctx
    ) -> webhooks_pb2.ListWebhooksResponse:
        async with _errors(context):
            rows = await self._services().webhooks.endpoints(_owner())
            return webhooks_pb2.ListWebhooksResponse(webhooks=[_webhook(r) for r in rows])

    async def DeleteWebhook(  # noqa: D102
        self, request: webhooks_pb2.DeleteWebhookRequest, context: Ctx
    ) -> webhooks_pb2.DeleteWebhookResponse:
        async with _errors(context):
            await self._services().webhooks.delete(_owner(), request.webhook_id)
            return webhooks_pb2.DeleteWebhookResponse()

    async def ListWebhookDeliveries(  # noqa: D102
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest, context: Ctx
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        async with _errors(context):
            page, token = await self._services().webhooks.deliveries(
                _owner(), request.webhook_id, request.page_size, request.page_token
            )
            return webhooks_pb2.ListWebhookDeliveriesResponse(
                deliveries=[_delivery(d) for d in page], next_page_token=token
            )

    async def RedeliverWebhook(  # noqa: D102
        self, request: webhooks_pb2.RedeliverWebhookRequest, context: Ctx
    ) -> webhooks_pb2.RedeliverWebhookResponse:
        async with _errors(context):
            delivery = await self._services().webhooks.redeliver(
                _owner(), request.webhook_id, request.delivery_id
            )
            return webhooks_pb2.RedeliverWebhookResponse(delivery=_delivery(delivery))

    # --- api keys ---
    async def CreateApiKey(  # noqa: D102
        self, request: api_keys_pb2.CreateApiKeyRequest, context: Ctx
    ) -> api_keys_pb2.CreateApiKeyResponse:
        async with _errors(context):
            row, secret = await self._services().api_keys.create(
                current_principal(), request.api_key.name, list(request.api_key.scopes)
            )
            return api_keys_pb2.CreateApiKeyResponse(api_key=api_key_message(row), secret=secret)

    async def ListApiKeys(  # noqa: D102
        self, request: api_keys_pb2.ListApiKeysRequest, context: Ctx
    ) -> api_keys_pb2.ListApiKeysResponse:
        async with _errors(context):
            rows = await self._services().api_keys.list(_owner())
            return api_keys_pb2.ListApiKeysResponse(api_keys=[api_key_message(r) for r in rows])

    async def RevokeApiKey(  # noqa: D102
        self, request: api_keys_pb2.RevokeApiKeyRequest, context: Ctx
    ) -> api_keys_pb2.RevokeApiKeyResponse:
        async with _errors(context):
            await self._services().api_keys.revoke(_owner(), request.api_key_id)
            return api_keys_pb2.RevokeApiKeyResponse()

    # --- search ---

    async def SearchTranscripts(  # noqa: D102
        self, request: search_pb2.SearchTranscriptsRequest, context: Ctx
    ) -> search_pb2.SearchTranscriptsResponse:
        async with _errors(context):
            hits, token = await self._services().search.search(_owner(), request)
            return search_pb2.SearchTranscriptsResponse(hits=hits, next_page_token=token)

    # --- user events ---

    async def StreamUserEvents(  # noqa: D102
        self, request: user_events_pb2.StreamUserEventsRequest, context: Ctx
    ) -> AsyncIterator[user_events_pb2.StreamUserEventsResponse]:
        async with _errors(context):
            events = self._services().transcripts.stream_user(_owner(), request.after_sequence)
            # Headers now, before any event: the gateway waits for them to know the caller
            # was accepted (a feed can be quiet for long).
            await context.send_initial_metadata(())
            with self._metrics.streams_open.track_inprogress():
                async with contextlib.aclosing(events):
                    async for event in events:
                        yield user_events_pb2.StreamUserEventsResponse(event=event)

    # --- speakers ---

    async def RenameSpeaker(  # noqa: D102
        self, request: speakers_pb2.RenameSpeakerRequest, context: Ctx
    ) -> speakers_pb2.RenameSpeakerResponse:
        async with _errors(context):
            names = await self._services().speakers.rename(
                _owner(), request.meeting_id, request.speaker, request.name
            )
            return speakers_pb2.RenameSpeakerResponse(speaker_names=names)

    async def CreateVoiceProfile(  # noqa: D102
        self, request: voices_pb2.CreateVoiceProfileRequest, context: Ctx
    ) -> voices_pb2.CreateVoiceProfileResponse:
        async with _errors(context):
            profile = await self._services().voices.create(_owner(), request.name, request.sample)
            return voices_pb2.CreateVoiceProfileResponse(voice_profile=profile)

    async def AddVoiceSample(  # noqa: D102
        self, request: voices_pb2.AddVoiceSampleRequest, context: Ctx
    ) -> voices_pb2.AddVoiceSampleResponse:
        async with _errors(context):
            profile = await self._services().voices.add_sample(
                _owner(), request.voice_profile_id, request.sample
            )
            return voices_pb2.AddVoiceSampleResponse(voice_profile=profile)

    async def ListVoiceProfiles(  # noqa: D102
        self, request: voices_pb2.ListVoiceProfilesRequest, context: Ctx
    ) -> voices_pb2.ListVoiceProfilesResponse:
        async with _errors(context):
            profiles = await self._services().voices.list(_owner())
            return voices_pb2.ListVoiceProfilesResponse(voice_profiles=profiles)

    async def RenameVoiceProfile(  # noqa: D102
        self, request: voices_pb2.RenameVoiceProfileRequest, context: Ctx
    ) -> voices_pb2.RenameVoiceProfileResponse:
        async with _errors(context):
            profile = await self._services().voices.rename(
                _owner(), request.voice_profile_id, request.name
            )
            return voices_pb2.RenameVoiceProfileResponse(voice_profile=profile)

    async def DeleteVoiceProfile(  # noqa: D102
        self, request: voices_pb2.DeleteVoiceProfileRequest, context: Ctx
    ) -> voices_pb2.DeleteVoiceProfileResponse:
        async with _errors(context):
            await self._services().voices.delete(_owner(), request.voice_profile_id)
            return voices_pb2.DeleteVoiceProfileResponse()

    async def CreateVoiceProfileFromAudio(  # noqa: D102
        self, request: voice_audio_pb2.CreateVoiceProfileFromAudioRequest, context: Ctx
    ) -> voice_audio_pb2.CreateVoiceProfileFromAudioResponse:
        async with _errors(context):
            profile = await self._services().voices.create_from_audio(
                _owner(), request.name, request.audio
            )
            return voice_audio_pb2.CreateVoiceProfileFromAudioResponse(voice_profile=profile)

    async def AddVoiceAudio(  # noqa: D102
        self, request: voice_audio_pb2.AddVoiceAudioRequest, context: Ctx
    ) -> voice_audio_pb2.AddVoiceAudioResponse:
        async with _errors(context):
            profile = await self._services().voices.add_audio(
                _owner(), request.voice_profile_id, request.audio
            )
            return voice_audio_pb2.AddVoiceAudioResponse(voice_profile=profile)


def _webhook(row: EndpointRow) -> webhooks_pb2.Webhook:
    return webhooks_pb2.Webhook(
        id=str(row.id),
        url=row.url,
        event_types=row.event_types,
        description=row.description,
        disabled=bool(row.disabled_reason),
        disabled_reason=row.disabled_reason,
        consecutive_failures=row.consecutive_failures,
        create_time=timestamp(row.create_time),
    )


def _delivery(delivery: Delivery) -> webhooks_pb2.WebhookDelivery:
    row = delivery.row
    message = webhooks_pb2.WebhookDelivery(
        id=str(row.id),
        webhook_id=str(row.endpoint_id),
        event_id=message_id(row.event_id),
        event_type=row.event_type,
        meeting_id=str(row.meeting_id),
        status=_DELIVERY_STATUS[row.status],
        last_error=row.last_error,
        create_time=timestamp(row.create_time),
        attempts=[
            webhooks_pb2.WebhookAttempt(
                attempt=a.attempt,
                status_code=a.status_code,
                latency=duration_from_us(a.latency_ms * 1000),
                error=a.error,
                response_prefix=a.response_prefix.decode(errors="replace"),
                create_time=timestamp(a.create_time),
            )
            for a in delivery.attempts
        ],
    )
    if row.status is DeliveryStatus.PENDING:
        message.next_attempt_time.CopyFrom(timestamp(row.next_attempt_at))
    return message


def _owner() -> str:
    return current_principal().user


def _trace_context(context: Ctx) -> str:
    """Returns the trace a job queued by this call continues.

    That is this call's span, or else the caller's `traceparent` (on a server run
    without the tracing interceptors).
    """
    return current_traceparent() or _metadata(context, _TRACEPARENT)


def _metadata(context: Ctx, key: str) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode()
    return ""
