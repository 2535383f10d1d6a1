"""A bound on the calls a node serves at once: beyond it, fail fast rather than queue.

The proxy in front keeps its own lower cap and a wait queue; this bound protects a node
that is called directly or by a misconfigured proxy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from contract_errors.gpu import GpuError
from gen.gpu.v1 import gpu_pb2

RETRY_AFTER_S = 1.0


class Admission:
    """Counts calls in flight, per method and in all.

    Attributes:
        limit: Most calls at once.
        active: Calls in flight per method name.
        started: Calls admitted since start, per method name.
        audio_bytes: Audio bytes received since start, per method name.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active: Counter[str] = Counter()
        self.started: Counter[str] = Counter()
        self.audio_bytes: Counter[str] = Counter()

    @contextmanager
    def admit(self, method: str) -> Iterator[None]:
        """Holds a slot for the duration of a call.

        Args:
            method: The method's name ("Recognize").

        Yields:
            Nothing; the slot is released on exit.

        Raises:
            MeshError: OVERLOADED (RESOURCE_EXHAUSTED with a retry hint) when full.
        """
        if self.active.total() >= self.limit:
            raise GpuError(
                gpu_pb2.ERROR_REASON_OVERLOADED,
                f"this GPU node is serving its limit of {self.limit} calls",
                {"limit": str(self.limit)},
                retry_after=RETRY_AFTER_S,
            )
        self.active[method] += 1
        self.started[method] += 1
        try:
            yield
        finally:
            self.active[method] -= 1
