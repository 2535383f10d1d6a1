"""An SSE response that a shared stream can write to without awaiting.

A shared stream hands each event to every follower from one loop: for each it either
writes the bytes to the connection's transport at once (`write_nowait`, no task, no
future, no await), or, when that connection already has more unsent than
`BACKLOG_BYTES`, leaves the event to the follower's own handler, which writes with
back-pressure (`write`) until it has caught up.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_writer import StreamWriter

# Unsent bytes on a connection past which a follower writes for itself and waits for its
# client (asyncio's default high-water mark for a transport).
BACKLOG_BYTES = 64 << 10


class Sink(Protocol):
    """Where a follower's events go."""

    def write_nowait(self, data: bytes) -> bool:
        """Writes `data` now; False (nothing written) when the connection is backed up.

        Raises:
            ConnectionError: The client left.
        """
        ...

    async def write(self, data: bytes) -> None:
        """Writes `data`, waiting while the client is slow to read."""
        ...


class ResponseSink:
    """A prepared SSE response and the transport under it.

    Args:
        response: The response, prepared (its headers sent).
        writer: What `prepare` returned.

    Raises:
        ConnectionResetError: The client already left.
    """

    __slots__ = ("_chunked", "_response", "_transport", "_writer")

    def __init__(self, response: web.StreamResponse, writer: AbstractStreamWriter | None) -> None:
        if not isinstance(writer, StreamWriter):
            raise TypeError(f"unexpected response writer {type(writer).__name__}")
        transport = writer.transport
        if transport is None:
            raise ConnectionResetError("the client left")
        self._response = response
        self._writer = writer
        self._transport = transport
        self._chunked = writer.chunked

    def write_nowait(self, data: bytes) -> bool:
        """Writes `data` to the transport unless more than `BACKLOG_BYTES` wait there."""
        transport = self._transport
        if transport.is_closing():
            raise ConnectionResetError("the client left")
        if transport.get_write_buffer_size() > BACKLOG_BYTES:
            return False
        transport.write(_chunk(data) if self._chunked else data)
        return True

    async def write(self, data: bytes) -> None:
        """Writes `data` through the response, then waits until the client reads enough."""
        await self._response.write(data)
        await self._writer.drain()


_last_chunk: tuple[bytes, bytes] = (b"", b"")


def _chunk(data: bytes) -> bytes:
    # HTTP/1.1 chunked framing, as aiohttp's writer frames what it is given. A stream hands
    # the same bytes to every follower in turn, so the last framing is kept.
    global _last_chunk
    if _last_chunk[0] is not data:
        _last_chunk = (data, b"%x\r\n%b\r\n" % (len(data), data))
    return _last_chunk[1]
