"""ReplayBuffer on its own: bounded read-ahead, replay without loss or duplicates, drain, errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gpu_proxy import replay
from gpu_proxy.replay import ReplayBuffer


@dataclass(frozen=True)
class _Msg:
    n: int
    size: int = 10

    def __len__(self) -> int:
        return self.size


class _Source:
    """A caller's request stream fed by the test; counts what was pulled from it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[_Msg | Exception | None] = asyncio.Queue()
        self.pulled = 0

    def __aiter__(self) -> AsyncIterator[_Msg]:
        return self

    async def __anext__(self) -> _Msg:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        self.pulled += 1
        return item

    def feed(self, *numbers: int) -> None:
        for n in numbers:
            self.queue.put_nowait(_Msg(n))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_reads_at_most_read_ahead_messages_before_they_are_asked_for() -> None:
    source = _Source()
    source.feed(*range(20))
    buffer = ReplayBuffer(source, limit_bytes=1 << 20)
    attempt = buffer.attempt()
    assert (await anext(attempt)).n == 0
    await _settle()
    # Flow control still reaches the caller: only READ_AHEAD more were read from it.
    assert source.pulled == 1 + replay.READ_AHEAD
    assert [(await anext(attempt)).n for _ in range(3)] == [1, 2, 3]
    await _settle()
    assert source.pulled == 4 + replay.READ_AHEAD
    buffer.close()


async def test_a_new_attempt_replays_what_was_sent_then_continues_exactly() -> None:
    source = _Source()
    source.feed(0, 1, 2)
    buffer = ReplayBuffer(source, limit_bytes=1 << 20)
    first = buffer.attempt()
    assert [(await anext(first)).n for _ in range(3)] == [0, 1, 2]
    waiting = asyncio.ensure_future(anext(first))  # the first attempt waits for more
    await _settle()
    second = buffer.attempt()  # ...when its node fails and the call moves on
    replayed = [(await anext(second)).n for _ in range(3)]
    source.feed(3, 4)
    source.queue.put_nowait(None)
    rest = [m.n async for m in second]
    with pytest.raises(StopAsyncIteration):
        await waiting  # the abandoned attempt takes nothing more
    assert replayed == [0, 1, 2]
    assert rest == [3, 4]
    assert buffer.replayable


async def test_past_the_limit_nothing_is_kept_and_a_replay_is_refused() -> None:
    source = _Source()
    source.feed(0, 1, 2)
    buffer = ReplayBuffer(source, limit_bytes=15)  # one 10-byte message fits, two do not
    first = buffer.attempt()
    assert [(await anext(first)).n for _ in range(2)] == [0, 1]
    assert not buffer.replayable
    with pytest.raises(RuntimeError):
        await anext(buffer.attempt())
    buffer.close()


async def test_drain_reads_the_rest_and_says_whether_it_ended() -> None:
    source = _Source()
    source.feed(0, 1, 2, 3)
    source.queue.put_nowait(None)
    buffer = ReplayBuffer(source, limit_bytes=1 << 20)
    attempt = buffer.attempt()
    assert (await anext(attempt)).n == 0
    assert await buffer.drain(5.0)
    assert source.pulled == 4

    endless = _Source()
    endless.feed(0)
    stuck = ReplayBuffer(endless, limit_bytes=1 << 20)
    assert (await anext(stuck.attempt())).n == 0
    assert not await stuck.drain(0.05)  # the caller never ends its stream
    stuck.close()


async def test_an_error_reading_the_caller_reaches_the_attempt() -> None:
    source = _Source()
    source.feed(0)
    source.queue.put_nowait(ConnectionError("caller went away"))
    buffer = ReplayBuffer(source, limit_bytes=1 << 20)
    attempt = buffer.attempt()
    assert (await anext(attempt)).n == 0
    with pytest.raises(ConnectionError):
        await anext(attempt)
