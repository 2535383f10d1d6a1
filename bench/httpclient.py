"""Bare asyncio HTTP/1.1 clients for the load generator: cheaper per byte than any library.

`put_stream` streams a large body from one repeated block (no file, no copy per request);
`sse_subscribe` reads an event stream line by line and only parses the `id:` lines.
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


async def sse_subscribe(
    url: str,
    authorization: str,
    on_event: Callable[[int, float], None],
    connected: Callable[[], None],
    last_sequence: int,
) -> None:
    """Follows an SSE stream, calling `on_event(sequence, receive_time)` for each event.

    Args:
        url: The event stream's URL.
        authorization: The `Authorization` header value.
        on_event: Called with the `id:` of each event and `time.time()` on arrival.
        connected: Called once the response headers arrived (the stream is open).
        last_sequence: Returns after the event with this sequence.

    Raises:
        RuntimeError: The stream answered other than 200.
    """
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port, limit=1 << 20)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: {authorization}\r\nAccept: text/event-stream\r\n\r\n"
        )
        writer.write(request.encode())
        status_line = await reader.readline()
        if b" 200 " not in status_line:
            raise RuntimeError(f"event stream answered {status_line!r}")
        while await reader.readline() not in (b"\r\n", b""):
            pass
        connected()
        # The body is chunked; chunk-size lines are skipped like any line that is not `id:`.
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"id: "):
                sequence = int(line[4:])
                on_event(sequence, time.time())
                if sequence >= last_sequence:
                    return
    finally:
        writer.close()
