"""Webhooks end to end: real meeting services on one database, a real receiver on 127.0.0.1.

The module's `writer` service registers endpoints and changes statuses but delivers nothing
(`webhook_workers` 0); each test starts the delivering replicas it needs, so who delivers,
and when, is the test's choice. Signatures are checked by the `standardwebhooks` package.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import standardwebhooks
from google.protobuf.message import Message

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc, webhooks_pb2
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from meeting_service.webhooks.events import EVENT_TYPES
from tests.meeting_service.helpers import create, user
from tests.support.meeting import auth, error_reason, meeting_settings
from tests.support.transcripts import change_status
from tests.support.webhooks import HANG, Received, Receiver, read_until, receiver

__all__ = ["receiver"]

Stub = meeting_service_pb2_grpc.MeetingServiceStub
SEALING_KEY = base64.b64encode(b"k" * 32).decode()
COMPLETED = meeting_pb2.MEETING_STATUS_COMPLETED
DELIVERY = webhooks_pb2.WebhookDeliveryStatus
# Quick retries, so a test sees several attempts in a fraction of a second.
FAST: dict[str, Any] = {
    "webhook_poll_interval_s": 0.05,
    "webhook_backoff_initial_s": 0.05,
    "webhook_backoff_max_s": 0.2,
    "webhook_timeout_s": 1.0,
    "webhook_secret_key": SEALING_KEY,
    "webhook_allow_private": True,  # the receiver is on 127.0.0.1
    "pipeline_workers": 0,
}


@contextlib.asynccontextmanager
async def replica(
    database_url: str, data_dir: Path, **overrides: Any
) -> AsyncIterator[RunningMeetingService]:
    """A meeting-service replica on the module's database."""
    settings = meeting_settings(database_url, data_dir, **{**FAST, **overrides})
    async with run_meeting_service(settings, database=Database(database_url)) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def writer(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RunningMeetingService]:
    """Registers endpoints and changes statuses; delivers nothing."""
    async with replica(
        database_url,
        tmp_path_factory.mktemp("writer"),
        webhook_workers=0,
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module")
async def stub(writer: RunningMeetingService) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(writer.address) as channel:
        yield meeting_service_pb2_grpc.MeetingServiceStub(channel)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


async def register(
    stub: Stub, owner: str, url: str, *types: str
) -> webhooks_pb2.CreateWebhookResponse:
    response: webhooks_pb2.CreateWebhookResponse = await stub.CreateWebhook(
        webhooks_pb2.CreateWebhookRequest(
            webhook=webhooks_pb2.Webhook(url=url, event_types=types or ["meeting.completed"])
        ),
        metadata=auth(owner),
    )
    return response


async def deliveries(stub: Stub, owner: str, webhook_id: str) -> list[webhooks_pb2.WebhookDelivery]:
    response = await stub.ListWebhookDeliveries(
        webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=webhook_id), metadata=auth(owner)
    )
    return list(response.deliveries)


async def complete(writer: RunningMeetingService, stub: Stub, owner: str) -> str:
    """Creates a meeting of `owner` and moves it to COMPLETED; returns its id."""
    meeting = await create(stub, owner)
    await change_status(writer.services, uuid.UUID(meeting.id), COMPLETED)
    return meeting.id


def verified(secret: str, request: Received) -> dict[str, Any]:
    """The payload of a request whose signature `standardwebhooks` accepts."""
    payload: dict[str, Any] = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    return payload


async def test_events_arrive_signed_once_each_with_the_meeting(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver, data_dir: Path
) -> None:
    owner = user()
    created = await register(
        stub, owner, receiver.url("signed"), "transcript.ready", "meeting.completed"
    )
    assert created.secret.startswith("whsec_")
    meeting = await create(stub, owner)
    mid = uuid.UUID(meeting.id)
    for status in (
        meeting_pb2.MEETING_STATUS_DIARIZING,
        meeting_pb2.MEETING_STATUS_QUEUED,  # a retried job enters DIARIZING again
        meeting_pb2.MEETING_STATUS_DIARIZING,
        meeting_pb2.MEETING_STATUS_SUMMARIZING,  # announces nothing
        COMPLETED,
    ):
        await change_status(writer.services, mid, status)
    async with replica(writer.database.dsn, data_dir):
        got = await receiver.wait_for("signed", lambda r: len(r) >= 2)
        await read_until(
            lambda: deliveries(stub, owner, created.webhook.id),
            lambda ds: all(d.status == DELIVERY.WEBHOOK_DELIVERY_STATUS_SUCCEEDED for d in ds),
        )
    assert len(got) == 2
    # Concurrent workers may deliver in either order; the body's timestamp gives the order.
    payloads = sorted((verified(created.secret, r) for r in got), key=lambda p: p["timestamp"])
    assert [p["type"] for p in payloads] == ["transcript.ready", "meeting.completed"]
    assert payloads[1]["data"]["meeting"]["id"] == meeting.id
    assert payloads[1]["data"]["meeting"]["status"] == "MEETING_STATUS_COMPLETED"
    assert payloads[1]["timestamp"].endswith("Z")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(
            got[0].body, got[0].headers
        )
    # The secret is shown once: no later answer carries it, and it is sealed at rest.
    listed = await stub.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=auth(owner))
    assert created.secret not in str(listed)
    raw = base64.b64decode(created.secret.removeprefix("whsec_"))
    stored = await writer.services.pool.fetchval(
        "SELECT secret FROM webhook_endpoints WHERE id = $1", uuid.UUID(created.webhook.id)
    )
    assert raw not in stored


async def test_a_receiver_failing_at_first_gets_every_event_exactly_once_by_id(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver, data_dir: Path
) -> None:
    owner = user()
    created = await register(stub, owner, receiver.url("flaky"))
    receiver.plan("flaky", 500, 500, 503, 500)
    meetings = {await complete(writer, stub, owner) for _ in range(3)}
    async with replica(writer.database.dsn, data_dir, webhook_workers=2):
        listed = await read_until(
            lambda: deliveries(stub, owner, created.webhook.id),
            lambda ds: (
                len(ds) == 3
                and all(d.status == DELIVERY.WEBHOOK_DELIVERY_STATUS_SUCCEEDED for d in ds)
            ),
        )
    got = receiver.got("flaky")
    assert len(got) == 3 + 4
    # A receiver drops repeats by webhook-id: what is left is each event once.
    unique = {r.webhook_id: verified(created.secret, r) for r in got}
    assert {p["data"]["meeting"]["id"] for p in unique.values()} == meetings
    assert {d.event_id for d in listed} == set(unique)
    attempts = [a for d in listed for a in d.attempts]
    assert sorted(a.status_code for a in attempts) == [200, 200, 200, 500, 500, 500, 503]
    failed = next(a for a in attempts if a.status_code == 500)
    assert failed.error == "HTTP 500"
    assert failed.response_prefix.startswith("answer 500 ")
    assert len(failed.response_prefix) == 256
    assert failed.latency.ToNanoseconds() > 0


async def test_a_replica_that_dies_mid_attempt_leaves_the_delivery_to_another(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver, data_dir: Path
) -> None:
    owner = user()
    created = await register(stub, owner, receiver.url("takeover"))
    # Committed by a replica that delivers nothing: the event waits in the outbox.
    mid = await complete(writer, stub, owner)
    [waiting] = await deliveries(stub, owner, created.webhook.id)
    assert waiting.status == DELIVERY.WEBHOOK_DELIVERY_STATUS_PENDING
    assert list(waiting.attempts) == []
    # The first deliverer's attempt hangs; its timeout leaves ample time to stop it first.
    receiver.plan("takeover", HANG)
    async with replica(writer.database.dsn, data_dir / "first", webhook_timeout_s=4.0):
        await receiver.wait_for("takeover", lambda r: len(r) == 1)
    # The first replica stopped in the middle of its attempt and recorded nothing; once
    # its claim lapses, the second makes the attempt again.
    async with replica(writer.database.dsn, data_dir / "second"):
        listed = await read_until(
            lambda: deliveries(stub, owner, created.webhook.id),
            lambda ds: ds[0].status == DELIVERY.WEBHOOK_DELIVERY_STATUS_SUCCEEDED,
        )
    got = receiver.got("takeover")
    assert len(got) == 2
    assert got[0].webhook_id == got[1].webhook_id == listed[0].event_id
    assert verified(created.secret, got[1])["data"]["meeting"]["id"] == mid
    assert [(a.attempt, a.status_code) for a in listed[0].attempts] == [(2, 200)]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://100.64.0.1/hook",
        "ftp://93.184.215.14/hook",
        "not a url",
    ],
)
async def test_a_url_that_is_not_public_is_refused_at_registration(
    url: str, writer: RunningMeetingService, data_dir: Path
) -> None:
    async with (
        replica(
            writer.database.dsn, data_dir, webhook_workers=0, webhook_allow_private=False
        ) as strict,
        grpc.aio.insecure_channel(strict.address) as channel,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await register(meeting_service_pb2_grpc.MeetingServiceStub(channel), user(), url)
    code, reason, metadata = error_reason(refused.value)
    assert (code, reason, metadata) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        {"field": "webhook.url"},
    )


async def test_a_public_address_is_accepted_and_bad_event_types_are_not(stub: Stub) -> None:
    owner = user()
    created = await register(stub, owner, "http://93.184.215.14/hook", "meeting.deleted")
    assert list(created.webhook.event_types) == ["meeting.deleted"]
    every = await stub.CreateWebhook(
        webhooks_pb2.CreateWebhookRequest(
            webhook=webhooks_pb2.Webhook(url="http://93.184.215.14/")
        ),
        metadata=auth(owner),
    )
    assert list(every.webhook.event_types) == list(EVENT_TYPES)  # none named: every type
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateWebhook(
            webhooks_pb2.CreateWebhookRequest(
                webhook=webhooks_pb2.Webhook(
                    url="http://93.184.215.14/", event_types=["meeting.exploded"]
                )
            ),
            metadata=auth(owner),
        )
    assert error_reason(refused.value)[2] == {"field": "webhook.event_types"}


async def test_a_replica_that_allows_no_private_address_does_not_deliver_to_one(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver, data_dir: Path
) -> None:
    owner = user()
    created = await register(stub, owner, receiver.url("private"))
    await complete(writer, stub, owner)
    async with replica(
        writer.database.dsn, data_dir, webhook_allow_private=False, webhook_retry_for_s=0
    ):
        [failed] = await read_until(
            lambda: deliveries(stub, owner, created.webhook.id),
            lambda ds: ds[0].status == DELIVERY.WEBHOOK_DELIVERY_STATUS_FAILED,
        )
    assert receiver.got("private") == []
    [attempt] = failed.attempts
    assert attempt.status_code == 0
    assert "127.0.0.1" in attempt.error and "not public" in attempt.error


async def test_redirects_are_not_followed(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver, data_dir: Path
) -> None:
    owner = user()
    created = await register(stub, owner, receiver.url("redirect"))
    receiver.plan("redirect", 307)
    await complete(writer, stub, owner)
    async with replica(writer.database.dsn, data_dir, webhook_retry_for_s=0):
        [failed] = await read_until(
            lambda: deliveries(stub, owner, created.webhook.id),
            lambda ds: ds[0].status == DELIVERY.WEBHOOK_DELIVERY_STATUS_FAILED,
        )
    assert len(receiver.got("redirect")) == 1
    assert receiver.got("redirect-to") == []
    assert [(a.status_code, a.error) for a in failed.attempts] == [
        (307, "HTTP 307: redirects are not followed")
    ]


async def test_an_endpoint_failing_too_often_is_disabled_and_a_redelivery_enables_it(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver, data_dir: Path
) -> None:
    owner = user()
    created = await register(stub, owner, receiver.url("broken"))
    receiver.plan("broken", *[500] * 3)
    for _ in range(2):
        await complete(writer, stub, owner)
    # One deliverer, so no attempt is in flight when the third failure disables the endpoint.
    async with replica(writer.database.dsn, data_dir, webhook_disable_after=3, webhook_workers=1):
        listed = await read_until(
            lambda: deliveries(stub, owner, created.webhook.id),
            lambda ds: all(d.status == DELIVERY.WEBHOOK_DELIVERY_STATUS_FAILED for d in ds),
        )
        [endpoint] = (
            await stub.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=auth(owner))
        ).webhooks
        assert endpoint.disabled
        assert endpoint.disabled_reason == "disabled after 3 consecutive failed attempts"
        assert len(receiver.got("broken")) == 3
        assert {d.last_error for d in listed} <= {
            "HTTP 500",
            "the endpoint was disabled after 3 consecutive failed attempts",
        }
        # The receiver is fixed: a redelivery sends the event again, the same id.
        again = await stub.RedeliverWebhook(
            webhooks_pb2.RedeliverWebhookRequest(
                webhook_id=created.webhook.id, delivery_id=listed[0].id
            ),
            metadata=auth(owner),
        )
        assert again.delivery.status == DELIVERY.WEBHOOK_DELIVERY_STATUS_PENDING
        got = await receiver.wait_for("broken", lambda r: len(r) == 4)
        assert got[3].webhook_id == listed[0].event_id
        assert verified(created.secret, got[3])["type"] == "meeting.completed"
        [endpoint] = (
            await stub.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=auth(owner))
        ).webhooks
        assert not endpoint.disabled


async def test_deleting_a_meeting_announces_it(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver, data_dir: Path
) -> None:
    owner = user()
    created = await register(stub, owner, receiver.url("deleted"), "meeting.deleted")
    meeting = await create(stub, owner, "to delete")
    await stub.DeleteMeeting(
        meeting_service_pb2.DeleteMeetingRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    async with replica(writer.database.dsn, data_dir):
        [got] = await receiver.wait_for("deleted", lambda r: len(r) == 1)
    payload = verified(created.secret, got)
    assert payload["type"] == "meeting.deleted"
    assert payload["data"]["meeting"]["title"] == "to delete"


async def test_endpoints_and_events_are_their_owners_alone(
    writer: RunningMeetingService, stub: Stub, receiver: Receiver
) -> None:
    owner, other = user(), user()
    created = await register(stub, owner, receiver.url("scoped"))
    await complete(writer, stub, other)  # another user's meeting: not the owner's event
    assert await deliveries(stub, owner, created.webhook.id) == []
    listed = await stub.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=auth(other))
    assert list(listed.webhooks) == []
    webhook_id = created.webhook.id
    calls: list[Awaitable[Message]] = [
        stub.DeleteWebhook(
            webhooks_pb2.DeleteWebhookRequest(webhook_id=webhook_id), metadata=auth(other)
        ),
        stub.ListWebhookDeliveries(
            webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=webhook_id), metadata=auth(other)
        ),
        stub.RedeliverWebhook(
            webhooks_pb2.RedeliverWebhookRequest(
                webhook_id=webhook_id, delivery_id=str(uuid.uuid4())
            ),
            metadata=auth(other),
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call
        code, reason, metadata = error_reason(refused.value)
        assert (code, reason, metadata["webhook_id"]) == (
            grpc.StatusCode.NOT_FOUND,
            "WEBHOOK_NOT_FOUND",
            webhook_id,
        )
    await stub.DeleteWebhook(
        webhooks_pb2.DeleteWebhookRequest(webhook_id=webhook_id), metadata=auth(owner)
    )
    listed = await stub.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=auth(owner))
    assert list(listed.webhooks) == []


def test_the_body_is_json_with_a_fixed_width_timestamp_and_data() -> None:
    import datetime as dt

    from meeting_service.webhooks.events import event_body

    body = json.loads(
        event_body(
            "meeting.failed",
            meeting_pb2.Meeting(id="m", failure_reason="bad audio"),
            dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        )
    )
    assert body == {
        "type": "meeting.failed",
        "timestamp": "2030-01-02T03:04:05.000000Z",  # sorts before 03:04:05.000001Z
        "data": {"meeting": body["data"]["meeting"]},
    }
    assert body["data"]["meeting"]["failureReason"] == "bad audio"
