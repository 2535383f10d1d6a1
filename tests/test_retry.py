"""The retry policy of the mesh: one backoff, and the loops that use it."""

from __future__ import annotations

import random

import grpc
from botocore.exceptions import EndpointConnectionError

from meeting_service.processing.failures import classify
from mesh_common.errors import view_rpc_error
from mesh_common.retry import Backoff, backoff_delay


def test_backoff_grows_exponentially_within_its_cap_with_full_jitter() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delays = [backoff_delay(attempt, initial=0.1, maximum=1.0, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8, "jitter spans the whole range"
        assert min(delays) < ceiling * 0.2


def test_a_reconnect_loop_waits_longer_after_each_failure_and_starts_over_after_a_success() -> None:
    backoff = Backoff(initial=0.1, maximum=2.0)
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    for ceiling in ceilings:
        assert 0 <= backoff.next_delay() <= ceiling
    for _ in range(100):
        backoff.reset()
        assert backoff.next_delay() <= 0.1
        backoff.next_delay()


def test_a_status_lost_to_the_write_race_reads_as_unavailable_everywhere() -> None:
    lost = grpc.aio.AioRpcError(
        grpc.StatusCode.INTERNAL,
        grpc.aio.Metadata(),
        grpc.aio.Metadata(),
        "Internal error from Core",
    )
    assert view_rpc_error(lost).grpc_code is grpc.StatusCode.UNAVAILABLE
    assert view_rpc_error(lost).http_status == 503
    failure = classify(lost, "speech recognition")
    assert failure.waits_for_gpu and failure.reason.startswith("waiting for a GPU node")
    refused = grpc.aio.AioRpcError(
        grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(), grpc.aio.Metadata(), "bad audio"
    )
    assert not classify(refused, "speech recognition").retryable


def test_a_job_cut_off_from_its_object_storage_is_tried_again_and_says_why() -> None:
    unreachable = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/recordings/x")
    failure = classify(unreachable, "decoding")
    assert failure.retryable and not failure.waits_for_gpu
    assert failure.reason == "decoding failed: the object storage was unreachable"
    assert "127.0.0.1" not in failure.reason  # the reason is shown to the meeting's owner
