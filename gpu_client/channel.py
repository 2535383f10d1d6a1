"""An mTLS channel to the GPU proxy (or a node) and its stubs, in a few lines.

    channel = connect("127.0.0.1:50052", KeyPair(cert, key), ca)
    gpu = GpuStubs.of(channel)
    async for response in gpu.recognition.Recognize(requests()):
        ...
    await channel.close()

The channel retries the unary `Summarize` on UNAVAILABLE through its service config (the
proxy already retried on other nodes; this covers the proxy itself restarting). Streams
are not retried blindly: a caller resumes them (`RecognitionConfig.start_offset`) or
retries the job. A RESOURCE_EXHAUSTED answer carries a `RetryInfo` delay, read with
`mesh_common.errors.view_rpc_error(error).retry_after`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from gen.gpu.v1 import gpu_pb2_grpc
from mesh_common.tls import KeyPair, channel_credentials

MAX_MESSAGE_BYTES = (1 << 20) + 4096

SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "gpu.v1.SummarizationService", "method": "Summarize"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.2s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)


def connect(
    target: str,
    identity: KeyPair,
    ca: Path,
    *,
    tls_name: str | None = None,
    keepalive: Sequence[tuple[str, int]] = (),
) -> grpc.aio.Channel:
    """Opens an mTLS channel to the GPU proxy.

    Args:
        target: "host:port" of the proxy.
        identity: The caller's certificate and key (meeting_service presents
            `<data_dir>/certs/meeting-service.pem`).
        ca: The CA the proxy's certificate must chain to.
        tls_name: The name to check in the proxy's certificate when `target` is an address
            the certificate does not name.
        keepalive: The keepalive options (`mesh_common.keepalive.channel_options`).

    Returns:
        The channel; close it when done.
    """
    options: list[tuple[str, str | int]] = [
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        *keepalive,
    ]
    if tls_name:
        options.append(("grpc.ssl_target_name_override", tls_name))
    return grpc.aio.secure_channel(target, channel_credentials(identity, ca), options=options)


@dataclass(frozen=True)
class GpuStubs:
    """The `gpu.v1` stubs on one channel."""

    recognition: gpu_pb2_grpc.SpeechRecognitionServiceStub
    diarization: gpu_pb2_grpc.SpeakerDiarizationServiceStub
    summarization: gpu_pb2_grpc.SummarizationServiceStub
    capabilities: gpu_pb2_grpc.CapabilitiesServiceStub

    @classmethod
    def of(cls, channel: grpc.aio.Channel) -> GpuStubs:
        """Makes the stubs for a channel."""
        return cls(
            gpu_pb2_grpc.SpeechRecognitionServiceStub(channel),
            gpu_pb2_grpc.SpeakerDiarizationServiceStub(channel),
            gpu_pb2_grpc.SummarizationServiceStub(channel),
            gpu_pb2_grpc.CapabilitiesServiceStub(channel),
        )
