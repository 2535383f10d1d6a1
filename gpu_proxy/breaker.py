"""A circuit breaker per node: stop sending calls to a node that keeps failing.

Pure state, no I/O and no clock: the node that owns it (`gpu_proxy.node`) probes an open
breaker with health checks and reports the outcome here.

    CLOSED --N consecutive failures / failed health check--> OPEN
    OPEN --probe answers SERVING--> HALF_OPEN (one trial call at a time)
    HALF_OPEN --trial succeeds--> CLOSED;  --trial fails--> OPEN
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class BreakerState(enum.Enum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failures of one node and decides whether it gets calls.

    Args:
        failure_threshold: Consecutive failures that open the breaker.
        on_change: Called with the new state on every transition.
    """

    def __init__(
        self, failure_threshold: int, on_change: Callable[[BreakerState], None] | None = None
    ) -> None:
        self.failure_threshold = failure_threshold
        self.state = BreakerState.CLOSED
        self.consecutive_failures = 0
        self._trial_in_flight = False
        self._on_change = on_change

    @property
    def usable(self) -> bool:
        """Whether the node may be offered calls (closed, or half-open)."""
        return self.state is not BreakerState.OPEN

    def can_take_call(self) -> bool:
        """Whether a new call may go to the node now.

        Half-open lets one trial call through at a time.
        """
        if self.state is BreakerState.CLOSED:
            return True
        return self.state is BreakerState.HALF_OPEN and not self._trial_in_flight

    def on_call_start(self) -> None:
        """Records that a call was sent (it is the trial, when half-open)."""
        if self.state is BreakerState.HALF_OPEN:
            self._trial_in_flight = True

    def record_success(self) -> None:
        """Records that the node answered (any status that is not a node failure)."""
        self.consecutive_failures = 0
        self._trial_in_flight = False
        if self.state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """Records that the node failed a call (unreachable, reset, overloaded away)."""
        self.consecutive_failures += 1
        self._trial_in_flight = False
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED
            and self.consecutive_failures >= self.failure_threshold
        ):
            self._move(BreakerState.OPEN)

    def record_call_abandoned(self) -> None:
        """Records that a call ended without telling anything about the node (cancelled)."""
        self._trial_in_flight = False

    def trip(self) -> None:
        """Opens the breaker at once (a health check said the node is gone)."""
        if self.state is not BreakerState.OPEN:
            self._move(BreakerState.OPEN)

    def probe_succeeded(self) -> None:
        """Moves an open breaker to half-open: the node answers health checks again."""
        if self.state is BreakerState.OPEN:
            self.consecutive_failures = 0
            self._move(BreakerState.HALF_OPEN)

    def _move(self, state: BreakerState) -> None:
        self.state = state
        if self._on_change is not None:
            self._on_change(state)
