"""Which node takes a call: the usable one with the least work in flight, within a cap.

Each node takes at most `max_streams` calls at once, and besides them `max_live_streams`
live recognition streams (`mesh_common.lanes`), so live audio never waits behind batch
work. When every usable node is at its cap for a call's lane,
a call waits in a bounded queue; a call that finds the queue full, or waits too long, fails
at once with RESOURCE_EXHAUSTED and a retry hint, so overload reaches the caller as
back-pressure instead of as growing latency. When no node is usable at all (every breaker
open), a call fails at once with UNAVAILABLE: waiting would not help.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager

from contract_errors.gpu import GpuError
from gen.gpu.v1 import gpu_pb2
from gpu_proxy.node import Node
from mesh_common.lanes import BATCH, LIVE, Lane


class Balancer:
    """Leases nodes to calls.

    Args:
        max_streams: Calls in flight per node.
        queue_length: Calls that may wait for a free node.
        queue_timeout: Longest wait, in seconds.
        retry_after: The retry hint of RESOURCE_EXHAUSTED, in seconds.
        unavailable_retry_after: The retry hint when no node is usable.
        max_live_streams: Live recognition streams in flight per node, besides the others.
    """

    def __init__(
        self,
        max_streams: int,
        queue_length: int,
        queue_timeout: float,
        retry_after: float,
        unavailable_retry_after: float,
        max_live_streams: int = 4,
    ) -> None:
        self.nodes: Sequence[Node] = ()
        self.max_streams = max_streams
        self.queue_length = queue_length
        self.queue_timeout = queue_timeout
        self.retry_after = retry_after
        self.unavailable_retry_after = unavailable_retry_after
        self._caps: dict[Lane, int] = {BATCH: max_streams, LIVE: max_live_streams}
        self._waiting: Counter[Lane] = Counter()
        self._changed = asyncio.Event()
        self._turn = itertools.count()

    @property
    def waiting(self) -> int:
        """Calls waiting for a free node, in every lane."""
        return self._waiting.total()

    def wake(self) -> None:
        """Tells waiting calls that a node's load or state changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    def any_usable(self) -> bool:
        """Whether at least one node's breaker lets calls through."""
        return any(node.breaker.usable for node in self.nodes)

    @asynccontextmanager
    async def lease(self, avoid: Collection[str] = (), lane: Lane = BATCH) -> AsyncIterator[Node]:
        """Holds a slot on the best node for the duration of the block.

        Args:
            avoid: Targets already tried by this call; used only when no other node is
                free.
            lane: The capacity the call draws on.

        Yields:
            The node.

        Raises:
            MeshError: OVERLOADED when the queue is full or the wait too long;
                BACKEND_UNAVAILABLE when no node is usable.
        """
        node = None if self._waiting[lane] else self._pick(avoid, lane)
        if node is None:
            node = await self._wait(avoid, lane)
        node.outstanding += 1
        node.lanes[lane] += 1
        node.breaker.on_call_start()
        try:
            yield node
        finally:
            node.outstanding -= 1
            node.lanes[lane] -= 1
            self.wake()

    async def _wait(self, avoid: Collection[str], lane: Lane) -> Node:
        self._check_usable()
        if self._waiting[lane] >= self.queue_length:
            raise self._overloaded(
                f"all GPU nodes are busy and {self._waiting[lane]} {lane} calls wait", lane
            )
        self._waiting[lane] += 1
        try:
            async with asyncio.timeout(self.queue_timeout):
                while (node := self._pick(avoid, lane)) is None:
                    self._check_usable()
                    await self._changed.wait()
                return node
        except TimeoutError:
            raise self._overloaded(
                f"no GPU node was free within {self.queue_timeout:g} s", lane
            ) from None
        finally:
            self._waiting[lane] -= 1

    def _pick(self, avoid: Collection[str], lane: Lane) -> Node | None:
        free = [
            node
            for node in self.nodes
            if node.breaker.can_take_call() and node.lanes[lane] < self._caps[lane]
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

    def _overloaded(self, message: str, lane: Lane) -> GpuError:
        return GpuError(
            gpu_pb2.ERROR_REASON_OVERLOADED,
            message,
            {
                "max_streams_per_node": str(self._caps[lane]),
                "queue_length": str(self.queue_length),
                "lane": lane,
            },
            retry_after=self.retry_after,
        )
