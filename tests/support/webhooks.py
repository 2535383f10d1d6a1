"""A webhook receiver for tests: a real aiohttp server on 127.0.0.1 that does as it is told.

Each test uses a path of its own (`receiver.url(name)`); what the receiver answers there is
planned per request (`plan(name, 500, 500)`: two 500s, then 200s; `HANG` holds the request
until `release()`), and every request is kept with its headers and body.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest_asyncio
from aiohttp import web

HANG = "hang"


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        """Its `webhook-id` header."""
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    """The receiver's state; see the module docstring."""

    base: str = ""
    requests: dict[str, list[Received]] = field(default_factory=dict)
    plans: dict[str, list[int | str]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, name: str) -> str:
        """The URL of a test's path."""
        return f"{self.base}/hooks/{name}"

    def plan(self, name: str, *answers: int | str) -> None:
        """Sets the answers to the next requests on a path (200 after them)."""
        self.plans[name] = list(answers)

    def got(self, name: str) -> list[Received]:
        """The requests a path got, in order."""
        return self.requests.get(name, [])

    async def wait_for(
        self, name: str, done: Callable[[list[Received]], bool], within: float = 15.0
    ) -> list[Received]:
        """Waits until the path's requests satisfy `done`, and returns them."""
        async with asyncio.timeout(within), self.changed:
            await self.changed.wait_for(lambda: done(self.got(name)))
        return self.got(name)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        received = Received(dict(request.headers), await request.read())
        async with self.changed:
            self.requests.setdefault(name, []).append(received)
            self.changed.notify_all()
        plan = self.plans.get(name) or []
        answer = plan.pop(0) if plan else 200
        if answer == HANG:
            await self.released.wait()
            answer = 503
        if answer in (301, 302, 307, 308):
            return web.Response(status=int(answer), headers={"Location": self.url(f"{name}-to")})
        return web.Response(status=int(answer), text=f"answer {answer} " + "x" * 1000)


async def run_receiver() -> AsyncIterator[Receiver]:
    """Serves a receiver on 127.0.0.1 (port 0) for the duration of the generator."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{name}", receiver.handle)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.base = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        receiver.released.set()
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    """A receiver for the module's tests."""
    async for running in run_receiver():
        yield running


async def read_until[T](read: Callable[[], Awaitable[T]], done: Callable[[T], bool]) -> T:
    """Reads until `done` holds (every 50 ms, for at most 15 s) and returns the last read."""
    async with asyncio.timeout(15.0):
        while True:
            value = await read()
            if done(value):
                return value
            await asyncio.sleep(0.05)
