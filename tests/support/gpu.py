"""Helpers for tests of the GPU path: per-run certificates, settings, synthetic audio.

Used by tests/gpu and by any suite that needs a gpu_node and gpu_proxy (the pipeline's):

    pki = make_pki(tmp_path)
    async with run_gpu_node(node_settings(pki)) as node:
        async with run_gpu_proxy(proxy_settings(pki, [node.address])) as proxy:
            channel = connect(proxy.address, pki.client, pki.ca.cert)
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2

from gen.gpu.v1 import gpu_pb2
from gpu_client.channel import GpuStubs, connect
from gpu_node.settings import GpuNodeSettings
from gpu_proxy.settings import GpuProxySettings
from mesh_common.tls import KeyPair, channel_credentials, create_ca, issue_certificate

SAMPLE_RATE = 16_000


@dataclass(frozen=True)
class Pki:
    """Certificates for one test run.

    Attributes:
        directory: Where the files are.
        ca: The mesh CA every service trusts.
        node: gpu_node's certificate ("gpu-node"; localhost and 127.0.0.1).
        proxy: gpu_proxy's certificate ("gpu-proxy").
        client: A caller of the proxy ("meeting-service").
        other_ca: A second CA that nobody trusts.
        rogue_node: A "gpu-node" certificate signed by the other CA.
        rogue_client: A "meeting-service" certificate signed by the other CA.
    """

    directory: Path
    ca: KeyPair
    node: KeyPair
    proxy: KeyPair
    client: KeyPair
    other_ca: KeyPair
    rogue_node: KeyPair
    rogue_client: KeyPair


def make_pki(directory: Path) -> Pki:
    """Creates a CA, service certificates, and an untrusted CA with its own certificates.

    Args:
        directory: An empty directory (e.g. pytest's tmp_path).

    Returns:
        The files.
    """
    ca = create_ca(directory / "mesh")
    other = create_ca(directory / "other", common_name="untrusted CA")
    return Pki(
        directory=directory,
        ca=ca,
        node=issue_certificate(ca, directory / "mesh", "gpu-node"),
        proxy=issue_certificate(ca, directory / "mesh", "gpu-proxy"),
        client=issue_certificate(ca, directory / "mesh", "meeting-service"),
        other_ca=other,
        rogue_node=issue_certificate(other, directory / "other", "gpu-node"),
        rogue_client=issue_certificate(other, directory / "other", "meeting-service"),
    )


def node_settings(pki: Pki, *, identity: KeyPair | None = None, **values: Any) -> GpuNodeSettings:
    """Settings for an in-process gpu_node on 127.0.0.1, a free port, the mock engine.

    Args:
        pki: The run's certificates.
        identity: The node's certificate (default: the trusted one).
        **values: Further `GpuNodeSettings` fields.

    Returns:
        The settings.
    """
    identity = identity or pki.node
    fields: dict[str, Any] = {
        "data_dir": pki.directory,
        "gpu_node_port": 0,
        "gpu_node_metrics_port": 0,
        "gpu_node_cert": identity.cert,
        "gpu_node_key": identity.key,
        "gpu_node_ca": pki.ca.cert,
        "gpu_node_engine": "mock",
        **values,
    }
    return GpuNodeSettings(**fields)


def proxy_settings(pki: Pki, nodes: Sequence[str], **values: Any) -> GpuProxySettings:
    """Settings for an in-process gpu_proxy on a free port, forwarding to `nodes`.

    Backoffs and probe intervals are short so failure tests finish quickly.

    Args:
        pki: The run's certificates.
        nodes: "host:port" of each node.
        **values: Further `GpuProxySettings` fields.

    Returns:
        The settings.
    """
    fields: dict[str, Any] = {
        "data_dir": pki.directory,
        "gpu_proxy_port": 0,
        "gpu_proxy_metrics_port": 0,
        "gpu_nodes": ",".join(nodes),
        "gpu_proxy_cert": pki.proxy.cert,
        "gpu_proxy_key": pki.proxy.key,
        "gpu_proxy_ca": pki.ca.cert,
        "gpu_proxy_backoff_initial_s": 0.05,
        "gpu_proxy_backoff_max_s": 0.2,
        "gpu_proxy_probe_interval_s": 0.2,
        "gpu_proxy_probe_interval_max_s": 0.5,
        "gpu_proxy_cert_check_interval_s": 0.1,
        **values,
    }
    return GpuProxySettings(**fields)


def tone(seconds: float, frequency: float = 220.0, amplitude: float = 0.3) -> np.ndarray:
    """A sine tone: "speech" to the mock engine, with a pitch its diarization tells apart.

    Args:
        seconds: Length.
        frequency: Pitch in Hz.
        amplitude: Peak in [0, 1].

    Returns:
        float32 samples at 16 kHz.
    """
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    """Digital silence at 16 kHz."""
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)


def pcm16(audio: np.ndarray) -> bytes:
    """Encodes float32 samples as LINEAR16 bytes."""
    return bytes((np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2").tobytes())


def conversation() -> np.ndarray:
    """Three utterances, low-high-low voice, separated by silence: 3 segments, 2 speakers."""
    return np.concatenate(
        [
            silence(0.5),
            tone(1.5, 180.0),
            silence(0.6),
            tone(1.2, 420.0),
            silence(0.6),
            tone(0.9, 180.0),
            silence(0.5),
        ]
    )


def chunks(data: bytes, size: int) -> list[bytes]:
    """Splits bytes into pieces of `size` (the last may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]


def dialogue(turns: int) -> np.ndarray:
    """Utterances alternating a low and a high voice (the mock engine hears each as one)."""
    parts = [silence(0.4)]
    for turn in range(turns):
        parts += [tone(1.0, 180.0 if turn % 2 == 0 else 420.0), silence(0.6)]
    return np.concatenate(parts)


def as_wav(audio: np.ndarray) -> bytes:
    """The samples as a 16 kHz 16-bit mono WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(pcm16(audio))
    return out.getvalue()


WAIT = 20.0  # generous bound for conditions that normally hold within milliseconds


def stubs(pki: Pki, target: str) -> tuple[grpc.aio.Channel, GpuStubs]:
    channel = connect(target, pki.client, pki.ca.cert)
    return channel, GpuStubs.of(channel)


async def recognize_requests(
    audio: np.ndarray, chunk_bytes: int = 16_000, config: gpu_pb2.RecognitionConfig | None = None
) -> AsyncIterator[gpu_pb2.RecognizeRequest]:
    yield gpu_pb2.RecognizeRequest(config=config or gpu_pb2.RecognitionConfig())
    for piece in chunks(pcm16(audio), chunk_bytes):
        yield gpu_pb2.RecognizeRequest(audio=piece)


async def recognize(
    gpu: GpuStubs, audio: np.ndarray, chunk_bytes: int = 16_000, **config: object
) -> list[gpu_pb2.RecognizeResponse]:
    call = gpu.recognition.Recognize(
        recognize_requests(audio, chunk_bytes, gpu_pb2.RecognitionConfig(**config)),  # type: ignore[arg-type]
        timeout=WAIT,
    )
    return [response async for response in call]


def stubs_without_retries(pki: Pki, target: str) -> tuple[grpc.aio.Channel, GpuStubs]:
    """A channel without the client's retry policy: each call is exactly one proxy call."""
    channel = grpc.aio.secure_channel(
        target, channel_credentials(pki.client, pki.ca.cert), options=[("grpc.enable_retries", 0)]
    )
    return channel, GpuStubs.of(channel)


def segments(responses: Sequence[gpu_pb2.RecognizeResponse]) -> list[gpu_pb2.RecognizedSegment]:
    """The segment versions of a stream's responses, in order, whichever form each has."""
    return [s for r in responses for s in (r.segments or [r.segment])]


def finals(responses: Sequence[gpu_pb2.RecognizeResponse]) -> list[gpu_pb2.RecognizedSegment]:
    return [s for s in segments(responses) if s.is_final]


async def eventually(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    """Waits (bounded by `within`) for in-process state that another task changes.

    The servers expose no event for these test-only questions ("is the stream placed on
    a node yet?"), so this polls; it never assumes that time passing made anything true.
    """
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 - no event to wait on; see docstring
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None


async def wait_health(channel: grpc.aio.Channel, status: int) -> None:
    """Waits (bounded by WAIT) until a server's overall health is `status`, via Watch."""
    watch = channel.unary_stream(
        "/grpc.health.v1.Health/Watch",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    call = watch(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
    async for response in call:
        if response.status == status:
            call.cancel()
            return
    raise AssertionError(f"health never became {status}")


class Gate[T]:
    """A request stream the test feeds by hand: push() messages, end() it."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()

    def push(self, message: T) -> None:
        self._queue.put_nowait(message)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[T]:
        while (message := await self._queue.get()) is not None:
            yield message
