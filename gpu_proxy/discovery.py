"""The GPU nodes, found from a DNS name as well as a static list, re-resolved periodically.

A Kubernetes headless Service answers its name with the address of every ready pod
behind it; `MESH_GPU_NODES_DNS=gpu-node.meeting-mesh.svc:50061` makes each of them a node.
Every `interval` the name is resolved again: a new address joins the pool (started, then
offered to calls), a vanished one leaves it at once for new calls while its calls in
flight run on over their own connections (a node that is really gone fails them, and the
forwarder retries them elsewhere, as for any failed node); it is closed once idle. A
failed resolution changes nothing: a DNS outage must not empty a working pool.

Nodes addressed by IP have their certificates checked against `gpu_node_tls_name`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence

from gpu_proxy.node import Node
from gpu_proxy.pool import RETIRE_GRACE_S
from mesh_common.logging import logger

Resolve = Callable[[str, int], Awaitable[Sequence[str]]]

# How often a node that left is checked for calls still in flight.
_IDLE_CHECK_S = 0.5


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (every A and AAAA record), sorted."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def target(address: str, port: int) -> str:
    """The "host:port" of an address (IPv6 in brackets)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class NodeDiscovery:
    """Keeps `nodes` equal to the static targets plus those the DNS name resolves to.

    Args:
        name: The DNS name and port, "host:port".
        static: Targets that are always nodes.
        nodes: The list the balancer reads; changed in place.
        make_node: Makes the node for a target (not started).
        interval: Seconds between resolutions.
        on_change: Called after nodes joined or left.
        resolve: Resolves a name to addresses (`resolve_addresses`; tests pass their own).
    """

    def __init__(
        self,
        name: str,
        static: Sequence[str],
        nodes: list[Node],
        make_node: Callable[[str], Node],
        interval: float,
        on_change: Callable[[], None],
        resolve: Resolve = resolve_addresses,
    ) -> None:
        host, _, port = name.rpartition(":")
        self._host, self._port = host, int(port)
        self._static = list(static)
        self._nodes = nodes
        self._make_node = make_node
        self._interval = interval
        self._on_change = on_change
        self._resolve = resolve
        self._leaving: set[asyncio.Task[None]] = set()
        self._log = logger.bind(name=name)

    async def refresh(self) -> None:
        """Resolves the name once and lets nodes join or leave accordingly."""
        try:
            addresses = await self._resolve(self._host, self._port)
        except OSError as error:
            self._log.bind(error=str(error)).warning("gpu node discovery failed; nodes kept")
            return
        wanted = dict.fromkeys(
            [*self._static, *(target(address, self._port) for address in addresses)]
        )
        current = {node.target: node for node in self._nodes}
        joining = [self._make_node(t) for t in wanted if t not in current]
        await asyncio.gather(*(node.start() for node in joining))
        leaving = [node for t, node in current.items() if t not in wanted]
        for node in leaving:
            self._nodes.remove(node)
            task = asyncio.create_task(self._close_when_idle(node), name=f"leave {node.target}")
            self._leaving.add(task)
            task.add_done_callback(self._leaving.discard)
        self._nodes.extend(joining)
        if joining or leaving:
            self._log.bind(
                joined=[n.target for n in joining], left=[n.target for n in leaving]
            ).info("gpu nodes changed")
            self._on_change()

    async def run(self) -> None:
        """Refreshes every `interval` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    async def close(self) -> None:
        """Closes the nodes that left and still had calls in flight."""
        for task in self._leaving:
            task.cancel()
        await asyncio.gather(*self._leaving, return_exceptions=True)

    async def _close_when_idle(self, node: Node) -> None:
        try:
            async with asyncio.timeout(RETIRE_GRACE_S):
                while node.outstanding:  # noqa: ASYNC110 - the balancer signals no one node
                    await asyncio.sleep(_IDLE_CHECK_S)
        except TimeoutError:
            pass
        finally:
            await node.close()
