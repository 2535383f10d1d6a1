"""Replicas share the work: two of every service, each its own process, one of each killed.

One PostgreSQL, one S3 server (SeaweedFS), two gateways, two meeting-services, two
gpu-proxies and two gpu-nodes (mock engine) (`tests/support/replicas.py`). The test shows:

1. Any gateway serves any meeting: created on one, uploaded through the other, its event
   stream read on one and resumed with `Last-Event-ID` on the other continues exactly.
2. Under a steady load of uploads, SSE subscribers and CRUD, one replica of each kind is
   SIGKILLed in turn and started again: every meeting reaches COMPLETED, every subscriber
   receives every sequence number exactly once (reconnecting with `Last-Event-ID` on
   either gateway), and requests fail only while a replica is dead (the client then tries
   the other gateway).
3. A rolling restart (SIGTERM the first replica of every kind, start them again, then the
   second ones: one replica of each kind always runs) fails no request. What
   that means precisely: every request either gets the answer it would have had, or its
   stopping gateway did not take it: it refused the connection (its listener is closed
   first) or closed the connection before any response (it closes connections whose
   request no handler has started, and lets every started one finish). The client sends
   such a request to the other gateway (a create carries a request id, so even a lost
   answer could not make two meetings). No request is taken and then failed: no error
   status, no timeout, no response cut short, and no refusal from a gateway that was not
   stopping. The clients open a connection per request (no keep-alive), so no request
   waits on an idle connection a stopping gateway closes. An event stream that a stopping
   gateway ends is resumed with `Last-Event-ID`: that is the stream's protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from meeting_mesh.client import parse_sse
from meeting_mesh.seaweedfs import SeaweedFS
from tests.meeting_service.helpers import make_wav
from tests.support.meeting import make_token
from tests.support.postgres import create_database, drop_database
from tests.support.replicas import KINDS, ReplicaMesh, replica_mesh

WAV = make_wav(1.0)
FINAL = {"MEETING_STATUS_COMPLETED", "MEETING_STATUS_FAILED"}
# A request may fail this long after its dead replica is healthy again (connections and
# breakers to the restarted replica recover).
SLACK_S = 3.0
WORKERS = 2


@dataclass(frozen=True)
class Attempt:
    """One HTTP request: when, to which gateway, and how it ended."""

    start: float
    end: float
    gateway: int
    what: str
    # "ok"; "refused" (no connection); "unanswered" (the connection closed before any
    # response: a stopping gateway closes connections whose request it has not started);
    # "failed" (anything else: an error status, a timeout, a cut response).
    outcome: str
    detail: str = ""


def _unsent(error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return "refused"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "unanswered"
    return "failed"


@dataclass
class Load:
    """The clients' record: every request, every meeting, every subscriber's sequences."""

    urls: list[str]
    session: aiohttp.ClientSession
    attempts: list[Attempt] = field(default_factory=list)
    meetings: list[str] = field(default_factory=list)
    sequences: dict[str, list[int]] = field(default_factory=dict)
    finals: dict[str, str] = field(default_factory=dict)
    subscribers: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(
        self, method: str, path: str, *, prefer: int, expect: int = 200, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Sends a request, to the other gateway whenever one fails; returns JSON, headers."""
        for attempt in range(60):
            gateway = (prefer + attempt) % len(self.urls)
            start = time.monotonic()
            try:
                async with self.session.request(
                    method, self.urls[gateway] + path, **kwargs
                ) as response:
                    body = await response.read()
                    if response.status == expect:
                        self._record(start, gateway, f"{method} {path}", "ok")
                        data = await response.json() if body else {}
                        return data, dict(response.headers)
                    outcome, detail = "failed", f"{response.status} {body[:300]!r}"
            except aiohttp.ClientError as error:
                outcome, detail = _unsent(error), repr(error)
            except TimeoutError as error:
                outcome, detail = "failed", repr(error)
            self._record(start, gateway, f"{method} {path}", outcome, detail)
            await asyncio.sleep(0.1)
        tried = [a for a in self.attempts if a.what == f"{method} {path}"]
        raise AssertionError(f"{method} {path} failed on every gateway: {tried[-4:]}")

    def _record(
        self, start: float, gateway: int, what: str, outcome: str, detail: str = ""
    ) -> None:
        self.attempts.append(Attempt(start, time.monotonic(), gateway, what, outcome, detail))

    async def create(self, prefer: int) -> str:
        # The request id makes a retried create return the meeting a lost answer made.
        data, _ = await self.request(
            "POST",
            "/v1/meetings",
            prefer=prefer,
            expect=201,
            params={"requestId": str(uuid.uuid4())},
            json={"title": "replicas"},
        )
        meeting_id = str(data["meeting"]["id"])
        self.meetings.append(meeting_id)
        return meeting_id

    async def upload(self, meeting_id: str, prefer: int) -> None:
        """Uploads WAV, resuming from the stored offset (HEAD) after a failed attempt."""
        path = f"/v1/meetings/{meeting_id}/audio"
        for attempt in range(20):
            if attempt:
                _, headers = await self.request("HEAD", path, prefer=prefer + attempt)
                if headers.get("Upload-Complete") == "true":
                    return
                offset = int(headers["Upload-Offset"])
            else:
                offset = 0
            method, extra = ("PATCH", {"Upload-Offset": str(offset)}) if offset else ("PUT", {})
            start = time.monotonic()
            gateway = (prefer + attempt) % len(self.urls)
            try:
                async with self.session.request(
                    method,
                    self.urls[gateway] + path,
                    data=WAV[offset:],
                    headers={"Content-Type": "audio/wav", **extra},
                ) as response:
                    body = await response.read()
                    if response.status == 200:
                        self._record(start, gateway, f"{method} {path}", "ok")
                        return
                    outcome, detail = "failed", f"{response.status} {body[:300]!r}"
            except aiohttp.ClientError as error:
                outcome, detail = _unsent(error), repr(error)
            except TimeoutError as error:
                outcome, detail = "failed", repr(error)
            self._record(start, gateway, f"{method} {path}", outcome, detail)
            await asyncio.sleep(0.1)
        tried = [a for a in self.attempts if meeting_id in a.what]
        raise AssertionError(f"upload of {meeting_id} never completed: {tried[-4:]}")

    async def follow(self, meeting_id: str, prefer: int, *, until: int | None = None) -> None:
        """Reads the meeting's events until a final status (or sequence `until`),
        reconnecting with `Last-Event-ID` to the other gateway whenever cut off."""
        seen = self.sequences.setdefault(meeting_id, [])
        gateway = prefer
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=10)
        while True:
            headers = {"Last-Event-ID": str(seen[-1])} if seen else {}
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.get(
                    f"{self.urls[gateway]}/v1/meetings/{meeting_id}/events",
                    headers=headers,
                    timeout=timeout,
                ) as response:
                    if response.status == 200:
                        async for event in parse_sse(response.content):
                            if event.id:
                                seen.append(int(event.id))
                            status = event.data.get("statusChange", {}).get("status", "")
                            if status in FINAL:
                                self.finals[meeting_id] = status
                                return
                            if until is not None and seen and seen[-1] >= until:
                                return
            gateway = (gateway + 1) % len(self.urls)
            await asyncio.sleep(0.1)

    async def worker(self, index: int) -> None:
        """Creates, uploads, follows, reads, renames and lists meetings until stopped."""
        turn = index
        while not self.stop.is_set():
            prefer = turn % len(self.urls)
            meeting_id = await self.create(prefer)
            self.subscribers.append(
                asyncio.create_task(self.follow(meeting_id, 1 - prefer), name=meeting_id)
            )
            await self.upload(meeting_id, 1 - prefer)
            await self.request("GET", f"/v1/meetings/{meeting_id}", prefer=prefer)
            await self.request(
                "PATCH",
                f"/v1/meetings/{meeting_id}",
                prefer=1 - prefer,
                params={"updateMask": "title"},
                json={"title": f"replicas {turn}"},
            )
            await self.request("GET", "/v1/meetings", prefer=prefer, params={"pageSize": "5"})
            turn += 1


@contextlib.asynccontextmanager
async def running_load(load: Load) -> AsyncIterator[None]:
    workers = [asyncio.create_task(load.worker(i)) for i in range(WORKERS)]
    try:
        yield
    finally:
        load.stop.set()
        async with asyncio.timeout(60):
            await asyncio.gather(*workers)


def failures(attempts: list[Attempt], since: float, until: float) -> list[Attempt]:
    return [a for a in attempts if a.outcome != "ok" and since <= a.start <= until]


@pytest.fixture
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replicas")


async def test_replicas_share_the_work_and_survive_kills_and_a_rolling_restart(
    postgres_admin_dsn: str, s3_server: SeaweedFS, s3_bucket: str, scratch: Path
) -> None:
    database_url = await create_database(postgres_admin_dsn, "replicas")
    connector = aiohttp.TCPConnector(force_close=True)
    token = make_token("replica-user")
    try:
        async with (
            replica_mesh(scratch, database_url, s3_server, s3_bucket) as mesh,
            aiohttp.ClientSession(
                connector=connector,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as session,
        ):
            load = Load(mesh.gateway_urls, session)
            try:
                await any_gateway_serves_any_meeting(load)
                await kills_lose_nothing(mesh, load)
                await a_rolling_restart_fails_nothing(mesh, load)
            except BaseException:
                print(mesh.logs())
                raise
    finally:
        await drop_database(postgres_admin_dsn, database_url)


async def any_gateway_serves_any_meeting(load: Load) -> None:
    meeting_id = await load.create(prefer=0)
    await load.upload(meeting_id, prefer=1)
    # The first events on gateway 1, the rest on gateway 2 from where gateway 1 stopped.
    await load.follow(meeting_id, prefer=0, until=3)
    await load.follow(meeting_id, prefer=1)
    seen = load.sequences[meeting_id]
    assert seen == list(range(1, len(seen) + 1))
    assert load.finals[meeting_id] == "MEETING_STATUS_COMPLETED"
    assert all(a.outcome == "ok" for a in load.attempts), load.attempts


async def kills_lose_nothing(mesh: ReplicaMesh, load: Load) -> None:
    windows: list[tuple[str, float, float]] = []
    async with running_load(load):
        for kind in KINDS[::-1]:
            # The load meets the dead replica while its successor starts.
            name = f"{kind}-1"
            killed = time.monotonic()
            await mesh.stop(name, signal.SIGKILL)
            await mesh.start(name)
            windows.append((name, killed, time.monotonic() + SLACK_S))
    await every_meeting_completes_with_every_event_once(load)
    for failure in (a for a in load.attempts if a.outcome != "ok"):
        assert any(start <= failure.end and failure.start <= end for _, start, end in windows), (
            failure,
            windows,
        )


async def a_rolling_restart_fails_nothing(mesh: ReplicaMesh, load: Load) -> None:
    """The first replica of every kind restarts, then the second: one of each always runs."""
    load.stop = asyncio.Event()
    began = time.monotonic()
    stopping: dict[int, list[tuple[float, float]]] = {0: [], 1: []}
    async with running_load(load):
        for i in (1, 2):
            names = [f"{kind}-{i}" for kind in KINDS]
            since = time.monotonic()
            codes = await asyncio.gather(*(mesh.stop(name, signal.SIGTERM) for name in names))
            assert codes == [0] * len(names), dict(zip(names, codes, strict=True))
            await asyncio.gather(*(mesh.start(name) for name in names))
            stopping[i - 1].append((since, time.monotonic()))
    ended = time.monotonic()
    await every_meeting_completes_with_every_event_once(load)
    during = failures(load.attempts, began, ended)
    assert [a for a in during if a.outcome not in {"refused", "unanswered"}] == []
    # Only a stopping gateway refuses or leaves a request unanswered.
    for attempt in during:
        assert any(
            start <= attempt.end and attempt.start <= end
            for start, end in stopping[attempt.gateway]
        ), attempt


async def every_meeting_completes_with_every_event_once(load: Load) -> None:
    async with asyncio.timeout(60):
        await asyncio.gather(*load.subscribers)
    load.subscribers.clear()
    for meeting_id in load.meetings:
        seen = load.sequences[meeting_id]
        assert seen == list(range(1, len(seen) + 1)), (meeting_id, seen)
        assert load.finals[meeting_id] == "MEETING_STATUS_COMPLETED", meeting_id
