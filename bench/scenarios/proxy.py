"""`proxy_overhead`: a recognition stream through gpu_proxy vs. through a bare gRPC hop.

Every path is meeting_service's own client (`gpu_client`: its channel, its `recognize`
call, which asks for segment batches) with the same client certificate, talking to the
same node and its mock engine. Three paths: straight to the node; through gpu_proxy (its
inbound mTLS server, balancing, replay buffer, breaker, telemetry and pooled outbound
channel); and through `bench/bare_relay.py`, the same hop with none of the proxy's own
work, a practical floor for a gRPC-level proxy in Python on this host. The goal is the
proxy's time over the bare hop's: what the proxy's own machinery adds. The time over the
direct one is reported beside it, with the bare hop's, since on a shared host it is set by
the hop itself (see docs/bench.md). The stream is a two-voice conversation (tones and
pauses) sent in the pipeline's blocks of decoded audio (`BLOCK_BYTES`, 8 s); the time is
from the first message to the last segment, and every stream must bring the direct
stream's segments. The paths take turns in every order in turn; each keeps its median.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np

from bench.context import BenchContext
from bench.model import Check, Result, ratio
from bench.processes import ServiceProcess
from gen.gpu.v1 import gpu_pb2
from gpu_client import calls
from gpu_client.channel import GpuStubs, connect
from meeting_service.recordings.decode import BLOCK_BYTES
from mesh_common.tls import KeyPair

SAMPLE_RATE = 16_000
CHUNK_BYTES = BLOCK_BYTES  # the pipeline's messages of decoded audio


def conversation(seconds: float) -> bytes:
    """Alternating low and high "voices" (tones) with pauses, as LINEAR16."""
    pieces = []
    t = np.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    total = 0.0
    turn = 0
    while total < seconds:
        pitch = 180.0 if turn % 2 == 0 else 420.0
        pieces.append(0.3 * np.sin(2 * np.pi * pitch * t))
        pieces.append(np.zeros(int(0.6 * SAMPLE_RATE)))
        total += 2.1
        turn += 1
    audio = np.concatenate(pieces)
    return bytes((audio * 32767).astype("<i2").tobytes())


CONFIG = gpu_pb2.RecognitionConfig(
    encoding=gpu_pb2.AUDIO_ENCODING_LINEAR16,
    sample_rate_hertz=SAMPLE_RATE,
    language="en",
    mode=gpu_pb2.RECOGNITION_MODE_BATCH,
)


async def _blocks(audio: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(audio), CHUNK_BYTES):
        yield audio[start : start + CHUNK_BYTES]


async def recognize(grpc_channel: grpc.aio.Channel, audio: bytes) -> tuple[float, int]:
    """One recognition stream of `audio`: (seconds to its last segment, segments)."""
    gpu = GpuStubs.of(grpc_channel)
    started = time.perf_counter()
    segments = 0
    async for _ in calls.recognize(gpu, CONFIG, _blocks(audio), deadline=120):
        segments += 1
    return time.perf_counter() - started, segments


async def responses(grpc_channel: grpc.aio.Channel, audio: bytes) -> int:
    """Counts the responses of one stream of `audio` that asks for segment batches.

    The request is `gpu_client`'s, sent on a plain stub (which shows the responses), outside
    the timed rounds.
    """
    config = gpu_pb2.RecognitionConfig(segment_batches=True)
    config.MergeFrom(CONFIG)

    async def requests() -> AsyncIterator[gpu_pb2.RecognizeRequest]:
        yield gpu_pb2.RecognizeRequest(config=config)
        async for block in _blocks(audio):
            yield gpu_pb2.RecognizeRequest(audio=block)

    stub = GpuStubs.of(grpc_channel).recognition
    return len([response async for response in stub.Recognize(requests(), timeout=120)])


def channel(address: str, pki: Path) -> grpc.aio.Channel:
    """An mTLS channel with meeting_service's certificate, made as meeting_service's."""
    identity = KeyPair(cert=pki / "meeting-service.pem", key=pki / "meeting-service.key")
    return connect(address, identity, pki / "ca.pem")


async def proxy_overhead(context: BenchContext) -> Result:
    """Median stream time through the proxy over the median through the bare hop."""
    seconds, rounds = (60.0, 18) if context.quick else (300.0, 48)
    audio = conversation(seconds)
    pki = context.pki()
    async with (
        context.service("gpu_node", pki_dir=str(pki)) as node,
        context.service("gpu_proxy", pki_dir=str(pki), nodes=[node.address]) as proxy,
        context.service("bare_relay", pki_dir=str(pki), node=node.address) as bare_hop,
        channel(node.address, pki) as direct_channel,
        channel(proxy.address, pki) as proxy_channel,
        channel(bare_hop.address, pki) as bare_hop_channel,
    ):
        paths: dict[str, tuple[grpc.aio.Channel, ServiceProcess | None]] = {
            "direct": (direct_channel, None),
            "proxy": (proxy_channel, proxy),
            "bare_hop": (bare_hop_channel, bare_hop),
        }
        # Untimed first calls: TLS handshakes, the engine's first use, and both of the
        # proxy's pooled channels to the node (calls take turns on them).
        _, expected = await recognize(direct_channel, audio)
        for warm in (proxy_channel, proxy_channel, bare_hop_channel):
            await _same_segments(warm, audio, expected)
        answers = await responses(direct_channel, audio)
        times: dict[str, list[float]] = {name: [] for name in paths}
        hop_cpu = dict.fromkeys(paths, 0.0)
        node_cpu = dict.fromkeys(paths, 0.0)
        client_cpu = 0.0
        # Every order of the three in turn, so no path always follows the same one (a
        # stream's leftover work lands on whichever comes next).
        orders = list(itertools.permutations(paths))
        for turn in range(rounds):
            for name in orders[turn % len(orders)]:
                path_channel, hop = paths[name]
                node_before, client_before = node.cpu_seconds(), time.process_time()
                hop_before = hop.cpu_seconds() if hop is not None else 0.0
                times[name].append(await _same_segments(path_channel, audio, expected))
                node_cpu[name] += node.cpu_seconds() - node_before
                if hop is not None:
                    hop_cpu[name] += hop.cpu_seconds() - hop_before
                else:
                    client_cpu += time.process_time() - client_before
    median = {name: round(statistics.median(values) * 1000, 1) for name, values in times.items()}
    value, reference, direct = median["proxy"], median["bare_hop"], median["direct"]
    share = ratio(value, reference)
    met = share is not None and share <= 1.1
    proxy_over_direct, bare_hop_over_direct = ratio(value, direct), ratio(reference, direct)

    def per_stream(total_s: float) -> float:
        return round(total_s / rounds * 1000, 1)

    proxy_ms, bare_hop_ms = per_stream(hop_cpu["proxy"]), per_stream(hop_cpu["bare_hop"])
    node_ms, client_ms = per_stream(node_cpu["direct"]), per_stream(client_cpu)
    return Result(
        name="proxy_overhead",
        value=value,
        unit="ms per stream",
        reference=reference,
        ratio=share,
        goal="<= 1.1x the time through a bare gRPC hop (the time over direct beside it)",
        met=met,
        checks=[Check("time over the bare hop's", f"{share}", "<= 1.1", met)],
        details={
            "audio_s": round(len(audio) / 2 / SAMPLE_RATE, 1),
            "chunk_s": round(CHUNK_BYTES / 2 / SAMPLE_RATE, 1),
            "messages_per_stream": 1 + -(-len(audio) // CHUNK_BYTES) + answers,
            "responses_per_stream": answers,
            "segments_per_stream": expected,
            "rounds": rounds,
            "direct_ms": direct,
            "proxy_over_direct": proxy_over_direct,
            "bare_hop_over_direct": bare_hop_over_direct,
            "proxy_min_ms": round(min(times["proxy"]) * 1000, 1),
            "bare_hop_min_ms": round(min(times["bare_hop"]) * 1000, 1),
            "direct_min_ms": round(min(times["direct"]) * 1000, 1),
            "client_cpu_ms_per_stream": client_ms,
            "proxy_cpu_ms_per_stream": proxy_ms,
            "bare_hop_cpu_ms_per_stream": bare_hop_ms,
            "node_cpu_ms_per_stream_direct": node_ms,
            "node_cpu_ms_per_stream_through_proxy": per_stream(node_cpu["proxy"]),
            "node_cpu_ms_per_stream_through_bare_hop": per_stream(node_cpu["bare_hop"]),
        },
        limits=(
            f"The hop itself: on 2 cores the client ({client_ms} ms of CPU per stream), the "
            f"node ({node_ms} ms straight, mock engine, its gRPC thread decrypting beside its "
            f"event loop) and the hop ({proxy_ms} ms the proxy, {bare_hop_ms} ms the bare "
            "hop) are busy at once, so a hop adds about its CPU over the others' together: "
            "the bare hop, with none of the proxy's own work, is already "
            f"{bare_hop_over_direct}x the direct time (the proxy {proxy_over_direct}x). "
            "What a hop pays is per byte: each audio message (relayed as the bytes it "
            "arrived in) is received and decrypted, copied into Python and back into gRPC, "
            "encrypted and sent over loopback TCP once more (perf of gpu_proxy: about 40 % "
            "kernel sockets and page faults, 25 % grpc core and TLS, 10 % memmove, 15 % the "
            f"interpreter). Segment batches leave {answers} responses for {expected} segments."
        ),
    )


async def _same_segments(path: grpc.aio.Channel, audio: bytes, expected: int) -> float:
    """One stream on `path`: its time, once it brought the direct stream's segments.

    Raises:
        RuntimeError: It brought another number of segments.
    """
    elapsed, segments = await recognize(path, audio)
    if segments != expected or expected == 0:
        raise RuntimeError(f"segments differ: direct {expected}, this path {segments}")
    return elapsed
