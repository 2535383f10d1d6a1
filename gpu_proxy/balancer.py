"""Which node takes a call: the usable one with the least work in flight, within a cap.

Each node takes at most `max_streams` calls at once. When every usable node is at its cap,
a call waits in a bounded queue; a call that finds the queue full, or waits too long, fails
at once with RESOURCE_EXHAUSTED and a retry hint, so overload reaches the caller as
back-pressure instead of as growing latency. When no node is usable at all (every breaker
open), a call fails at once with UNAVAILABLE: waiting would not help.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager

from contract_errors.gpu import GpuError
from gen.gpu.v1 import gpu_pb2
from gpu_proxy.node import Node


class Balancer:
    """Leases nodes to calls.

    Args:
        max_streams: Calls in flight per node.
        queue_length: Calls that may wait for a free node.
        queue_timeout: Longest wait, in seconds.
        retry_after: The retry hint of RESOURCE_EXHAUSTED, in seconds.
        unavailable_retry_after: The retry hint when no node is usable.
    """

    def __init__(
        self,
        max_streams: int,
        queue_length: int,
        queue_timeout: float,
        retry_after: float,
        unavailable_retry_after: float,
    ) -> None:
        self.nodes: Sequence[Node] = ()
        self.max_streams = max_streams
        self.queue_length = queue_length
        self.queue_timeout = queue_timeout
        self.retry_after = retry_after
        self.unavailable_retry_after = unavailable_retry_after
        self.waiting = 0
        self._changed = asyncio.Event()
        self._turn = itertools.count()

    def wake(self) -> None:
        """Tells waiting calls that a node's load or state changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    def any_usable(self) -> bool:
        """Whether at least one node's breaker lets calls through."""
        return any(node.breaker.usable for node in self.nodes)

    @asynccontextmanager
    async def lease(self, avoid: Collection[str] = ()) -> AsyncIterator[Node]:
        """Holds a slot on the best node for the duration of the block.

        Args:
            avoid: Targets already tried by this call; used only when no other node is
                free.

        Yields:
            The node.

        Raises:
            MeshError: OVERLOADED when the queue is full or the wait too long;
                BACKEND_UNAVAILABLE when no node is usable.
        """
        node = None if self.waiting else self._pick(avoid)
        if node is None:
            node = await self._wait(avoid)
        node.outstanding += 1
        node.breaker.on_call_start()
        try:
            yield node
        finally:
            node.outstanding -= 1
            self.wake()

    async def _wait(self, avoid: Collection[str]) -> Node:
        self._check_usable()
        if self.waiting >= self.queue_length:
            raise self._overloaded(f"all GPU nodes are busy and {self.waiting} calls wait")
        self.waiting += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                while (node := self._pick(avoid)) is None:
                    self._check_usable()
                    await self._changed.wait()
                return node
        except TimeoutError:
            raise self._overloaded(
                f"no GPU node was free within {self.queue_timeout:g} s"
            ) from None
        finally:
            self.waiting -= 1

    def _pick(self, avoid: Collection[str]) -> Node | None:
        free = [
            node
            for node in self.nodes
            if node.breaker.can_take_call() and node.outstanding < self.max_streams
        ]
        fresh = [node for node in free if node.target not in avoid] or free
        if not fresh:
            return None
        least = min(node.outstanding for node in fresh)
        tied = [node for node in fresh if node.outstanding == least]
        # Rotate among equally loaded nodes so idle capacity is spread, not piled on one.
        return tied[next(self._turn) % len(tied)]

    def _check_usable(self) -> None:
        if not self.any_usable():
            raise GpuError(
                gpu_pb2.ERROR_REASON_BACKEND_UNAVAILABLE,
                "no GPU node is available (all circuit breakers are open)",
                {"cause": "circuit_open"},
                retry_after=self.unavailable_retry_after,
            )

    def _overloaded(self, message: str) -> GpuError:
        return GpuError(
            gpu_pb2.ERROR_REASON_OVERLOADED,
            message,
            {"max_streams_per_node": str(self.max_streams), "queue_length": str(self.queue_length)},
            retry_after=self.retry_after,
        )
