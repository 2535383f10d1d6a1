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
    """Whether the gateway has begun to stop, and the one future its streams wait on.

    One future for the whole gateway rather than a task per stream waiting on an event: an
    open event stream holds nothing of its own to learn that the gateway stops.
    """

    def __init__(self) -> None:
        self._set = False
        self._future: asyncio.Future[None] | None = None

    def set(self) -> None:
        """The gateway begins to stop: every stream waiting on `future()` is woken."""
        self._set = True
        if self._future is not None and not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        """Whether the gateway has begun to stop."""
        return self._set

    def future(self) -> asyncio.Future[None]:
        """Done once the gateway stops. Shared by every stream: wait on it, never cancel it."""
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
            if self._set:
                self._future.set_result(None)
        return self._future


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
