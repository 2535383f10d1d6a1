"""`/metrics` on a port of its own, for the gRPC services (the gateway serves it on its API).

A minimal HTTP/1.1 responder on asyncio streams: `GET` or `HEAD /metrics` gets the registry
in Prometheus text format, any other path 404, any other method 405, and every connection
is closed after its one response (scrapers reconnect). prometheus_client's own
`start_http_server` would serve from a thread per service whose shutdown waits on a polling
loop; this one lives on the service's event loop and stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from functools import partial

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# A scrape's request line and headers are a few hundred bytes; anything longer is not one.
_MAX_HEAD_BYTES = 8192
# A connection that sends no complete request head in this time is dropped.
_READ_TIMEOUT_S = 10.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


@dataclass
class MetricsEndpoint:
    """A running `/metrics` server.

    Attributes:
        port: The bound port.
    """

    _server: asyncio.Server | None
    port: int

    async def close(self) -> None:
        """Stops serving and drops open connections (again is a no-op)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            server.close_clients()
            await server.wait_closed()


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serves a registry at `/metrics` on a port of its own.

    Args:
        registry: The registry to expose.
        host: Interface to bind.
        port: Port to bind; 0 picks a free one.

    Returns:
        The running endpoint; `close()` stops it.

    Raises:
        OSError: The port cannot be bound.
    """
    server = await asyncio.start_server(
        partial(_answer, registry), host, port, limit=_MAX_HEAD_BYTES
    )
    return MetricsEndpoint(server, int(server.sockets[0].getsockname()[1]))


async def _answer(
    registry: CollectorRegistry, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Reads one request head and writes its response."""
    with contextlib.suppress(
        TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
    ):
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            writer.write(_response(registry, head))
            await writer.drain()
        finally:
            writer.close()
            await writer.wait_closed()


def _response(registry: CollectorRegistry, head: bytes) -> bytes:
    """The whole response (status line, headers, body) to one request head."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
    headers = {"Content-Type": "text/plain; charset=utf-8", "Connection": "close"}
    body = b""
    if len(request_line) != 3:
        status = 400
    elif request_line[0] not in ("GET", "HEAD"):
        status = 405
        headers["Allow"] = "GET, HEAD"
    elif request_line[1].partition("?")[0] != "/metrics":
        status = 404
    else:
        status = 200
        headers["Content-Type"] = CONTENT_TYPE_LATEST
        body = generate_latest(registry)
    headers["Content-Length"] = str(len(body))
    if request_line and request_line[0] == "HEAD":
        body = b""
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
