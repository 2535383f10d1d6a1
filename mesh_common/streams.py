"""Ending a client-streaming call early without the caller seeing the wrong status.

grpc.aio clients (grpcio 1.85) have a race: when a server ends a call while the client is
still writing its request stream, the failed write overwrites the server's status, and the
caller sees `INTERNAL: Internal error from Core` instead of, say, INVALID_ARGUMENT or
UNAVAILABLE (grpc/grpc#36066; fix proposed in grpc/grpc#43486). Two habits avoid it:

- A server that refuses a call before reading it (overload) refuses before sending its
  initial metadata, and a client that waits for that metadata before writing
  (`gated_requests`) has no write in flight when the refusal arrives.
- A server that fails a call it has started reading first drains the rest of the request
  stream (`drain`, bounded in time, since a live stream may never end), so the status
  arrives after the client has half-closed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Protocol, cast

# How long a server that refuses a client-streaming call keeps reading the client's
# stream so its status reaches the client intact; a client that never half-closes (a
# live session) makes the refusal wait this long.
DRAIN_SECONDS = 2.0
# The same bound for callers that always half-close (gpu.v1: a recording, then its end),
# where only a long stream reaches it and cutting it short would lose the status.
HALF_CLOSED_DRAIN_SECONDS = 10.0


class _StartedCall(Protocol):
    async def initial_metadata(self) -> Any: ...

    def done(self) -> bool: ...


async def drain(requests: AsyncIterator[Any], limit_s: float) -> bool:
    """Reads and discards what is left of a request stream.

    Args:
        requests: The rest of the stream.
        limit_s: Longest time to keep reading.

    Returns:
        True when the client ended its stream within the limit.
    """
    try:
        async with asyncio.timeout(limit_s):
            async for _ in requests:
                pass
    except TimeoutError:
        return False
    return True


async def gated_requests[T](
    call: asyncio.Future[_StartedCall], requests: AsyncIterator[T]
) -> AsyncIterator[T]:
    """A request stream that starts only once the server has accepted the call.

    Args:
        call: Resolves to the call this stream feeds (set right after starting it).
        requests: The messages to send.

    Yields:
        The messages, after the server's initial metadata arrived; nothing when the call
        ended first.
    """
    started = await call
    await started.initial_metadata()
    if started.done():
        return
    async for request in requests:
        yield request


async def read_ahead[T](items: AsyncIterator[T], depth: int = 1) -> AsyncGenerator[T]:
    """Yields the items of a stream while the next ones are already being read.

    A consumer that awaits other I/O for each item (a database write) then overlaps it
    with receiving the next; a consumer whose I/O comes in bursts (a part stored every few
    items) keeps the stream flowing meanwhile with a larger `depth`. Close it
    (`contextlib.aclosing`) when done: that stops the reads in flight. Until then, reading
    on (`drain`) loses nothing.

    Args:
        items: The stream.
        depth: How many items are read ahead of the consumer at most.

    Yields:
        Its items, in order.
    """
    end = object()

    async def after(previous: asyncio.Future[object] | None) -> object:
        # One read at a time, in order: each waits for the one before it.
        if previous is not None and await previous is end:
            return end
        return await anext(items, end)

    pending: deque[asyncio.Future[object]] = deque()
    last: asyncio.Future[object] | None = None
    for _ in range(depth):
        last = asyncio.ensure_future(after(last))
        pending.append(last)
    try:
        while (item := await pending.popleft()) is not end:
            last = asyncio.ensure_future(after(last))
            pending.append(last)
            yield cast(T, item)
    finally:
        for read in pending:
            read.cancel()


def start_gated[C: _StartedCall](
    method: Callable[..., C], requests: AsyncIterator[Any], **kwargs: Any
) -> C:
    """Starts a client-streaming call whose requests wait for the server to accept it.

    Only for servers that send initial metadata once they accept a call (gpu_node and
    gpu_proxy do); with any other server the call would wait forever.

    Args:
        method: A stream-stream or stream-unary multicallable (`stub.Recognize`).
        requests: The request messages.
        **kwargs: Passed to the call (`timeout`, `metadata`...).

    Returns:
        The call.
    """
    handle: asyncio.Future[_StartedCall] = asyncio.get_running_loop().create_future()
    call = method(gated_requests(handle, requests), **kwargs)
    handle.set_result(call)
    return call
