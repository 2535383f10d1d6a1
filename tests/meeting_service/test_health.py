"""Health follows the database: NOT_SERVING before it is reachable and while it is lost."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_service.db.database import Database
from meeting_service.db.embedded import EmbeddedPostgres
from meeting_service.server import run_meeting_service
from mesh_common.ports import free_port
from tests.meeting_service.helpers import create, health_stub, next_event, user
from tests.support.meeting import auth, error_reason, meeting_settings
from tests.support.postgres import start_throwaway_server
from tests.support.transcripts import change_status

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest_asyncio.fixture
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, on a fixed port, that the test stops and starts."""
    directory = Path(tempfile.mkdtemp(prefix="mesh-test-pg-health-"))
    server = await start_throwaway_server(directory / "postgres", port=free_port())
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(directory, ignore_errors=True)


class HealthWatch:
    """Follows `Health.Watch` for the meeting service; waits for a given status."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._call = health_stub(channel).Watch(
            health_pb2.HealthCheckRequest(service="meeting.v1.MeetingService")
        )

    async def until(self, status: int, within: float = 60) -> None:
        import asyncio

        async with asyncio.timeout(within):
            async for answer in self._call:
                if answer.status == status:
                    return
        raise AssertionError("health watch ended")

    def cancel(self) -> None:
        self._call.cancel()


async def _unavailable(stub: meeting_service_pb2_grpc.MeetingServiceStub, owner: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListMeetings(meeting_service_pb2.ListMeetingsRequest(), metadata=auth(owner))
    assert error_reason(caught.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")


async def test_health_follows_the_database_and_streams_survive_an_outage(
    own_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    dsn = own_postgres.dsn()
    owner = user()
    # Start with the database down: the server answers, but is not serving.
    await own_postgres.stop()
    settings = meeting_settings(dsn, tmp_path)
    async with (
        run_meeting_service(settings, database=Database(dsn), wait_ready=False) as running,
        grpc.aio.insecure_channel(running.address) as channel,
    ):
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        watch = HealthWatch(channel)
        await watch.until(NOT_SERVING)
        await _unavailable(stub, owner)

        await own_postgres.start()
        await watch.until(SERVING)
        meeting = await create(stub, owner)
        stream = stub.StreamTranscript(
            meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting.id),
            metadata=auth(owner),
        )
        assert (await next_event(stream)).sequence == 1

        await own_postgres.stop()
        await watch.until(NOT_SERVING)
        await _unavailable(stub, owner)

        await own_postgres.start()
        await watch.until(SERVING)
        # The stream opened before the outage carries on: the LISTEN connection came
        # back and caught up.
        await change_status(
            running.services, uuid.UUID(meeting.id), meeting_pb2.MEETING_STATUS_TRANSCRIBING
        )
        nxt = await next_event(stream)
        assert (nxt.sequence, nxt.status_change.status) == (
            2,
            meeting_pb2.MEETING_STATUS_TRANSCRIBING,
        )
        stream.cancel()
        watch.cancel()
