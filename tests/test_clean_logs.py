"""Normal paths log no ERROR: the causes of the ones seen in ordinary use, each pinned."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from opentelemetry.sdk.trace import TracerProvider

from mesh_common.telemetry import server_span
from tests.support.log_capture import captured_logs


async def test_a_streaming_span_closed_from_another_task_ends_without_an_error() -> None:
    # What grpc.aio does to a server stream the client left: it stops iterating, and the
    # event loop's finalizer closes the generator later, in a task of its own.
    tracer = TracerProvider().get_tracer("test")

    async def stream() -> AsyncGenerator[int]:
        with server_span(tracer, "/test.Stream/Items", {}) as span:
            assert span.is_recording()
            yield 1
            yield 2

    items = stream()
    with captured_logs() as logs:
        assert await anext(items) == 1
        await asyncio.create_task(items.aclose())
    logs.assert_clean()
