"""Bare asyncio HTTP/1.1 clients for the load generator: cheaper per byte than any library.

`put_stream` streams a large body from one repeated block (no file, no copy per request);
`sse_subscribe` reads an event stream as it arrives and only parses the `id:` lines.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class PutResult:
    """How a streamed PUT went.

    Attributes:
        status: The HTTP status.
        body: The response body, parsed as JSON when it is JSON.
        seconds: From the first byte sent to the whole response read.
    """

    status: int
    body: Any
    seconds: float


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length: int | None = None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await (reader.readexactly(length) if length is not None else reader.read())
    return status, body


async def put_stream(
    url: str,
    head: bytes,
    block: bytes,
    total: int,
    headers: dict[str, str],
) -> PutResult:
    """PUTs `total` bytes: `head`, then `block` repeated (the last one cut to fit).

    Args:
        url: The URL.
        head: The first bytes (e.g. a WAV header).
        block: What fills the rest.
        total: Body size, sent as Content-Length.
        headers: Further request headers.

    Returns:
        The response and the time taken.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"PUT {parts.path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {total}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += ["Connection: close", "", ""]
    started = time.perf_counter()
    try:
        writer.write("\r\n".join(lines).encode())
        writer.write(head)
        sent = len(head)
        view = memoryview(block)
        while sent < total:
            piece = view[: min(len(block), total - sent)]
            writer.write(piece)
            sent += len(piece)
            await writer.drain()
        status, raw = await _read_response(reader)
    finally:
        writer.close()
    seconds = time.perf_counter() - started
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw[:500].decode(errors="replace")
    return PutResult(status, body, seconds)


_ID = b"\nid: "


class _EventReader(asyncio.Protocol):
    """Reads one SSE response as it arrives, calling back for each `id:` line.

    A protocol rather than a stream reader: each block of a stream is handled in the
    loop's own callback, with no task to wake per subscriber per event, so that one
    process can read thousands of streams.
    """

    def __init__(
        self,
        on_event: Callable[[int, float], None],
        connected: Callable[[], None],
        last_sequence: int,
        done: asyncio.Future[None],
        hold: bool,
    ) -> None:
        self._on_event = on_event
        self._hold = hold
        self._connected = connected
        self._last_sequence = last_sequence
        self._done = done
        self._in_body = False
        self._pending = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        when = time.time()
        pending = self._pending + data
        if not self._in_body:
            head_end = pending.find(b"\r\n\r\n")
            if head_end < 0:
                self._pending = pending
                return
            status_line = pending[: pending.find(b"\r\n")]
            if b" 200 " not in status_line:
                self._finish(RuntimeError(f"event stream answered {status_line!r}"))
                return
            self._in_body = True
            self._connected()
            pending = pending[head_end + 2 :]  # keeps the "\r\n" before the first chunk
        # Each event's `id:` line begins a chunk (after its size line); nothing else matters.
        start = 0
        while (found := pending.find(_ID, start)) >= 0:
            end = pending.find(b"\n", found + len(_ID))
            if end < 0:
                break
            sequence = int(pending[found + len(_ID) : end])
            self._on_event(sequence, when)
            if sequence >= self._last_sequence and not self._hold:
                self._finish(None)
                return
            start = end
        else:
            start = max(start, len(pending) - len(_ID) + 1)
        self._pending = pending[start:]

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def _finish(self, error: BaseException | None) -> None:
        if not self._done.done():
            if error is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(error)
        if self._transport is not None:
            self._transport.close()


async def sse_subscribe(
    url: str,
    authorization: str,
    on_event: Callable[[int, float], None],
    connected: Callable[[], None],
    last_sequence: int,
    close_when: asyncio.Future[None] | None = None,
) -> None:
    """Follows an SSE stream, calling `on_event(sequence, receive_time)` for each event.

    Args:
        url: The event stream's URL.
        authorization: The `Authorization` header value.
        on_event: Called with the `id:` of each event and `time.time()` on arrival.
        connected: Called once the response headers arrived (the stream is open).
        last_sequence: Returns after the event with this sequence.
        close_when: Instead of returning after the last event, keeps reading until this
            future is done, so that subscribers hanging up (or merely waking up) as they get
            the last event do not load either side while it still reaches the others.

    Raises:
        RuntimeError: The stream answered other than 200.
        ConnectionError: The connection broke.
    """
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: _EventReader(on_event, connected, last_sequence, done, close_when is not None),
        parts.hostname or "127.0.0.1",
        parts.port or 80,
    )
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {authorization}\r\nAccept: text/event-stream\r\n\r\n"
        )
        transport.write(request.encode())
        if close_when is not None:
            # Futures, not coroutines: waiting makes no task. Only an error ends `done` first.
            await asyncio.wait((done, close_when), return_when=asyncio.FIRST_COMPLETED)
            if not done.done():
                return
        await done
    finally:
        transport.close()
