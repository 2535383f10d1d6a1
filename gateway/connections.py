"""The gateway's HTTP server: how long a connection may take, and what a bad one logs.

aiohttp closes idle keep-alive connections itself (`keepalive_timeout_s`) and bounds its
own read of a refused request's unread body (`body_timeout_s`); bodies are timed where
the handlers read them (`body_timeout_s`, `upload_idle_timeout_s`). aiohttp has no limit on
how long a new connection may take to send its first request. `GatewayRunner` adds one: a
timer per connection, from when it opens until its first request reaches the
application; a connection still short of that at `header_timeout_s` is closed. Later
requests on the same connection are covered by the keep-alive timeout, which closes a
connection that has no complete request however many bytes of one it sent.

A request aiohttp's parser refuses (a bad byte in a header or the URL, an unknown content
coding) is the client's fault: it is answered 400 and logged at INFO, without a traceback,
so that ERROR stays for the gateway's own faults.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError

from gateway.settings import GatewaySettings
from mesh_common.logging import redact


class _ClientFaultsAtInfo(logging.Filter):
    """Logs the parser's refusals of a client's request at INFO, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            # Made after the record was redacted: the parser's message quotes the request.
            record.msg, record.args = redact(f"{record.getMessage()}: {error.message}"), ()
            record.exc_info, record.exc_text = None, None
        return True


_HTTP_LOGGER = logging.getLogger("gateway.http")
_HTTP_LOGGER.addFilter(_ClientFaultsAtInfo())


class GatewayRunner(web.AppRunner):
    """An `AppRunner` with the gateway's connection timeouts and logging.

    Args:
        app: The gateway application.
        settings: Its settings (`header_timeout_s`, `keepalive_timeout_s`,
            `body_timeout_s`, `shutdown_grace_s`).
    """

    def __init__(self, app: web.Application, settings: GatewaySettings) -> None:
        super().__init__(
            app,
            access_log=None,  # the telemetry middleware logs requests, without query strings
            shutdown_timeout=settings.shutdown_grace_s,
            keepalive_timeout=settings.keepalive_timeout_s,
            lingering_time=settings.body_timeout_s,
            logger=_HTTP_LOGGER,
        )
        self._header_timeout_s = settings.header_timeout_s

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        _FirstRequestDeadline(server, self._header_timeout_s)
        return server


class _FirstRequestDeadline:
    """Closes each connection of `server` whose first request is not in within `within_s`.

    It hooks the server's per-connection callbacks: a connection opening starts its timer,
    its first request (made by `request_factory`) or its closing stops it.
    """

    def __init__(self, server: web.Server, within_s: float) -> None:
        self._within_s = within_s
        self._timers: dict[web_protocol.RequestHandler, asyncio.TimerHandle] = {}
        self._made = server.connection_made
        self._lost = server.connection_lost
        self._make_request = server.request_factory
        server.connection_made = self._connection_made  # type: ignore[method-assign]
        server.connection_lost = self._connection_lost  # type: ignore[method-assign]
        server.request_factory = self._request_factory

    def _connection_made(
        self, handler: web_protocol.RequestHandler, transport: asyncio.Transport
    ) -> None:
        self._made(handler, transport)
        loop = asyncio.get_running_loop()
        self._timers[handler] = loop.call_later(self._within_s, transport.close)

    def _connection_lost(
        self, handler: web_protocol.RequestHandler, exc: BaseException | None = None
    ) -> None:
        self._stop(handler)
        self._lost(handler, exc)

    def _request_factory(
        self, message: Any, payload: Any, protocol: web_protocol.RequestHandler, *args: Any
    ) -> web.BaseRequest:
        self._stop(protocol)
        return self._make_request(message, payload, protocol, *args)

    def _stop(self, handler: web_protocol.RequestHandler) -> None:
        timer = self._timers.pop(handler, None)
        if timer is not None:
            timer.cancel()
