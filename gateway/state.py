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
# Set when the gateway begins to stop: event streams and WebSockets end cleanly on it.
STOPPING = web.AppKey("stopping", asyncio.Event)


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
