"""`read_ahead`: the next item is read while the previous one is handled, and no further.

gpu_proxy reads a node's next response while the caller is sent the previous one;
meeting_service receives an upload's next chunk while the previous one is committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mesh_common.streams import drain, read_ahead


class _Responses:
    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count = count
        self.fail_at = fail_at
        self.pulled = 0

    def __aiter__(self) -> AsyncIterator[int]:
        return self

    async def __anext__(self) -> int:
        await asyncio.sleep(0)
        if self.pulled == self.fail_at:
            raise RuntimeError("node failed")
        if self.pulled == self.count:
            raise StopAsyncIteration
        self.pulled += 1
        return self.pulled


async def test_one_response_is_read_ahead_and_no_more() -> None:
    responses = _Responses(5)
    relayed = read_ahead(responses)
    assert await anext(relayed) == 1
    for _ in range(10):
        await asyncio.sleep(0)
    assert responses.pulled == 2  # the next one, read while the first is being sent
    assert [r async for r in relayed] == [2, 3, 4, 5]


async def test_a_failure_reading_ahead_reaches_the_relay_in_order() -> None:
    responses = _Responses(5, fail_at=2)
    relayed = read_ahead(responses)
    assert [await anext(relayed), await anext(relayed)] == [1, 2]
    with pytest.raises(RuntimeError):
        await anext(relayed)


async def test_closing_the_relay_stops_reading() -> None:
    responses = _Responses(100)
    relayed = read_ahead(responses)
    assert await anext(relayed) == 1
    await relayed.aclose()
    for _ in range(10):
        await asyncio.sleep(0)
    assert responses.pulled <= 2


async def test_reading_on_after_a_consumer_stopped_loses_nothing() -> None:
    """What an upload refused half-way does: drain what is left, the read ahead included."""
    responses = _Responses(5)
    relayed = read_ahead(responses)
    async for item in relayed:
        if item == 2:
            break  # the consumer gave up with item 3 already read ahead
    assert await drain(relayed, 5.0)
    assert responses.pulled == 5


async def test_a_deeper_read_ahead_reads_that_many_and_no_more() -> None:
    """What an upload does while its store takes a whole part at once."""
    responses = _Responses(10)
    relayed = read_ahead(responses, depth=4)
    assert await anext(relayed) == 1
    for _ in range(20):
        await asyncio.sleep(0)
    assert responses.pulled == 5  # the first, then four read while it is handled
    assert [r async for r in relayed] == list(range(2, 11))


async def test_a_failure_deep_in_the_read_ahead_reaches_the_consumer_in_order() -> None:
    responses = _Responses(10, fail_at=3)
    relayed = read_ahead(responses, depth=4)
    assert [await anext(relayed) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(RuntimeError):
        await anext(relayed)
