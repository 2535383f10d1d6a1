"""Bounds on the calls a node serves at once: beyond them, fail fast rather than queue.

Live recognition and the rest have separate bounds (`mesh_common.lanes`), so a node full
of batch work still admits a live stream. The proxy in front keeps its own lower caps and
a wait queue; these bounds protect a node that is called directly or by a misconfigured
proxy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from contract_errors.gpu import GpuError
from gen.gpu.v1 import gpu_pb2
from mesh_common.lanes import BATCH, Lane

RETRY_AFTER_S = 1.0


class Admission:
    """Counts calls in flight, per method and per lane.

    Args:
        limits: Most calls at once, per lane.

    Attributes:
        limits: Most calls at once, per lane.
        active: Calls in flight per method name.
        lanes: Calls in flight per lane.
        started: Calls admitted since start, per method name.
        audio_bytes: Audio bytes received since start, per method name.
    """

    def __init__(self, limits: Mapping[Lane, int]) -> None:
        self.limits = dict(limits)
        self.active: Counter[str] = Counter()
        self.lanes: Counter[Lane] = Counter()
        self.started: Counter[str] = Counter()
        self.audio_bytes: Counter[str] = Counter()

    @contextmanager
    def admit(self, method: str, lane: Lane = BATCH) -> Iterator[None]:
        """Holds a slot of a lane for the duration of a call.

        Args:
            method: The method's name ("Recognize").
            lane: The lane the call draws on.

        Yields:
            Nothing; the slot is released on exit.

        Raises:
            MeshError: OVERLOADED (RESOURCE_EXHAUSTED with a retry hint) when the lane is
                full.
        """
        limit = self.limits[lane]
        if self.lanes[lane] >= limit:
            raise GpuError(
                gpu_pb2.ERROR_REASON_OVERLOADED,
                f"this GPU node is serving its limit of {limit} {lane} calls",
                {"limit": str(limit), "lane": lane},
                retry_after=RETRY_AFTER_S,
            )
        self.active[method] += 1
        self.lanes[lane] += 1
        self.started[method] += 1
        try:
            yield
        finally:
            self.active[method] -= 1
            self.lanes[lane] -= 1
