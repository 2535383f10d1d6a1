"""A StreamTranscript subscriber in a process of its own: `python -m bench.subscriber CONFIG`.

The `ingest` scenario counts segments delivered to a subscriber without that subscriber's
reads sharing the writer's process. CONFIG is a JSON object: `address` (meeting_service),
`meeting_id`, `after` (the sequence to stream after), `last_index` (the segment index that
ends the count) and `authorization`. The process prints one JSON line when the first event
arrived (`{"open": true}`) and one when the last did (`{"received": N, "at": T}`, T on
the system's monotonic clock, which every process of this machine shares), then exits.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import grpc

from gen.meeting.v1 import meeting_service_pb2, meeting_service_pb2_grpc


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def follow(config: dict[str, Any]) -> None:
    """Streams the meeting's events until the segment with `last_index`."""
    async with grpc.aio.insecure_channel(config["address"]) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        call = stub.StreamTranscript(
            meeting_service_pb2.StreamTranscriptRequest(
                meeting_id=config["meeting_id"], after_sequence=config["after"]
            ),
            metadata=(("authorization", config["authorization"]),),
        )
        received = 0
        opened = False
        async for response in call:
            if not opened:
                opened = True
                _say({"open": True})
                continue
            received += 1
            if response.event.segment.index == config["last_index"]:
                _say({"received": received, "at": time.monotonic()})
                break
        call.cancel()


def main(argv: list[str]) -> int:
    """Runs one subscriber.

    Args:
        argv: [CONFIG_JSON].

    Returns:
        The exit status.
    """
    asyncio.run(follow(json.loads(argv[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
