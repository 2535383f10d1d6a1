"""A burst of identical requests shares one call; a request after it makes its own."""

from __future__ import annotations

import asyncio

import pytest

from gateway.single_flight import SingleFlight


async def test_callers_during_a_call_share_its_answer_and_later_ones_call_again() -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def call() -> int:
        nonlocal calls
        calls += 1
        made = calls
        await release.wait()
        return made

    burst = [asyncio.create_task(flight.run("meeting-a", call)) for _ in range(50)]
    other = asyncio.create_task(flight.run("meeting-b", call))
    await asyncio.sleep(0)  # every caller has asked
    release.set()
    assert [await task for task in burst] == [1] * 50
    assert await other == 2
    assert calls == 2  # one per key, not one per caller
    assert await flight.run("meeting-a", call) == 3  # nothing is kept after the call


async def test_an_error_reaches_every_caller_and_a_leaving_caller_cancels_nothing() -> None:
    flight: SingleFlight[int] = SingleFlight()
    release = asyncio.Event()

    async def failing() -> int:
        await release.wait()
        raise LookupError("no such meeting")

    leaving = asyncio.create_task(flight.run("m", failing))
    staying = asyncio.create_task(flight.run("m", failing))
    await asyncio.sleep(0)
    leaving.cancel()  # its client disconnected
    release.set()
    with pytest.raises(LookupError, match="no such meeting"):
        await staying
    with pytest.raises(asyncio.CancelledError):
        await leaving
