"""gpu_proxy finds its nodes from a DNS name: nodes join and leave without a restart.

The name is resolved by a resolver the test controls, to loopback addresses (every
127.0.0.0/8 address works on Linux), each with a real node on the same port; the nodes'
certificates are checked against `gpu_node_tls_name`, since they are addressed by IP.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from grpc_health.v1 import health_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_node.server import RunningNode, run_gpu_node
from gpu_proxy.server import RunningProxy, run_gpu_proxy
from mesh_common.grpc_server import check_health
from mesh_common.ports import free_port
from mesh_common.streams import start_gated
from tests.support.gpu import (
    WAIT,
    Gate,
    Pki,
    eventually,
    node_settings,
    pcm16,
    proxy_settings,
    recognize,
    stubs,
    tone,
)

NAME = "gpu-node.mesh.test"


class Dns:
    """A resolver answering NAME with whatever addresses the test sets (or failing)."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.addresses = list(addresses)
        self.failing = False
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        assert host == NAME
        self.calls += 1
        if self.failing:
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return list(self.addresses)


def targets(proxy: RunningProxy) -> list[str]:
    return [node.target for node in proxy.nodes]


def started(node: RunningNode) -> int:
    return node.admission.started["Recognize"]


async def test_nodes_join_and_leave_as_the_name_resolves_differently(pki: Pki) -> None:
    port = free_port("127.0.0.2")
    first_target, second_target = f"127.0.0.2:{port}", f"127.0.0.3:{port}"
    dns = Dns(["127.0.0.2"])
    settings = proxy_settings(
        pki, [], gpu_nodes_dns=f"{NAME}:{port}", gpu_nodes_dns_interval_s=0.05
    )
    async with (
        run_gpu_node(node_settings(pki, gpu_node_host="127.0.0.2", gpu_node_port=port)) as first,
        run_gpu_node(node_settings(pki, gpu_node_host="127.0.0.3", gpu_node_port=port)) as second,
        run_gpu_proxy(settings, resolve=dns) as proxy,
    ):
        assert targets(proxy) == [first_target]
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            assert await recognize(gpu, tone(0.5))
            assert (started(first), started(second)) == (1, 0)

            # A second address: the node joins, and takes the next call while the first
            # node is busy with one.
            dns.addresses.append("127.0.0.3")
            await eventually(lambda: targets(proxy) == [first_target, second_target], "joined")
            gate = Gate[gpu_pb2.RecognizeRequest]()
            held = start_gated(gpu.recognition.Recognize, aiter(gate), timeout=WAIT)
            gate.push(gpu_pb2.RecognizeRequest(config=gpu_pb2.RecognitionConfig()))
            gate.push(gpu_pb2.RecognizeRequest(audio=pcm16(tone(0.5))))
            await eventually(lambda: started(first) + started(second) == 2, "placed")
            busy, idle = (first, second) if started(first) == 2 else (second, first)
            before = started(idle)
            assert await recognize(gpu, tone(0.5))
            assert started(idle) == before + 1

            # The busy node's address goes: it leaves the pool at once, and the call in
            # flight on it finishes there.
            dns.addresses.remove("127.0.0.2" if busy is first else "127.0.0.3")
            remaining = second_target if busy is first else first_target
            await eventually(lambda: targets(proxy) == [remaining], "left")
            gate.end()
            responses = [r async for r in held]
            assert responses and responses[-1].segment.is_final
            before = started(busy)
            for _ in range(3):
                assert await recognize(gpu, tone(0.5))
            assert started(busy) == before

            # A failed resolution keeps the nodes it had.
            dns.failing = True
            dns.addresses = []
            calls = dns.calls
            await eventually(lambda: dns.calls >= calls + 2, "resolved again")
            assert await recognize(gpu, tone(0.5))
            assert targets(proxy) == [remaining]
            assert await check_health(channel) == health_pb2.HealthCheckResponse.SERVING


async def test_a_name_with_no_node_yet_serves_once_one_appears(pki: Pki) -> None:
    port = free_port("127.0.0.4")
    dns = Dns([])
    settings = proxy_settings(
        pki, [], gpu_nodes_dns=f"{NAME}:{port}", gpu_nodes_dns_interval_s=0.05
    )
    async with run_gpu_proxy(settings, resolve=dns) as proxy:
        channel, gpu = stubs(pki, proxy.address)
        async with channel:
            assert targets(proxy) == []
            assert await check_health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
            async with run_gpu_node(
                node_settings(pki, gpu_node_host="127.0.0.4", gpu_node_port=port)
            ):
                dns.addresses = ["127.0.0.4"]
                await eventually(lambda: targets(proxy) == [f"127.0.0.4:{port}"], "joined")
                assert await recognize(gpu, tone(0.5))
                assert await check_health(channel) == health_pb2.HealthCheckResponse.SERVING
