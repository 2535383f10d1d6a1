"""`gpu_scaling`: recognition streams per second through gpu_proxy against 1, 2 and 4 nodes.

Each node runs the mock engine with a fixed cost per stream (`stream_cost_s`: the stream
waits that long, without CPU, once its audio has ended, as a GPU busy with it would), and
the proxy lets `max_streams_per_node` streams in flight per node, so a node serves at most
`max_streams_per_node / stream_cost_s` streams per second and N nodes N times that. Closed-
loop callers in the bench process (twice as many as the nodes' slots, so no slot idles
while its next stream is sent) run short streams for a fixed time; the figure is streams
completed per second. Where the curve falls below N times one node's capacity, something
other than the nodes is the limit: the proxy's CPU per stream (reported, with the streams
per second one proxy core would carry at that cost) says whether it is gpu_proxy. A last
point runs the 4 nodes at no cost: the most the proxy path carries on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

import grpc
import psutil

from bench.context import BenchContext
from bench.model import Check, Result, ratio
from bench.processes import ServiceProcess
from bench.scenarios.proxy import channel, conversation, recognize

NAME = "gpu_scaling"
NODE_COUNTS = (1, 2, 4)
STREAM_COST_S = 0.2
SLOTS_PER_NODE = 4


async def _drive(grpc_channel: grpc.aio.Channel, callers: int, seconds: float, audio: bytes) -> int:
    """Runs `callers` closed-loop streams for `seconds`; returns the streams completed."""
    done = 0
    deadline = time.monotonic() + seconds

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            _, segments = await recognize(grpc_channel, audio)
            if segments == 0:
                raise RuntimeError("a stream through the proxy returned no segments")
            done += 1

    await asyncio.gather(*(caller() for _ in range(callers)))
    return done


async def _point(
    context: BenchContext, nodes: int, seconds: float, audio: bytes, cost_s: float
) -> dict[str, float]:
    pki = context.pki()
    async with contextlib.AsyncExitStack() as stack:
        running: list[ServiceProcess] = [
            await stack.enter_async_context(
                context.service("gpu_node", pki_dir=str(pki), stream_cost_s=cost_s)
            )
            for _ in range(nodes)
        ]
        proxy = await stack.enter_async_context(
            context.service(
                "gpu_proxy",
                pki_dir=str(pki),
                nodes=[n.address for n in running],
                max_streams_per_node=SLOTS_PER_NODE,
                queue_length=256,
            )
        )
        # One channel, as meeting_service holds one connection to the proxy.
        grpc_channel = await stack.enter_async_context(channel(proxy.address, pki))
        callers = 2 * SLOTS_PER_NODE * nodes
        await _drive(grpc_channel, callers, 1.0, audio)  # untimed: handshakes, pools
        bench = psutil.Process(os.getpid())
        proxy_before = proxy.cpu_seconds()
        nodes_before = sum(n.cpu_seconds() for n in running)
        bench_before = sum(bench.cpu_times()[:2])
        started = time.monotonic()
        done = await _drive(grpc_channel, callers, seconds, audio)
        elapsed = time.monotonic() - started
        proxy_cpu = proxy.cpu_seconds() - proxy_before
        nodes_cpu = sum(n.cpu_seconds() for n in running) - nodes_before
        bench_cpu = sum(bench.cpu_times()[:2]) - bench_before
    # No cost: no capacity of the nodes' own to compare with (0 stands for "unbounded").
    capacity = nodes * SLOTS_PER_NODE / cost_s if cost_s else 0.0
    rate = done / elapsed
    proxy_ms = proxy_cpu / done * 1000
    return {
        "nodes": nodes,
        "callers": callers,
        "streams": done,
        "streams_per_s": round(rate, 1),
        "stream_cost_s": cost_s,
        "node_capacity_per_s": round(capacity, 1),
        "of_capacity": round(rate / capacity, 3) if capacity else 0.0,
        "proxy_cpu_ms_per_stream": round(proxy_ms, 2),
        "proxy_cores_busy": round(proxy_cpu / elapsed, 2),
        "proxy_streams_per_core_s": round(1000 / proxy_ms, 1),
        "nodes_cpu_ms_per_stream": round(nodes_cpu / done * 1000, 2),
        "client_cpu_ms_per_stream": round(bench_cpu / done * 1000, 2),
    }


async def gpu_scaling(context: BenchContext) -> Result:
    """Throughput against 1, 2 and 4 mock nodes with a fixed cost per stream."""
    audio_s, seconds = (3.0, 4.0) if context.quick else (5.0, 15.0)
    audio = conversation(audio_s)
    points = [await _point(context, nodes, seconds, audio, STREAM_COST_S) for nodes in NODE_COUNTS]
    # The same callers with nodes that cost nothing: the most the proxy path carries here.
    ceiling = await _point(context, NODE_COUNTS[-1], seconds, audio, 0.0)
    last = points[-1]
    value, capacity = last["streams_per_s"], last["node_capacity_per_s"]
    checks = [
        Check(
            f"{int(p['nodes'])} node(s): streams/s of the nodes' capacity",
            f"{p['of_capacity']}",
            "reported (no goal)",
            True,
        )
        for p in points
    ]
    limiter = next((p for p in points if p["of_capacity"] < 0.9), None)
    where = (
        f"the curve leaves the nodes' capacity at {int(limiter['nodes'])} node(s), with the "
        f"proxy busy {limiter['proxy_cores_busy']} cores"
        if limiter
        else "the nodes' capacity at every point measured: the proxy was not yet the limit"
    )
    return Result(
        name=NAME,
        value=value,
        unit=f"streams/s ({int(last['nodes'])} nodes)",
        reference=capacity,
        ratio=ratio(value, capacity),
        goal="a curve: nodes 1, 2, 4 (no goal)",
        met=True,
        checks=checks,
        details={
            "stream_audio_s": audio_s,
            "stream_cost_s": STREAM_COST_S,
            "slots_per_node": SLOTS_PER_NODE,
            "seconds_per_point": seconds,
            "points": points,
            "ceiling": ceiling,
            "ceiling_streams_per_s": ceiling["streams_per_s"],
        },
        limits=(
            f"{where}; with nodes that cost nothing (ceiling) the proxy path carries "
            f"{ceiling['streams_per_s']} streams/s with the proxy busy "
            f"{ceiling['proxy_cores_busy']} cores. A slot is held for the stream's transfer "
            "as well as its cost, so the nodes' capacity is an upper bound. On 2 cores the "
            "proxy, the nodes' transport and the callers (the "
            "bench process) share the CPU, so the proxy's own ceiling is "
            "proxy_streams_per_core_s on a core of its own, not the curve's last point."
        ),
    )
