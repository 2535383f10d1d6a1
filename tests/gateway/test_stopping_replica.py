"""Calls that a stopping replica drops unstarted go to the next replica.

A grpc server asked to stop, even with a grace period, ends every call it has received but
not yet handed to a handler with CANCELLED (grpc/grpc#41785), as if its caller had given
up. Under load that is any call that arrived while the replica's event loop was busy. The
gateway's channel sends such a call again, to the next replica: unary calls, and uploads
whose first body chunks it kept (gateway/channel.py).

The replica here is a real grpc.aio server whose health check, asked for "hold", blocks
the server's event loop while the test's calls arrive, then stops the server: the calls
that came meanwhile are exactly the ones it received and never started. Its UploadAudio
does what meeting_service's does with the stream's framing: it accepts the call (initial
metadata) as it starts, reads every message and answers the bytes it got.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.channel import channel_config
from gateway.settings import GatewaySettings
from gen.meeting.v1 import meeting_service_pb2, upload_end_pb2
from tests.meeting_service.helpers import health_stub

CALLS = 6
# An upload as the gateway sends it: metadata, two body chunks of its default size, the end.
CHUNK = b"\x01" * GatewaySettings().upload_chunk_bytes
UPLOAD_BYTES = 2 * len(CHUNK)
_SERVICE = meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"].full_name
# How long the replica's loop stays blocked once the calls may be sent: loopback delivers
# them in well under a millisecond; the rest is room for a loaded machine.
HOLD_S = 2.0


@dataclass
class Replica:
    """A health server on loopback; `answered` counts the checks it ran to the end."""

    port: int
    holding: threading.Event = field(default_factory=threading.Event)
    answered: int = 0


class _Uploads:
    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    async def UploadAudio(
        self,
        request_iterator: AsyncIterator[meeting_service_pb2.UploadAudioRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> meeting_service_pb2.UploadAudioResponse:
        await context.send_initial_metadata(())
        stored = 0
        async for request in request_iterator:
            stored += len(request.chunk)
        self._replica.answered += 1
        return meeting_service_pb2.UploadAudioResponse(stored_size=stored, complete=True)

    def handler(self) -> grpc.GenericRpcHandler:
        method = grpc.stream_unary_rpc_method_handler(
            self.UploadAudio,
            request_deserializer=meeting_service_pb2.UploadAudioRequest.FromString,
            response_serializer=meeting_service_pb2.UploadAudioResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(_SERVICE, {"UploadAudio": method})


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
    server.add_generic_rpc_handlers((_Uploads(state).handler(),))
    await server.start()
    try:
        yield state
    finally:
        await server.stop(grace=None)


def _upload() -> Iterator[meeting_service_pb2.UploadAudioRequest]:
    yield meeting_service_pb2.UploadAudioRequest(
        metadata=meeting_service_pb2.UploadMetadata(meeting_id="m", explicit_end=True)
    )
    for _ in range(UPLOAD_BYTES // len(CHUNK)):
        yield meeting_service_pb2.UploadAudioRequest(chunk=CHUNK)
    yield meeting_service_pb2.UploadAudioRequest(
        end=upload_end_pb2.UploadEnd(total_size=UPLOAD_BYTES)
    )


def calls_while_held(
    target: str, holder: Replica, options: list[tuple[str, str | int]]
) -> list[str]:
    """CALLS checks and CALLS uploads, each on a channel of its own, sent while `holder`'s
    loop is blocked.

    Run it in a thread. The client is grpc's synchronous one, whose threads are its own,
    so the replica's blocked loop cannot hold its calls back; the replica accepts each new
    connection and receives its call, but cannot start it.

    Returns:
        Each call's outcome: "ok", or its status code and details.
    """
    if not holder.holding.wait(10):
        raise TimeoutError("the replica never held")
    request = health_pb2.HealthCheckRequest(service="check")
    channels = [grpc.insecure_channel(target, options=options) for _ in range(2 * CALLS)]
    try:
        checks = [
            health_stub(channel).Check.future(request, timeout=10) for channel in channels[:CALLS]
        ]
        uploads = [
            channel.stream_unary(
                f"/{_SERVICE}/UploadAudio",
                request_serializer=meeting_service_pb2.UploadAudioRequest.SerializeToString,
                response_deserializer=meeting_service_pb2.UploadAudioResponse.FromString,
            ).future(_upload(), timeout=10)
            for channel in channels[CALLS:]
        ]
        outcomes: list[str] = []
        for future in [*checks, *uploads]:
            try:
                response = future.result()
            except grpc.RpcError as error:
                outcomes.append(f"{error.code().name}: {error.details()}")
            else:
                whole = getattr(response, "stored_size", UPLOAD_BYTES) == UPLOAD_BYTES
                outcomes.append("ok" if whole else f"stored {response.stored_size}")
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
            asyncio.to_thread(calls_while_held, target, stopping, channel_config(GatewaySettings()))
        )
        await hold(stopping)
        outcomes = await results
    assert outcomes == ["ok"] * (2 * CALLS)
    # The stopping replica started at most the calls its server had already asked for
    # (grpc.aio asks for the next call ahead, one check and one upload here); the other
    # replica answered the rest.
    assert stopping.answered <= 2
    assert stopping.answered + other.answered == 2 * CALLS
