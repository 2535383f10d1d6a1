"""When and how long to wait before trying a call again.

Only a call that failed before any response may be tried again, and only for failures
that say nothing about the request itself: the node was unreachable or went away
(UNAVAILABLE, or CANCELLED when the proxy did not cancel), or it was full
(RESOURCE_EXHAUSTED). Anything else (INVALID_ARGUMENT, INTERNAL...) would fail the same way
on every node, so it goes back to the caller as the node said it.
"""

from __future__ import annotations

import random

import grpc

RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)

# Codes that say the node (not the request) failed; they count against its breaker.
NODE_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


# What a grpc.aio client reports when the server ended a call while it was writing
# (grpc/grpc#36066): the real status is lost. Our nodes drain a stream before failing it,
# so for them this means the call ended abruptly (node killed, connection reset).
_LOST_STATUS_DETAILS = "Internal error from Core"


def effective_code(error: grpc.aio.AioRpcError) -> grpc.StatusCode:
    """Returns the status code a node's failed call stands for.

    Args:
        error: The failed call to the node.

    Returns:
        UNAVAILABLE for a status lost to the grpc.aio write race; the code otherwise.
    """
    code: grpc.StatusCode = error.code()
    if code is grpc.StatusCode.INTERNAL and error.details() == _LOST_STATUS_DETAILS:
        return grpc.StatusCode.UNAVAILABLE
    return code


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, initial * 2^attempt)].

    Full jitter spreads the retries of many calls that failed together (a node dying
    under load), so they do not arrive at the next node in one burst.

    Args:
        attempt: Attempts failed so far, from 1.
        initial: The ceiling after the first failure.
        maximum: The largest ceiling.
        rng: Source of randomness.

    Returns:
        Seconds to wait.
    """
    ceiling = min(maximum, initial * 2 ** (attempt - 1))
    return rng.uniform(0, ceiling)
