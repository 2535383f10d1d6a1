"""Calls that a stopping replica drops unstarted go to the next replica.

A grpc server asked to stop, even with a grace period, ends every call it has received but
not yet handed to a handler with CANCELLED (grpc/grpc#41785), as if its caller had given
up. Under load that is any call that arrived while the replica's event loop was busy. The
gateway's channel sends such a unary call again, to the next replica.

The replica here is a real grpc.aio server whose health check, asked for "hold", blocks
the server's event loop while the test's calls arrive, then stops the server: the calls
that came meanwhile are exactly the ones it received and never started.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.channel import CHANNEL_OPTIONS
from tests.meeting_service.helpers import health_stub

CALLS = 6
# How long the replica's loop stays blocked once the calls may be sent: loopback delivers
# them in well under a millisecond; the rest is room for a loaded machine.
HOLD_S = 2.0


@dataclass
class Replica:
    """A health server on loopback; `answered` counts the checks it ran to the end."""

    port: int
    holding: threading.Event = field(default_factory=threading.Event)
    answered: int = 0


class _Health(health_pb2_grpc.HealthServicer):
    def __init__(self, replica: Replica, server: grpc.aio.Server) -> None:
        self._replica = replica
        self._server = server

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        if request.service == "hold":
            self._replica.holding.set()
            # Blocks the loop on purpose: what arrives now is received, not started.
            time.sleep(HOLD_S)  # noqa: ASYNC251
            asyncio.get_running_loop().create_task(self._server.stop(grace=5))
        else:
            self._replica.answered += 1
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@asynccontextmanager
async def replica() -> AsyncIterator[Replica]:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    state = Replica(port)
    health_pb2_grpc.add_HealthServicer_to_server(_Health(state, server), server)
    await server.start()
    try:
        yield state
    finally:
        await server.stop(grace=None)


def calls_while_held(
    target: str, holder: Replica, options: list[tuple[str, str | int]]
) -> list[tuple[grpc.StatusCode, str] | None]:
    """CALLS checks, each on a channel of its own, sent while `holder`'s loop is blocked.

    Run it in a thread. The client is grpc's synchronous one, whose threads are its own,
    so the replica's blocked loop cannot hold its calls back; the replica accepts each new
    connection and receives its call, but cannot start it.

    Returns:
        Each call's status code and details, or None where it succeeded.
    """
    if not holder.holding.wait(10):
        raise TimeoutError("the replica never held")
    request = health_pb2.HealthCheckRequest(service="check")
    channels = [grpc.insecure_channel(target, options=options) for _ in range(CALLS)]
    try:
        futures = [health_stub(channel).Check.future(request, timeout=10) for channel in channels]
        outcomes: list[tuple[grpc.StatusCode, str] | None] = []
        for future in futures:
            try:
                future.result()
            except grpc.RpcError as error:
                outcomes.append((error.code(), error.details() or ""))
            else:
                outcomes.append(None)
        return outcomes
    finally:
        for channel in channels:
            channel.close()


async def hold(holder: Replica) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{holder.port}") as channel:
        await health_stub(channel).Check(health_pb2.HealthCheckRequest(service="hold"), timeout=10)


async def test_the_gateway_channel_sends_them_again_to_the_next_replica() -> None:
    async with replica() as stopping, replica() as other:
        target = f"ipv4:127.0.0.1:{stopping.port},127.0.0.1:{other.port}"
        results = asyncio.create_task(
            asyncio.to_thread(calls_while_held, target, stopping, CHANNEL_OPTIONS)
        )
        await hold(stopping)
        outcomes = await results
    assert outcomes == [None] * CALLS
    # The stopping replica started at most the one call its server had already asked for
    # (grpc.aio asks for the next call ahead); the other replica answered the rest.
    assert stopping.answered <= 1
    assert stopping.answered + other.answered == CALLS
