"""The pure rules of the proxy: failure classes, breaker transitions."""

from __future__ import annotations

import grpc
from grpc.aio import Metadata

from gpu_proxy.breaker import BreakerState, CircuitBreaker
from mesh_common.retry import effective_code


def state(breaker: CircuitBreaker) -> BreakerState:
    # A call, so mypy does not narrow the attribute across the transitions below.
    return breaker.state


def test_a_status_lost_to_the_write_race_counts_as_unavailable() -> None:
    def error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(code, Metadata(), Metadata(), details)

    lost = error(grpc.StatusCode.INTERNAL, "Internal error from Core")
    assert effective_code(lost) is grpc.StatusCode.UNAVAILABLE
    real = error(grpc.StatusCode.INTERNAL, "engine crashed")
    assert effective_code(real) is grpc.StatusCode.INTERNAL
    bad = error(grpc.StatusCode.INVALID_ARGUMENT, "Internal error from Core")
    assert effective_code(bad) is grpc.StatusCode.INVALID_ARGUMENT


def test_breaker_opens_after_consecutive_failures_only() -> None:
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(3, changes.append)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # the streak is broken
    breaker.record_failure()
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    assert not breaker.usable and not breaker.can_take_call()
    assert changes == [BreakerState.OPEN]


def test_half_open_lets_one_trial_through_and_its_outcome_decides() -> None:
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(1, changes.append)
    breaker.trip()
    breaker.probe_succeeded()
    assert state(breaker) is BreakerState.HALF_OPEN and breaker.usable
    assert breaker.can_take_call()
    breaker.on_call_start()
    assert not breaker.can_take_call(), "one trial at a time"
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    breaker.probe_succeeded()
    breaker.on_call_start()
    breaker.record_call_abandoned()  # a cancelled trial says nothing about the node
    assert state(breaker) is BreakerState.HALF_OPEN and breaker.can_take_call()
    breaker.on_call_start()
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    assert changes == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.CLOSED,
    ]
