"""The gateway's one channel to meeting_service.

Every request of every client shares one HTTP/2 connection (gRPC multiplexes calls on it),
kept alive across idle periods. Unary calls are retried by the channel itself on
UNAVAILABLE, and on CANCELLED from a replica that stops (it drops the calls it had not yet
started, grpc/grpc#41785), following the service config below; the channel retries only
calls that got no answer at all, and meeting_service answers nothing before a unary call's
end. Streams are never retried blindly: the SSE client resumes by sequence and the upload
client by offset.
"""

from __future__ import annotations

import json

import grpc

from gateway.settings import GatewaySettings
from gen.meeting.v1 import meeting_service_pb2
from mesh_common.keepalive import channel_options

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
    """Returns the channel's service config: retry policy for unary calls.

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
                        "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                    },
                }
            ]
        }
    )


CHANNEL_OPTIONS: list[tuple[str, str | int]] = [
    ("grpc.service_config", service_config()),
    ("grpc.enable_retries", 1),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
]


def open_channel(settings: GatewaySettings) -> grpc.aio.Channel:
    """Opens the channel to meeting_service (connects lazily, reconnects by itself).

    A replica that goes silent (its machine or network gone) is found by keepalive
    within `grpc_keepalive_s + grpc_keepalive_timeout_s`: its streams end UNAVAILABLE
    (their SSE clients resume by sequence) and the channel connects again, to the next
    address of the target when it lists several.

    Args:
        settings: `meeting_service_target` ("host:port", or `ipv4:a:p,b:q` for several
            replicas) and the keepalive settings.

    Returns:
        The channel; close it with `await channel.close()`.
    """
    options = CHANNEL_OPTIONS + channel_options(settings)
    return grpc.aio.insecure_channel(settings.meeting_service_target, options=options)
