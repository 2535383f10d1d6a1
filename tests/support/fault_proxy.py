"""A TCP proxy that breaks the network on demand, placed between two services in tests.

    async with FaultProxy("127.0.0.1", upstream_port) as proxy:
        ...  # point the client at proxy.address
        proxy.blackhole()  # bytes stop flowing both ways; no FIN, no RST
        proxy.heal()
        await proxy.reset()  # every open connection is cut with an RST

Faults:
- `latency(s)`: each chunk is held `s` seconds before it is passed on.
- `blackhole()`: nothing is passed on, either way, on open or new connections, and nobody
  is told: what a peer sees when the other one's machine or network vanished. `heal()`
  lets the held bytes through, as a network that comes back would. `held` counts the
  chunks that waited in the black hole (a peer stuck sending shows as `held > 0`).
- `reset()`: every open connection is aborted with an RST on both sides.
- `refuse()`: new connections are cut with an RST as they arrive, until `heal()`; open ones
  are left as they are (a database whose pooled connections fail while its LISTEN
  connection, dialled directly, stays up).
- `half_open()`: the upstream side of every open connection is closed; the client side
  stays open and what it sends is dropped (the client never learns: a peer that
  rebooted).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType

_CHUNK = 64 * 1024


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    upstream_gone: bool = False
    pumps: list[asyncio.Task[None]] = field(default_factory=list)


class FaultProxy:
    """Forwards TCP connections from a free loopback port to `host:port`, with faults.

    Args:
        host: The upstream host.
        port: The upstream port.
    """

    def __init__(self, host: str, port: int) -> None:
        self._upstream = (host, port)
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._latency_s = 0.0
        self._held = 0
        self._refusing = False
        self.port = 0

    @property
    def address(self) -> str:
        """The `host:port` clients dial."""
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
        self._flowing.set()
        await self.reset()
        if self._server is not None:
            await self._server.wait_closed()

    def latency(self, seconds: float) -> None:
        """Holds each chunk `seconds` before passing it on (0 for none)."""
        self._latency_s = seconds

    @property
    def held(self) -> int:
        """Chunks that have waited in the black hole since the proxy started."""
        return self._held

    def blackhole(self) -> None:
        """Stops passing bytes on, either way, without telling either side."""
        self._flowing.clear()

    def heal(self) -> None:
        """Passes bytes on again (those held first) and takes new connections again.

        Latency stays as set.
        """
        self._flowing.set()
        self._refusing = False

    def refuse(self) -> None:
        """Cuts each new connection with an RST as it arrives, until `heal()`."""
        self._refusing = True

    async def reset(self) -> None:
        """Aborts every open connection with an RST to both sides."""
        connections, self._connections = self._connections, set()
        for connection in connections:
            _abort(connection.client)
            _abort(connection.upstream)
            for pump in connection.pumps:
                pump.cancel()
        for connection in connections:
            await asyncio.gather(*connection.pumps, return_exceptions=True)

    def half_open(self) -> None:
        """Closes the upstream side of every open connection; the client side stays open."""
        for connection in self._connections:
            connection.upstream_gone = True
            connection.upstream.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            _abort(writer)  # nobody upstream: refuse, as the upstream itself would
            return
        connection = _Connection(writer, up_writer)
        self._connections.add(connection)
        connection.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, connection)),
            asyncio.create_task(self._pump(up_reader, writer, connection)),
        ]
        await asyncio.gather(*connection.pumps, return_exceptions=True)
        self._connections.discard(connection)
        for side in (writer, up_writer):
            side.close()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, connection: _Connection
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(_CHUNK):
                if self._latency_s:
                    await asyncio.sleep(self._latency_s)
                if not self._flowing.is_set():
                    self._held += 1
                await self._flowing.wait()
                if connection.upstream_gone:
                    continue  # the half-open client's bytes go nowhere
                sink.write(data)
                await sink.drain()
            if not connection.upstream_gone and sink.can_write_eof():
                sink.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            # A zero linger makes the close an RST rather than a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
