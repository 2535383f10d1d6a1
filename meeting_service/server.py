"""Running the meeting service: in-process (tests, the dev mesh) or as a command.

`run_meeting_service(settings)` starts the gRPC server at once (health says NOT_SERVING),
then connects to the database and migrates it, retrying with backoff until it answers;
only then is the service SERVING. A periodic check flips health to NOT_SERVING while the
database (or the LISTEN connection) is lost and back when it returns. Leaving the block
stops gracefully: live streams end with UNAVAILABLE (clients resume by sequence), the
server stops accepting and lets in-flight calls finish within the grace period, then the
pool closes and an embedded PostgreSQL stops.

Telemetry: every call is traced (a span per RPC and per SQL statement, `traceparent` on
to gpu_proxy) and logged, and Prometheus metrics are served on `meeting_metrics_port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import grpc
from grpc_health.v1 import health

from gen.meeting.v1 import meeting_service_pb2_grpc
from gen.mesh.v1 import errors_pb2
from meeting_service.db.database import CONNECTION_ERRORS, Database
from meeting_service.db.tracing import traced_connection_class
from meeting_service.metrics import MeetingMetrics
from meeting_service.processing.worker import PipelineWorkers
from meeting_service.servicer import SERVICE_DESCRIPTOR, SERVICE_NAME, MeetingServicer, NotReady
from meeting_service.settings import MeetingServiceSettings
from meeting_service.wiring import Services, build_services
from mesh_common.auth import Principal
from mesh_common.errors import MeshError
from mesh_common.grpc_server import AuthInterceptor, add_health_and_reflection, set_serving
from mesh_common.keepalive import server_options
from mesh_common.logging import logger
from mesh_common.retry import Backoff
from mesh_common.scopes import method_scopes
from mesh_common.telemetry import Telemetry, create_telemetry

# Chunks are at most 4 MiB (the contract); leave room for the message framing.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024 + 64 * 1024
# What a client may send on one stream before meeting_service reads it: a fixed window,
# not grpc's BDP-probed one, which grows with the rate and held tens of MiB of an upload
# that PostgreSQL had not yet taken (the `upload` benchmark's peak RSS). One gateway
# chunk in flight keeps a fast upload's pipeline full.
UPLOAD_WINDOW_BYTES = 1024 * 1024


@dataclass
class RunningMeetingService:
    """A started meeting service.

    Attributes:
        port: The bound port (useful when the settings asked for 0).
        address: `host:port` to dial.
        health: The health servicer (tests read and watch it).
        database: The database handle (DSN, pool, embedded server).
        ready: Set once the database is reachable and migrated.
        pipeline: The job workers, once started (None while the database is not ready,
            with `pipeline_workers` 0, or without a client certificate for gpu_proxy).
        telemetry: Its tracer provider and metrics registry.
        metrics: Its own series (jobs, uploads, streams).
        metrics_port: The bound port of `/metrics`.
    """

    port: int
    address: str
    health: health.aio.HealthServicer
    database: Database
    telemetry: Telemetry
    metrics: MeetingMetrics
    metrics_port: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    pipeline: PipelineWorkers | None = None
    _services: Services | None = None

    @property
    def services(self) -> Services:
        """The wired domain services (for the pipeline and tests).

        Raises:
            NotReady: The database is not connected yet.
        """
        if self._services is None:
            raise NotReady
        return self._services

    async def wait_ready(self, within: float) -> None:
        """Waits until the database is connected and migrated.

        Raises:
            TimeoutError: Not within `within` seconds.
        """
        await asyncio.wait_for(self.ready.wait(), within)


@contextlib.asynccontextmanager
async def run_meeting_service(
    settings: MeetingServiceSettings,
    *,
    database: Database | None = None,
    wait_ready: bool = True,
    telemetry: Telemetry | None = None,
) -> AsyncIterator[RunningMeetingService]:
    """Runs the meeting service for the duration of the block.

    Args:
        settings: The settings (`meeting_port` 0 binds a free port).
        database: The database to use; by default resolved from the settings (an
            embedded PostgreSQL is then started here). Either way it is closed on exit.
        wait_ready: Wait (up to `ready_timeout_s`) until the database is ready
            before entering the block.
        telemetry: Tracing and metrics; one for "meeting-service" from the `OTEL_*`
            environment when None.

    Yields:
        The running service.

    Raises:
        TimeoutError: `wait_ready` and the database did not come up in time.
    """
    owns_telemetry = telemetry is None
    telemetry = telemetry or create_telemetry("meeting-service")
    metrics = MeetingMetrics(telemetry.registry)
    db = database or await Database.from_settings(settings)
    db.connection_class = traced_connection_class(telemetry.tracer("asyncpg"))
    db.query_timeout_s = settings.db_query_timeout_s
    db.connect_timeout_s = settings.db_connect_timeout_s
    running: RunningMeetingService | None = None

    def services() -> Services:
        if running is None:
            raise NotReady
        return running.services

    server = grpc.aio.server(
        interceptors=[
            *telemetry.grpc_server_interceptors(),
            AuthInterceptor(
                settings.token_verifier(),
                scopes=method_scopes(SERVICE_DESCRIPTOR),
                api_keys=_StoredApiKeys(services),
            ),
        ],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", UPLOAD_WINDOW_BYTES),
            *server_options(settings),
        ],
    )
    meeting_service_pb2_grpc.add_MeetingServiceServicer_to_server(
        MeetingServicer(services, metrics), server
    )
    health_servicer = await add_health_and_reflection(server, [SERVICE_NAME])
    port = server.add_insecure_port(settings.meeting_address)
    try:
        if port == 0:
            raise OSError(f"could not bind {settings.meeting_address}")
        metrics_endpoint = await telemetry.serve_metrics(
            settings.meeting_host, settings.meeting_metrics_port
        )
    except OSError:
        await db.close()  # an embedded PostgreSQL started for us must not outlive us
        raise
    await set_serving(health_servicer, [SERVICE_NAME], False)
    await server.start()
    running = RunningMeetingService(
        port=port,
        address=f"{settings.meeting_host}:{port}",
        health=health_servicer,
        database=db,
        telemetry=telemetry,
        metrics=metrics,
        metrics_port=metrics_endpoint.port,
    )
    logger.bind(address=running.address, metrics_port=running.metrics_port).info(
        "meeting service listening"
    )
    supervisor = asyncio.create_task(_supervise(running, settings), name="meeting-db-supervisor")
    try:
        if wait_ready:
            await running.wait_ready(settings.ready_timeout_s)
        yield running
    finally:
        await set_serving(health_servicer, [SERVICE_NAME], False)
        # The background parts stop first, all within one grace period: a part that does
        # not stop in time (a job's release waiting on a lock) must not keep the process
        # from exiting, nor keep it accepting calls meanwhile.
        deadline = asyncio.get_running_loop().time() + settings.grace_s
        if running.pipeline is not None:
            await _stop_within(running.pipeline.stop(), "job workers", deadline)
        if running._services is not None:
            parts = running._services
            await _stop_within(parts.webhook_delivery.stop(), "webhook delivery", deadline)
            await _stop_within(parts.live_sweeper.stop(), "live sweeper", deadline)
            await _stop_within(parts.live.close(), "live sessions", deadline)
            # Streams would otherwise hold the grace period open; they end with
            # UNAVAILABLE and their clients resume elsewhere by sequence.
            await _stop_within(parts.hub.close(), "event hub", deadline)
        await server.stop(settings.grace_s)
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        if running._services is not None:
            await running._services.gpu.close()
            await running._services.recordings.close()
        await db.close()
        await metrics_endpoint.close()
        if owns_telemetry:
            telemetry.shutdown()
        logger.info("meeting service stopped")


async def _stop_within(stopping: Awaitable[None], part: str, deadline: float) -> None:
    """Waits for a part to stop, until the shared deadline (a loop time) at the latest."""
    left = max(0.0, deadline - asyncio.get_running_loop().time())
    try:
        async with asyncio.timeout(left):
            await stopping
    except TimeoutError:
        logger.bind(part=part).warning("a part did not stop within the grace period")


class _StoredApiKeys:
    """Checks API keys against meeting_service's database, for the auth interceptor.

    Args:
        services: Returns the wired services, or raises `NotReady` before the database is
            up.
    """

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    async def verify_api_key(self, key: str) -> Principal:
        """Returns the key's owner and scopes; AUTH_UNAVAILABLE without a database."""
        try:
            return await self._services().api_keys.verify_api_key(key)
        except (NotReady, *CONNECTION_ERRORS):  # type: ignore[misc]
            raise MeshError(
                errors_pb2.ERROR_REASON_AUTH_UNAVAILABLE,
                "API keys cannot be checked while the database is unavailable; retry shortly",
                retry_after=1.0,
            ) from None


def _start_pipeline(services: Services, settings: MeetingServiceSettings) -> PipelineWorkers | None:
    """Starts the job workers, unless none are wanted or gpu_proxy cannot be reached."""
    if settings.pipeline_workers == 0:
        return None
    problem = services.gpu.problem()
    if problem is not None:
        # Jobs stay queued for a replica that can reach the GPU service.
        logger.bind(problem=problem).warning("processing jobs is off on this replica")
        return None
    workers = PipelineWorkers(services.processing, settings)
    services.completion.on_queued(workers.wake)
    workers.start()
    return workers


async def _count_jobs(running: RunningMeetingService, services: Services) -> None:
    """Refreshes the job gauges; a failure costs one refresh, never the supervisor."""
    try:
        running.metrics.observe_jobs(await services.jobs.stats(services.pool))
    except CONNECTION_ERRORS:
        pass  # health reports the outage
    except Exception:
        logger.exception("cannot count jobs for the metrics")


async def _sweep(services: Services) -> None:
    """Aborts abandoned uploads; a failure costs one sweep, never the supervisor."""
    try:
        await services.recordings.sweep()
    except Exception:
        logger.exception("cannot sweep abandoned uploads")


async def _finish_seals(services: Services) -> None:
    """Completes sealed uploads whose sealer is gone; a failure costs one pass."""
    try:
        await services.uploads.finish_abandoned_seals()
    except CONNECTION_ERRORS:
        pass  # health reports the outage
    except Exception:
        logger.exception("cannot finish abandoned sealed uploads")


async def _supervise(running: RunningMeetingService, settings: MeetingServiceSettings) -> None:
    """Connects and migrates (with backoff), then keeps health in step with the database.

    Nothing ends it but cancellation: a check that fails in an unforeseen way is logged
    and counts as unhealthy, so health can never freeze at its last answer.
    """
    pool = await _open_database(running.database)
    services = build_services(pool, running.database.dsn, settings, running.telemetry)
    await services.hub.start()
    with contextlib.suppress(TimeoutError):
        await services.hub.wait_listening(within=5.0)
    running._services = services
    running.pipeline = _start_pipeline(services, settings)
    services.webhook_delivery.start()
    services.live_sweeper.start()
    running.ready.set()
    serving: bool | None = None
    next_sweep = next_seal_sweep = 0.0
    while True:
        if settings.storage == "s3" and time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + settings.s3_sweep_interval_s
            await _sweep(services)
        if time.monotonic() >= next_seal_sweep:
            next_seal_sweep = time.monotonic() + settings.seal_sweep_interval_s
            await _finish_seals(services)
        try:
            healthy = services.hub.listening and await running.database.ping(
                within=settings.health_interval_s
            )
        except Exception:
            logger.exception("the database health check failed")
            healthy = False
        if healthy != serving:
            serving = healthy
            await set_serving(running.health, [SERVICE_NAME], healthy)
            log = logger.bind(serving=healthy)
            if healthy:
                log.info("meeting service health changed")
            else:
                log.warning("meeting service health changed: the database is unavailable")
        if healthy:
            await _count_jobs(running, services)
        await asyncio.sleep(settings.health_interval_s)


async def _open_database(database: Database) -> asyncpg.Pool:
    """Connects and migrates, retrying with backoff until it works.

    Every failed try is logged at once with its cause and the database it tried (password
    masked): refused, unreachable, wrong credentials or unknown database are WARNINGs (the
    database or its settings may yet be fixed); anything else, such as a schema this code
    does not know, is an ERROR, and is retried as well.
    """
    backoff = Backoff(initial=0.2, maximum=5.0)
    while True:
        try:
            return await database.open()
        except CONNECTION_ERRORS as error:
            level, problem = "WARNING", "database not reachable yet"
            cause: BaseException = error
        except Exception as error:
            level, problem = "ERROR", "cannot open the database"
            cause = error
        delay = backoff.next_delay()
        logger.bind(database=database.where, error=repr(cause), retry_in=round(delay, 2)).log(
            level, f"{problem}: {cause}"
        )
        await asyncio.sleep(delay)
