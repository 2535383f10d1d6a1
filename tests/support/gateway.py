"""Helpers for tests of the gateway: run the real app on 127.0.0.1 port 0.

async with run_gateway(gateway_settings(meeting.address, secret)) as gateway:
    async with aiohttp.ClientSession(gateway.url) as http: ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import SecretStr

from gateway.app import create_app
from gateway.settings import GatewaySettings


@dataclass(frozen=True)
class RunningGateway:
    """A gateway serving on loopback.

    Attributes:
        app: The aiohttp application.
        port: The bound port.
        url: "http://127.0.0.1:<port>".
    """

    app: web.Application
    port: int
    url: str


def gateway_settings(meeting_target: str, secret: str, **values: Any) -> GatewaySettings:
    """Settings for a test gateway in front of `meeting_target`, on a free port.

    Args:
        meeting_target: meeting_service's "host:port".
        secret: The HS256 signing secret shared with meeting_service.
        **values: Any other setting.

    Returns:
        The settings (the environment is not read for these fields).
    """
    return GatewaySettings(
        gateway_host="127.0.0.1",
        gateway_port=0,
        meeting_service_target=meeting_target,
        jwt_secret=SecretStr(secret),
        **values,
    )


@contextlib.asynccontextmanager
async def run_gateway(settings: GatewaySettings) -> AsyncIterator[RunningGateway]:
    """Runs the gateway for the duration of the block, then stops it as `meeting-mesh
    gateway` does (streams are told to end, then the server closes).

    Args:
        settings: The settings (`gateway_port` 0 binds a free port).

    Yields:
        The running gateway.
    """
    app = create_app(settings)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_grace_seconds)
    await runner.setup()
    site = web.TCPSite(runner, settings.gateway_host, settings.gateway_port)
    await site.start()
    port = int(runner.addresses[0][1])
    try:
        yield RunningGateway(app, port, f"http://{settings.gateway_host}:{port}")
    finally:
        await runner.cleanup()
