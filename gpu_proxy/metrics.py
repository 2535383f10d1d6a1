"""The proxy's own Prometheus series, read from its nodes and balancer when scraped.

Per node (`node` label, its "host:port"):

- `mesh_gpu_node_breaker_state{node,state}`: 1 for the breaker's current state;
- `mesh_gpu_node_streams_in_flight{node}`: calls the proxy has on the node now;
- `mesh_gpu_node_pool_channels{node}`: connections open to it (and the configured size);

and for the proxy as a whole `mesh_gpu_proxy_queue_length` (calls waiting for a node) and
`mesh_gpu_proxy_queue_capacity`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gpu_proxy.balancer import Balancer
from gpu_proxy.breaker import BreakerState
from gpu_proxy.node import Node


class ProxyCollector(Collector):
    """Reports node and queue state at scrape time (nothing to keep in step).

    Args:
        nodes: The proxy's nodes.
        balancer: Its balancer (the queue).
    """

    def __init__(self, nodes: Sequence[Node], balancer: Balancer) -> None:
        self._nodes = nodes
        self._balancer = balancer

    def collect(self) -> Iterator[Metric]:
        """Yields the series above."""
        breaker = GaugeMetricFamily(
            "mesh_gpu_node_breaker_state",
            "The node's circuit breaker: 1 for its current state.",
            labels=["node", "state"],
        )
        in_flight = GaugeMetricFamily(
            "mesh_gpu_node_streams_in_flight", "Calls on the node now.", labels=["node"]
        )
        channels = GaugeMetricFamily(
            "mesh_gpu_node_pool_channels", "Connections open to the node.", labels=["node"]
        )
        pool_size = GaugeMetricFamily(
            "mesh_gpu_node_pool_size", "Connections the pool keeps to the node.", labels=["node"]
        )
        for node in self._nodes:
            for state in BreakerState:
                breaker.add_metric([node.target, state.value], float(node.breaker.state is state))
            in_flight.add_metric([node.target], node.outstanding)
            channels.add_metric([node.target], len(node.pool.open_channels))
            pool_size.add_metric([node.target], node.pool.size)
        yield breaker
        yield in_flight
        yield channels
        yield pool_size
        yield GaugeMetricFamily(
            "mesh_gpu_proxy_queue_length",
            "Calls waiting for a node under its stream cap.",
            value=self._balancer.waiting,
        )
        yield GaugeMetricFamily(
            "mesh_gpu_proxy_queue_capacity",
            "Most calls that may wait; beyond it calls fail fast.",
            value=self._balancer.queue_length,
        )
