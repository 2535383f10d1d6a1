"""The gateway's one channel to meeting_service.

Every request of every client shares one HTTP/2 connection (gRPC multiplexes calls on it),
kept alive across idle periods. Unary calls are retried by the channel itself on
UNAVAILABLE, following the service config below; streams are never retried blindly: the
SSE client resumes by sequence and the upload client by offset.
"""

from __future__ import annotations

import json

import grpc

from gen.meeting.v1 import meeting_service_pb2

_SERVICE = meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"]
_HEALTH_SERVICE = "grpc.health.v1.Health"


def _unary_method_names() -> list[dict[str, str]]:
    names = [
        {"service": _SERVICE.full_name, "method": method.name}
        for method in _SERVICE.methods
        if not method.client_streaming and not method.server_streaming
    ]
    names.append({"service": _HEALTH_SERVICE, "method": "Check"})
    return names


def service_config() -> str:
    """Returns the channel's service config: retry policy for unary calls on UNAVAILABLE.

    Returns:
        The JSON service config.
    """
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": _unary_method_names(),
                    "retryPolicy": {
                        "maxAttempts": 4,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE"],
                    },
                }
            ]
        }
    )


# Pings no more often than gRPC servers accept by default (5 minutes without data), so an
# idle event stream is never closed by the server with "too many pings".
CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", service_config()),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 300_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


def open_channel(target: str) -> grpc.aio.Channel:
    """Opens the channel to meeting_service (connects lazily, reconnects by itself).

    Args:
        target: "host:port" of meeting_service.

    Returns:
        The channel; close it with `await channel.close()`.
    """
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
