"""One GPU node as the proxy sees it: its channel pool, its breaker, its work in flight.

While the breaker is open, the pool's channels are dropped (so they stop reconnecting) and
the node is probed with `grpc.health.v1` checks on a fresh connection each time, with a
growing interval; a node answering SERVING goes half-open. While it is closed, the node is
health-checked every few seconds on a pool channel, so a node that dies between calls is
noticed without a call failing on it, and one that vanished under its calls (no answer,
no FIN, no RST) has them failed within `health_interval + probe_timeout`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
from grpc_health.v1 import health_pb2

from gpu_proxy.breaker import BreakerState, CircuitBreaker
from gpu_proxy.pool import ChannelPool
from mesh_common.grpc_server import check_health
from mesh_common.logging import logger


class Node:
    """A node's pool, breaker and load.

    Args:
        pool: Channels to the node.
        breaker_failures: Consecutive failures that open its breaker.
        probe_interval: First wait between probes of an open node, in seconds.
        probe_interval_max: Largest wait between probes.
        probe_timeout: Deadline of one probe or health check.
        health_interval: Wait between health checks of a closed node.
        on_change: Called after every breaker transition (the balancer wakes waiters and
            updates the proxy's health).

    Attributes:
        breaker: The node's circuit breaker; this object reacts to its transitions.
        outstanding: Calls in flight on this node.
    """

    def __init__(
        self,
        pool: ChannelPool,
        breaker_failures: int,
        probe_interval: float,
        probe_interval_max: float,
        probe_timeout: float,
        health_interval: float,
        on_change: Callable[[Node], None],
    ) -> None:
        self.pool = pool
        self.breaker = CircuitBreaker(breaker_failures, self._on_breaker_change)
        self.outstanding = 0
        self._probe_interval = probe_interval
        self._probe_interval_max = probe_interval_max
        self._probe_timeout = probe_timeout
        self._health_interval = health_interval
        self._on_change = on_change
        self._prober: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._log = logger.bind(node=pool.target)

    @property
    def target(self) -> str:
        """The node's "host:port"."""
        return self.pool.target

    async def start(self) -> None:
        """Checks the node once, then keeps watching it in the background."""
        if not await self._healthy(self.pool.channel()):
            self._log.warning("gpu node not reachable at start; probing")
            self.breaker.trip()
        self._watcher = asyncio.create_task(self._watch(), name=f"watch {self.target}")

    async def close(self) -> None:
        """Stops the background checks and closes every channel."""
        for task in (self._prober, self._watcher):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._prober, self._watcher) if t is not None), return_exceptions=True
        )
        await self.pool.close()

    def _on_breaker_change(self, state: BreakerState) -> None:
        self._log.bind(breaker=state.value).info("gpu node breaker {}", state.value)
        if state is BreakerState.OPEN:
            # Calls in flight keep their connections; new calls wait for the probe.
            self.pool.retire()
            if self._prober is None or self._prober.done():
                self._prober = asyncio.create_task(self._probe(), name=f"probe {self.target}")
        self._on_change(self)

    async def _probe(self) -> None:
        interval = self._probe_interval
        while self.breaker.state is BreakerState.OPEN:
            await asyncio.sleep(interval)
            channel = self.pool.new_channel()
            try:
                healthy = await self._healthy(channel)
            finally:
                await channel.close()
            if healthy:
                self.breaker.probe_succeeded()
                return
            interval = min(interval * 2, self._probe_interval_max)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval)
            if self.breaker.state is BreakerState.CLOSED and not await self._healthy(
                self.pool.channel()
            ):
                self._log.warning("gpu node failed its health check; failing its calls")
                # It does not answer even a health check (gone, or its network vanished
                # without a FIN or RST): calls waiting on it would wait for their
                # deadlines. Closing their channels fails them now, and the forwarder
                # moves them to another node or reports UNAVAILABLE.
                self.pool.retire(grace=None)
                self.breaker.trip()

    async def _healthy(self, channel: grpc.aio.Channel) -> bool:
        try:
            status = await check_health(channel, "", deadline=self._probe_timeout)
        except grpc.aio.AioRpcError as error:
            self._log.bind(code=error.code().name).debug("health check failed")
            return False
        return status == health_pb2.HealthCheckResponse.SERVING
