"""Lanes of GPU capacity: live recognition has its own, so it never waits behind batch work.

A caller names the lane of a call in its metadata (`LANE_KEY`); gpu_proxy leases a node's
slot in that lane and passes the metadata on, and the node admits the call against that
lane's bound. Only live-mode `Recognize` calls use the live lane; everything else is
batch, including a call that names no lane.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

LANE_KEY = "x-mesh-gpu-lane"
Lane = Literal["batch", "live"]
BATCH: Lane = "batch"
LIVE: Lane = "live"
LANES: tuple[Lane, ...] = (BATCH, LIVE)


def lane_of(metadata: Iterable[tuple[str, str | bytes]] | None) -> Lane:
    """Reads the lane a call's metadata names (batch when it names none or another)."""
    for key, value in metadata or ():
        if key == LANE_KEY and value == LIVE:
            return LIVE
    return BATCH
