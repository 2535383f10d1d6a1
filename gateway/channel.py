"""The gateway's one channel to meeting_service.

Every request of every client shares one HTTP/2 connection (gRPC multiplexes calls on it),
kept alive across idle periods. The channel itself sends a call again, to the next
replica, on UNAVAILABLE and on CANCELLED from a replica that stops (it drops the calls it
had received but not yet started, grpc/grpc#41785), following the service config below.
gRPC retries a call only until the server's initial metadata arrives, so only calls that
no replica started:

- unary calls, which meeting_service answers (metadata and all) only at their end (a
  voice sample whose audio is larger than the buffer below is not kept, so not retried);
- uploads (UploadAudio), which meeting_service accepts with its initial metadata as soon
  as its handler starts, before it stores a byte: a dropped upload is replayed from the
  messages the channel kept (`retry_buffer_bytes`), one that a replica started and then
  failed is not (its client resumes from the stored offset).

Event streams are never retried here: the SSE client resumes by sequence.
"""

from __future__ import annotations

import json

import grpc

from gateway.settings import GatewaySettings
from gen.meeting.v1 import meeting_service_pb2
from mesh_common.keepalive import channel_options

_SERVICE = meeting_service_pb2.DESCRIPTOR.services_by_name["MeetingService"]
_UPLOAD = _SERVICE.methods_by_name["UploadAudio"]
_HEALTH_SERVICE = "grpc.health.v1.Health"


def _retried_method_names() -> list[dict[str, str]]:
    names = [
        {"service": _SERVICE.full_name, "method": method.name}
        for method in _SERVICE.methods
        if (not method.client_streaming and not method.server_streaming)
        or method.name == _UPLOAD.name
    ]
    names.append({"service": _HEALTH_SERVICE, "method": "Check"})
    return names


def service_config() -> str:
    """Returns the channel's service config: the retry policy (see the module's text).

    Returns:
        The JSON service config.
    """
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": _retried_method_names(),
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


def retry_buffer_bytes(settings: GatewaySettings) -> int:
    """What the channel keeps of one call's messages so it can send them again.

    An upload's metadata and its first two body chunks. meeting_service lets a call it has
    not started send no more than its fixed flow-control window (`UPLOAD_WINDOW_BYTES` in
    meeting_service/server.py, 1 MiB), so a dropped upload never needs more replayed than
    the chunk that filled the window; once a replica starts the call, its initial metadata
    frees the buffer. An upload that outgrew the buffer would not be retried (its client
    resumes from the stored offset).

    Args:
        settings: `upload_chunk_bytes`.

    Returns:
        Bytes per call.
    """
    return 2 * settings.upload_chunk_bytes + 64 * 1024


def channel_config(settings: GatewaySettings) -> list[tuple[str, str | int]]:
    """The channel's options: retries, their buffer and the largest message.

    Args:
        settings: The gateway's settings.

    Returns:
        gRPC channel options (keepalive aside).
    """
    return [
        ("grpc.service_config", service_config()),
        ("grpc.enable_retries", 1),
        ("grpc.per_rpc_retry_buffer_size", retry_buffer_bytes(settings)),
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
    options = channel_config(settings) + channel_options(settings)
    return grpc.aio.insecure_channel(settings.meeting_service_target, options=options)
