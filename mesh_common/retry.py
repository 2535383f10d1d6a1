"""The retry policy of the mesh: which failures are worth another try, and how long to wait.

Errors with a domain reason say whether they are retryable in the error table
(`mesh_common.errors`); this module answers for bare gRPC status codes, and gives the one
backoff every retry loop uses.
"""

from __future__ import annotations

import random

import grpc

# Codes that say nothing about the request itself: the callee was unreachable or went away
# (UNAVAILABLE, CANCELLED by the callee), was full (RESOURCE_EXHAUSTED), or gave up on a
# conflict (ABORTED). The same call may succeed later or elsewhere; any other code would
# fail the same way again.
RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)

_RANDOM = random.Random()

# What a grpc.aio client reports when the server ended a call while it was writing
# (grpc/grpc#36066): the real status is lost. Our servers drain a stream before failing it
# where they can, so for a call to them this means it ended abruptly (the server was
# killed, the connection reset, or the drain ran out of time).
_LOST_STATUS_DETAILS = "Internal error from Core"


def effective_code(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """Returns the status code a failed call stands for.

    Args:
        error: The failed call.

    Returns:
        UNAVAILABLE for a status lost to the grpc.aio write race; the code otherwise.
    """
    code: grpc.StatusCode = error.code()
    if code is grpc.StatusCode.INTERNAL and error.details() == _LOST_STATUS_DETAILS:
        return grpc.StatusCode.UNAVAILABLE
    return code


def backoff_delay(
    attempt: int, *, initial: float, maximum: float, rng: random.Random = _RANDOM
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial * 2^(attempt-1))].

    Full jitter spreads the retries of many callers that failed together (a node dying
    under load, a database restart), so they do not come back in one burst.

    Args:
        attempt: Attempts failed so far, from 1.
        initial: The ceiling after the first failure, in seconds.
        maximum: The largest ceiling.
        rng: Source of randomness.

    Returns:
        Seconds to wait.
    """
    ceiling = min(maximum, initial * 2 ** max(0, attempt - 1))
    return rng.uniform(0, ceiling)


class Backoff:
    """The delays of a loop that retries until it succeeds (reconnecting to a server).

    Each failure waits longer, up to a ceiling; a success starts the count over.
    """

    def __init__(self, *, initial: float, maximum: float) -> None:
        """Sets the delays.

        Args:
            initial: The ceiling after the first failure, in seconds.
            maximum: The largest ceiling.
        """
        self._initial = initial
        self._maximum = maximum
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures counted since the last success."""
        return self._failures

    def next_delay(self) -> float:
        """Counts a failure and returns how long to wait before the next try."""
        self._failures += 1
        return backoff_delay(self._failures, initial=self._initial, maximum=self._maximum)

    def reset(self) -> None:
        """Counts a success: the next failure waits the shortest delay again."""
        self._failures = 0
