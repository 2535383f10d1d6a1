"""Headless Chromium for the browser tests, and a proxy that drops a connection.

The browser is the Debian `chromium` package driven by Playwright (`playwright install`
cannot download here; `.ci/run` installs the package). Screenshots go to
`test-artifacts/browser/` (or `$MESH_TEST_ARTIFACTS`), which CI keeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs the Debian chromium package (.ci/run installs it)"
)
ARTIFACTS = Path(os.environ.get("MESH_TEST_ARTIFACTS", "test-artifacts")) / "browser"


@contextlib.asynccontextmanager
async def chromium(profile: Path, microphone: Path | None = None) -> AsyncIterator[BrowserContext]:
    """Runs headless Chromium with a fresh profile.

    Args:
        profile: An empty directory for the user data.
        microphone: A WAV file the fake microphone plays in a loop (permission granted
            without a prompt); None for no microphone flags.

    Yields:
        The browser's context.
    """
    flags = list(CHROMIUM_FLAGS)
    if microphone is not None:
        flags += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
        ]
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=flags,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context
        finally:
            await context.close()


async def screenshot(page: Page, name: str) -> Path:
    """Saves a full-page screenshot as a test artifact and prints where.

    Args:
        page: The page.
        name: The file's stem.

    Returns:
        The PNG's path.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path.resolve()}")
    return path


@dataclass
class DroppingProxy:
    """A TCP proxy that drops the first connection to send more than `drop_after` bytes;
    it answers one request per connection.

    Attributes:
        url: "http://127.0.0.1:<port>".
        drop_after: Bytes a connection may send upstream before it is cut.
        before_drop: Awaited between the last bytes passed on and the cut (a test waits
            there until the server has stored part of the upload).
        dropped: Whether a connection was cut.
    """

    url: str
    drop_after: int
    before_drop: Callable[[], Awaitable[None]] | None = None
    dropped: bool = False


@contextlib.asynccontextmanager
async def dropping_proxy(target_port: int, drop_after: int) -> AsyncIterator[DroppingProxy]:
    """Proxies 127.0.0.1:`target_port`, cutting one connection mid-request, as a network
    failure would in the middle of an upload or a live stream.

    Args:
        target_port: The server's port.
        drop_after: Bytes a connection may send before the first cut.

    Yields:
        The proxy.
    """

    async def uplink(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        sent = 0
        while data := await source.read(64 * 1024):
            if not proxy.dropped and sent + len(data) > proxy.drop_after:
                sink.write(data[: proxy.drop_after - sent])
                await sink.drain()
                if proxy.before_drop is not None:
                    await proxy.before_drop()
                proxy.dropped = True
                return
            sent += len(data)
            sink.write(data)
            await sink.drain()

    async def downlink(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        # One request per connection: a browser resends a request whose reused connection
        # fails before any answer, which would hide the drop from the page. (A WebSocket
        # upgrade keeps its connection by nature.)
        head = await source.readuntil(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 101"):
            sink.write(head)
        else:
            sink.write(head[:-2] + b"Connection: close\r\n\r\n")
        while data := await source.read(64 * 1024):
            sink.write(data)
            await sink.drain()

    open_sides: set[asyncio.StreamWriter] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        open_sides.update((writer, up_writer))
        tasks = {
            asyncio.ensure_future(uplink(reader, up_writer)),
            asyncio.ensure_future(downlink(up_reader, writer)),
        }
        # Either side ending ends the connection: a drop closes both at once.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for task in done:
            # A side that ended by a reset or a short answer: that is how connections end.
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                task.result()
        for side in (writer, up_writer):
            side.transport.abort()
            open_sides.discard(side)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy = DroppingProxy(f"http://127.0.0.1:{port}", drop_after)
    try:
        yield proxy
    finally:
        server.close()
        # The browser keeps idle connections open; waiting for it to close them would hang.
        for side in open_sides:
            side.transport.abort()
        await server.wait_closed()
