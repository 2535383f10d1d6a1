"""A bare gRPC hop in Python: an mTLS relay of `Recognize` to one node, and nothing more.

`proxy_overhead`'s reference: a practical floor for what a gRPC-level proxy written with
grpc.aio pays per stream on this host. The caller's request stream goes as it arrives into
one call on one channel to the node, and the node's responses come back as they arrive,
all as the bytes they came in (no parse, no serialize), with gpu_proxy's certificate,
message limits and lane metadata. None of gpu_proxy's own work is here: no balancing or
admission, no replay buffer, no circuit breaker, no retries, no read-ahead, no spans,
metrics or access lines. Like gpu_proxy it accepts a call only once the node did, so
`gpu_client`'s gated calls (which wait for that before sending audio) work through it
unchanged, and a call the node refuses ends with the node's status.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from gpu_proxy.server import MAX_MESSAGE_BYTES
from gpu_proxy.servicers import RECOGNITION, RECOGNIZE
from mesh_common.lanes import LANE_KEY, lane_of
from mesh_common.tls import KeyPair, channel_credentials, server_credentials

_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


@contextlib.asynccontextmanager
async def bare_relay(node: str, identity: KeyPair, ca: Path) -> AsyncIterator[str]:
    """Serves the relay on a free loopback port for the duration of the block.

    Args:
        node: "host:port" of the gpu_node.
        identity: The certificate the relay serves and presents to the node.
        ca: The CA both sides' certificates chain to.

    Yields:
        The relay's "host:port".
    """
    channel = grpc.aio.secure_channel(node, channel_credentials(identity, ca), options=_OPTIONS)
    recognize: grpc.aio.StreamStreamMultiCallable[bytes, bytes]
    recognize = channel.stream_stream(RECOGNIZE)

    async def relay(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        lane = lane_of(context.invocation_metadata())
        call = recognize(requests, timeout=context.time_remaining(), metadata=((LANE_KEY, lane),))
        try:
            await call.initial_metadata()
            if not call.done():  # accepted by the node: accept it here too
                await context.send_initial_metadata(())
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as error:  # the node's status, as the caller's
            await context.abort(error.code(), error.details() or "")

    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                RECOGNITION, {"Recognize": grpc.stream_stream_rpc_method_handler(relay)}
            )
        ]
    )
    port = server.add_secure_port("127.0.0.1:0", server_credentials(identity, ca))
    if port == 0:
        raise RuntimeError("the bare relay cannot listen on loopback")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(grace=1.0)
        await channel.close()
