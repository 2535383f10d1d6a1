"""Every kind of database trouble is a lost database, and the service recovers from each.

Refused and reset connections are covered by `test_health.py` (a server stopped and
started); here, on the session's PostgreSQL: a start-up that cannot connect (unknown role,
unknown database, a port nobody listens on) says why in the log at once, masks the
password, and keeps retrying until the database is fixed; and a running service whose
database answers "too many connections" (SQLSTATE 53300) after its sessions were cut is
NOT_SERVING, answers UNAVAILABLE, and recovers by itself (health, calls and the LISTEN
connection that feeds live streams) once connections are allowed again. A live stream also
gets an event whose read failed while the LISTEN connection stayed up.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import grpc
import pytest
import pytest_asyncio

from gen.meeting.v1 import meeting_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_service.db.database import Database
from meeting_service.server import RunningMeetingService, run_meeting_service
from meeting_service.transcripts.hub import EventHub
from meeting_service.transcripts.repository import EventsRepository, UserEventsRepository
from mesh_common.errors import view_rpc_error
from mesh_common.ports import free_port
from tests.meeting_service.helpers import StreamCall, Stub, create, next_event, user
from tests.meeting_service.test_health import NOT_SERVING, SERVING, HealthWatch
from tests.support.log_capture import LogLine, captured_logs
from tests.support.meeting import auth, error_reason, meeting_settings
from tests.support.postgres import behind_fault_proxy, create_database, drop_database
from tests.support.secrets import register_secret
from tests.support.transcripts import change_status

PASSWORD = register_secret("db-password-9f8e7d6c5b4a")


def _dsn_with(admin_dsn: str, *, role: str, database: str, port: int | None = None) -> str:
    """The admin DSN with another role (and a password), database or port."""
    rest = admin_dsn.split("@", 1)[1]
    host_port, _, _ = rest.partition("/")
    host, _, admin_port = host_port.rpartition(":")
    return f"postgresql://{role}:{PASSWORD}@{host}:{port or admin_port}/{database}"


async def _admin(admin_dsn: str, *statements: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _unavailable(stub: meeting_service_pb2_grpc.MeetingServiceStub, owner: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListMeetings(meeting_service_pb2.ListMeetingsRequest(), metadata=auth(owner))
    assert error_reason(caught.value)[:2] == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")


@pytest_asyncio.fixture
async def limited_role(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A role of this test's own (not a superuser, so connection limits bind it)."""
    role = f"mesh_{uuid.uuid4().hex[:10]}"
    await _admin(postgres_admin_dsn, f"CREATE ROLE {role} LOGIN")
    try:
        yield role
    finally:
        await _admin(
            postgres_admin_dsn,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            f"DROP ROLE IF EXISTS {role}",
        )


def _says_why(fragment: str) -> Callable[[LogLine], bool]:
    def match(line: LogLine) -> bool:
        return (
            line.level >= logging.WARNING
            and "database not reachable yet" in line.text
            and fragment in line.text
        )

    return match


async def _followed_meeting(
    stub: meeting_service_pb2_grpc.MeetingServiceStub, owner: str
) -> tuple[meeting_pb2.Meeting, StreamCall]:
    """A new meeting of `owner` and its transcript stream, its first event already read."""
    meeting = await create(stub, owner)
    stream = stub.StreamTranscript(
        meeting_service_pb2.StreamTranscriptRequest(meeting_id=meeting.id), metadata=auth(owner)
    )
    assert (await next_event(stream)).sequence == 1
    return meeting, stream


@pytest.mark.parametrize(
    ("problem", "cause"),
    [
        ("unknown role", "does not exist"),
        ("unknown database", "does not exist"),
        ("nobody listens", "Connect call failed"),
    ],
)
async def test_a_start_up_that_cannot_connect_says_why_and_keeps_trying(
    problem: str, cause: str, postgres_admin_dsn: str, tmp_path: Path
) -> None:
    role, database, port = "postgres", f"later_{uuid.uuid4().hex[:10]}", None
    if problem == "unknown role":
        role = f"later_{uuid.uuid4().hex[:10]}"
        await _admin(postgres_admin_dsn, f'CREATE DATABASE "{database}"')
    elif problem == "nobody listens":
        port = free_port()
    dsn = _dsn_with(postgres_admin_dsn, role=role, database=database, port=port)
    settings = meeting_settings(dsn, tmp_path)
    try:
        with captured_logs() as logs:
            async with (
                run_meeting_service(settings, database=Database(dsn), wait_ready=False) as running,
                grpc.aio.insecure_channel(running.address) as channel,
            ):
                watch = HealthWatch(channel)
                line = await logs.wait_for(_says_why(cause), within=10)
                assert PASSWORD not in line.text
                assert "***" in line.text  # the database it tried, password masked
                await watch.until(NOT_SERVING)
                await _unavailable(meeting_service_pb2_grpc.MeetingServiceStub(channel), user())
                if problem == "nobody listens":
                    watch.cancel()
                    return
                # Fixing the database is enough: the service was retrying all along.
                if problem == "unknown role":
                    await _admin(postgres_admin_dsn, f"CREATE ROLE {role} LOGIN SUPERUSER")
                else:
                    await _admin(postgres_admin_dsn, f'CREATE DATABASE "{database}"')
                await watch.until(SERVING, within=30)
                await create(meeting_service_pb2_grpc.MeetingServiceStub(channel), user())
                watch.cancel()
        assert not logs.errors()
    finally:
        await drop_database(
            postgres_admin_dsn, _dsn_with(postgres_admin_dsn, role="x", database=database)
        )
        if problem == "unknown role":
            await _admin(postgres_admin_dsn, f"DROP ROLE IF EXISTS {role}")


async def test_too_many_connections_is_a_lost_database_and_everything_recovers(
    postgres_admin_dsn: str, limited_role: str, tmp_path: Path
) -> None:
    role = limited_role
    database = (await create_database(postgres_admin_dsn)).rsplit("/", 1)[1]
    await _admin(postgres_admin_dsn, f'ALTER DATABASE "{database}" OWNER TO {role}')
    dsn = _dsn_with(postgres_admin_dsn, role=role, database=database)
    owner = user()
    settings = meeting_settings(dsn, tmp_path)
    try:
        with captured_logs() as logs:
            async with (
                run_meeting_service(settings, database=Database(dsn)) as running,
                grpc.aio.insecure_channel(running.address) as channel,
            ):
                stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
                watch = HealthWatch(channel)
                await watch.until(SERVING)
                meeting, stream = await _followed_meeting(stub, owner)

                # The database restarts and, for a while, refuses every new session of
                # this role with SQLSTATE 53300.
                await _admin(
                    postgres_admin_dsn,
                    f"ALTER ROLE {role} CONNECTION LIMIT 0",
                    f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    f" WHERE usename = '{role}'",
                )
                await watch.until(NOT_SERVING)
                await _unavailable(stub, owner)
                await logs.wait_for(
                    lambda line: "too many connections" in line.text.lower(), within=10
                )

                await _admin(postgres_admin_dsn, f"ALTER ROLE {role} CONNECTION LIMIT -1")
                await watch.until(SERVING, within=30)
                # Calls, and the LISTEN connection that feeds the stream opened before.
                await change_status(
                    running.services,
                    uuid.UUID(meeting.id),
                    meeting_pb2.MEETING_STATUS_TRANSCRIBING,
                )
                nxt = await next_event(stream)
                assert (nxt.sequence, nxt.status_change.status) == (
                    2,
                    meeting_pb2.MEETING_STATUS_TRANSCRIBING,
                )
                await create(stub, owner)
                stream.cancel()
                watch.cancel()
        # An outage is worth WARNINGs (asyncpg's own pool adds a traceback to one), never
        # an ERROR.
        assert not logs.errors()
    finally:
        await drop_database(
            postgres_admin_dsn, _dsn_with(postgres_admin_dsn, role="x", database=database)
        )


async def test_a_database_network_that_blackholes_or_resets_is_survived(
    database_url: str, tmp_path: Path
) -> None:
    owner = user()
    async with behind_fault_proxy(database_url) as (dsn, network):
        settings = meeting_settings(dsn, tmp_path)
        with captured_logs() as logs:
            async with (
                run_meeting_service(settings, database=Database(dsn)) as running,
                grpc.aio.insecure_channel(running.address) as channel,
            ):
                stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
                watch = HealthWatch(channel)
                await watch.until(SERVING)
                meeting, stream = await _followed_meeting(stub, owner)
                mid = uuid.UUID(meeting.id)

                # Bytes stop, nobody is told: found by the health check's deadline.
                network.blackhole()
                await watch.until(NOT_SERVING, within=4 * settings.health_interval_s + 5)
                network.heal()
                await watch.until(SERVING, within=30)
                await change_status(running.services, mid, meeting_pb2.MEETING_STATUS_QUEUED)
                assert (await next_event(stream)).sequence == 2

                # Every connection reset at once: a call that meets a dead connection is
                # UNAVAILABLE (never INTERNAL), and the service recovers by itself.
                await network.reset()
                async with asyncio.timeout(30):
                    while True:
                        try:
                            await create(stub, owner)
                            break
                        except grpc.aio.AioRpcError as error:
                            assert error.code() is grpc.StatusCode.UNAVAILABLE
                await change_status(running.services, mid, meeting_pb2.MEETING_STATUS_TRANSCRIBING)
                assert (await next_event(stream)).sequence == 3
                stream.cancel()
                watch.cancel()
        assert not logs.errors()


QUERY_TIMEOUT_S = 1.0


@pytest.mark.parametrize("fault", ["blackhole", "half-open"])
async def test_a_silent_database_is_a_lost_database_within_the_query_timeout(
    fault: str, database_url: str, tmp_path: Path
) -> None:
    """A blackhole (nothing flows either way, on old and new connections) or a half-open
    network (the server's side of every open connection gone, new ones fine): no call
    waits longer than the query timeout (and its cancel) for an answer; each is answered
    UNAVAILABLE with a retry delay or succeeds, and the service recovers by itself."""
    owner = user()
    async with behind_fault_proxy(database_url) as (dsn, network):
        settings = meeting_settings(dsn, tmp_path, db_query_timeout_s=QUERY_TIMEOUT_S)
        # The query's timeout, its cancel's, and the call around them; a bound, not a
        # timing: without query timeouts the call would wait for ever.
        answered_within = 2 * QUERY_TIMEOUT_S + 5
        with captured_logs() as logs:
            async with (
                run_meeting_service(settings, database=Database(dsn)) as running,
                grpc.aio.insecure_channel(running.address) as channel,
            ):
                stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
                watch = HealthWatch(channel)
                await watch.until(SERVING)
                meeting, stream = await _followed_meeting(stub, owner)
                mid = uuid.UUID(meeting.id)

                if fault == "blackhole":
                    network.blackhole()
                else:
                    network.half_open()
                unavailable = 0
                async with asyncio.timeout(answered_within):
                    try:
                        await stub.ListMeetings(
                            meeting_service_pb2.ListMeetingsRequest(), metadata=auth(owner)
                        )
                    except grpc.aio.AioRpcError as error:
                        code, reason, _ = error_reason(error)
                        assert (code, reason) == (
                            grpc.StatusCode.UNAVAILABLE,
                            "BACKEND_UNAVAILABLE",
                        )
                        assert (view_rpc_error(error).retry_after or 0) >= 1  # Retry-After
                        unavailable += 1
                if fault == "blackhole":
                    assert unavailable == 1  # nothing can succeed while nothing flows
                    await watch.until(NOT_SERVING, within=answered_within)
                    network.heal()

                # The LISTEN connection (checked by a bounded round trip) comes back too.
                await watch.until(SERVING, within=30)
                # Bounds, not timings: each step fails here, and says which, rather than
                # at the suite's per-test timeout.
                async with asyncio.timeout(30):
                    await change_status(running.services, mid, meeting_pb2.MEETING_STATUS_QUEUED)
                async with asyncio.timeout(30):
                    assert (await next_event(stream)).sequence == 2
                async with asyncio.timeout(30):
                    while True:
                        try:
                            await create(stub, owner)
                            break
                        except grpc.aio.AioRpcError as error:
                            assert error.code() is grpc.StatusCode.UNAVAILABLE
                stream.cancel()
                watch.cancel()
        assert not logs.errors()


async def test_an_event_whose_read_failed_while_the_listener_stayed_up_still_arrives(
    meeting_service: RunningMeetingService, meeting_stub: Stub, database_url: str
) -> None:
    # The hub hears a commit on its LISTEN connection and reads the new events through the
    # pool. When only the read fails (a pooled connection died, a query timed out), no
    # reconnect of the listener will come to catch the stream up: the hub must read again
    # by itself. Here the listener dials the database and the pool dials through a proxy.
    meeting = await create(meeting_stub, user())
    mid = uuid.UUID(meeting.id)
    async with (
        behind_fault_proxy(database_url) as (proxied, network),
        asyncpg.create_pool(proxied, min_size=1, max_size=1) as pool,
    ):
        hub = EventHub(
            database_url, pool, EventsRepository(), UserEventsRepository(), queue_size=16
        )
        await hub.start()
        try:
            await hub.wait_listening(within=10)
            with captured_logs() as logs:
                async with hub.subscribe(mid) as subscription:
                    network.refuse()
                    await network.reset()  # the pool's connection is cut, new ones refused
                    await change_status(
                        meeting_service.services, mid, meeting_pb2.MEETING_STATUS_QUEUED
                    )
                    await logs.wait_for(
                        lambda line: "could not read new events" in line.text, within=10
                    )
                    assert hub.listening
                    network.heal()
                    async with asyncio.timeout(10):
                        event = await subscription.next()
                    assert event.sequence == 2
                    assert event.status_change.status == meeting_pb2.MEETING_STATUS_QUEUED
        finally:
            await hub.close()
