"""What the gateway's handlers share through the application: settings and the stub.

The gateway keeps no per-meeting or per-user state; these are process-wide and read-only.
"""

from __future__ import annotations

import asyncio

import grpc
from aiohttp import web

from gateway.metrics import GatewayMetrics
from gateway.settings import GatewaySettings
from gen.meeting.v1 import meeting_service_pb2_grpc
from mesh_common.telemetry import Telemetry

SETTINGS = web.AppKey("settings", GatewaySettings)
CHANNEL = web.AppKey("channel", grpc.aio.Channel)
TELEMETRY = web.AppKey("telemetry", Telemetry)
METRICS = web.AppKey("metrics", GatewayMetrics)
STUB = web.AppKey("stub", meeting_service_pb2_grpc.MeetingServiceStub)


class Stopping:
    """Whether the gateway has begun to stop, and a future for each stream to wait on.

    A plain future per stream rather than a task per stream waiting on an event: an open
    event stream holds little to learn that the gateway stops. Not one future shared by
    all: a stream that waits on a future with `asyncio.wait` removes its callback from it
    afterwards, a scan of every other stream's callback on a shared one.
    """

    def __init__(self) -> None:
        self._set = False
        self._waiting: set[asyncio.Future[None]] = set()

    def set(self) -> None:
        """The gateway begins to stop: every stream's future is done."""
        self._set = True
        for future in self._waiting:
            if not future.done():
                future.set_result(None)
        self._waiting.clear()

    def is_set(self) -> bool:
        """Whether the gateway has begun to stop."""
        return self._set

    def future(self) -> asyncio.Future[None]:
        """A stream's own future, done once the gateway stops; `release` it when it ends."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._set:
            future.set_result(None)
        else:
            self._waiting.add(future)
        return future

    def release(self, future: asyncio.Future[None]) -> None:
        """Forgets a stream's future (its stream ended)."""
        self._waiting.discard(future)
        future.cancel()


# Set when the gateway begins to stop: event streams and WebSockets end cleanly on it.
STOPPING = web.AppKey("stopping", Stopping)


def stub(request: web.Request) -> meeting_service_pb2_grpc.MeetingServiceStub:
    """Returns the MeetingService stub on the shared channel.

    Args:
        request: Any request of the application.

    Returns:
        The stub.
    """
    return request.app[STUB]


def metrics(request: web.Request) -> GatewayMetrics:
    """Returns the gateway's own metrics (open streams, upload bytes).

    Args:
        request: Any request of the application.

    Returns:
        The metrics.
    """
    return request.app[METRICS]


def settings(request: web.Request) -> GatewaySettings:
    """Returns the gateway's settings.

    Args:
        request: Any request of the application.

    Returns:
        The settings.
    """
    return request.app[SETTINGS]
