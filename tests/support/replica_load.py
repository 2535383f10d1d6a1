"""A steady load on a `ReplicaMesh`'s gateways, and the clients' record of it.

`Load` creates meetings, uploads their audio (resuming with `HEAD`/`PATCH` after a failed
attempt; some uploads are cut on purpose so the resume path always runs), streams audio
into others over the live WebSocket (resuming a dropped socket), follows every meeting's
event stream (reconnecting with `Last-Event-ID` to either gateway), and reads, renames
and lists meetings. Every HTTP request is recorded as an `Attempt`; a failed one is sent
again, to the other gateway, until `patience_s` runs out. Used by tests/test_replicas.py
and the chaos soak (bench/chaos).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp

from meeting_mesh.client import parse_sse
from tests.meeting_service.helpers import make_wav

WAV = make_wav(1.0)
# Bigger than one S3 part (5 MiB), so a cut upload leaves a stored part to resume from.
BIG_WAV = make_wav(200.0)
CUT_AT = 5 * 1024 * 1024 + 512 * 1024
# Two seconds of 16 kHz 16-bit PCM, sent 100 ms a frame at twice real time.
LIVE_PCM = make_wav(2.0)[44:]
LIVE_FRAME = 3200
LIVE_PACE_S = 0.05
FINAL = {"MEETING_STATUS_COMPLETED", "MEETING_STATUS_FAILED"}
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=30.0, ws_close=10.0)
T = TypeVar("T")


@dataclass(frozen=True)
class Attempt:
    """One HTTP request (or WebSocket session): when, to which gateway, and how it ended.

    Attributes:
        outcome: "ok"; "refused" (no connection); "unanswered" (the connection closed
            before any response: a stopping gateway closes connections whose request it
            has not started); "failed" (anything else: an error status, a timeout, a cut
            response, a WebSocket closed with an error).
        status: The HTTP status of a failed answer (a WebSocket's close code 4xxx as its
            HTTP status, 1011 as 500); None when there was no answer.
    """

    start: float
    end: float
    gateway: int
    what: str
    outcome: str
    detail: str = ""
    status: int | None = None


class _Cut(Exception):
    """Raised inside an upload's body to drop the connection on purpose."""


class _Failed(Exception):
    def __init__(self, outcome: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.outcome, self.detail, self.status = outcome, detail, status


def _unsent(error: aiohttp.ClientError) -> str:
    if isinstance(error, aiohttp.ClientConnectorError):
        return "refused"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
        return "unanswered"
    return "failed"


def _close_status(code: int) -> int | None:
    if 4000 <= code < 5000:
        return code - 4000
    return 500 if code == 1011 else None


@dataclass
class Load:
    """The clients' record: every request, every meeting, every subscriber's sequences.

    Attributes:
        urls: The gateways.
        session: The HTTP session (carrying the token).
        patience_s: How long one operation is retried before the load gives up on it.
        cut_every: Every this many uploads of a worker is a big one cut on purpose and
            resumed (0: none).
        resumed_uploads: The meetings whose upload continued with `PATCH` from a stored
            offset.
        live_meetings: Meetings transcribed over the live WebSocket.
        live_resumes: Live sockets opened again after a drop.
    """

    urls: list[str]
    session: aiohttp.ClientSession
    patience_s: float = 60.0
    cut_every: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    meetings: list[str] = field(default_factory=list)
    sequences: dict[str, list[int]] = field(default_factory=dict)
    finals: dict[str, str] = field(default_factory=dict)
    subscribers: list[asyncio.Task[None]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    resumed_uploads: set[str] = field(default_factory=set)
    live_meetings: list[str] = field(default_factory=list)
    live_resumes: int = 0

    def _record(
        self,
        start: float,
        gateway: int,
        what: str,
        outcome: str,
        detail: str = "",
        status: int | None = None,
    ) -> None:
        self.attempts.append(
            Attempt(start, time.monotonic(), gateway, what, outcome, detail, status)
        )

    async def _retried(self, what: str, prefer: int, once: Callable[[int], Awaitable[T]]) -> T:
        """Runs `once(gateway)` until it succeeds, alternating gateways, within patience."""
        deadline = time.monotonic() + self.patience_s
        pause = 0.1
        attempt = 0
        while True:
            gateway = (prefer + attempt) % len(self.urls)
            start = time.monotonic()
            try:
                result = await once(gateway)
            except _Failed as failed:
                self._record(start, gateway, what, failed.outcome, failed.detail, failed.status)
            except aiohttp.ClientError as error:
                self._record(start, gateway, what, _unsent(error), repr(error))
            except TimeoutError as error:
                self._record(start, gateway, what, "failed", repr(error))
            except ConnectionResetError as error:
                # A WebSocket written to after its connection dropped.
                self._record(start, gateway, what, "failed", repr(error))
            else:
                self._record(start, gateway, what, "ok")
                return result
            if time.monotonic() > deadline:
                tried = [a for a in self.attempts if a.what == what]
                raise AssertionError(f"{what} failed for {self.patience_s:.0f} s: {tried[-4:]}")
            attempt += 1
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 1.0)

    async def request(
        self, method: str, path: str, *, prefer: int, expect: int = 200, **kwargs: Any
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Sends a request, to the other gateway whenever one fails; returns JSON, headers."""

        async def once(gateway: int) -> tuple[dict[str, Any], dict[str, str]]:
            async with self.session.request(
                method, self.urls[gateway] + path, **kwargs
            ) as response:
                body = await response.read()
                if response.status != expect:
                    raise _Failed("failed", f"{response.status} {body[:300]!r}", response.status)
                return (json.loads(body) if body else {}), dict(response.headers)

        return await self._retried(f"{method} {path}", prefer, once)

    async def create(self, prefer: int, title: str = "replicas") -> str:
        # The request id makes a retried create return the meeting a lost answer made.
        data, _ = await self.request(
            "POST",
            "/v1/meetings",
            prefer=prefer,
            expect=201,
            params={"requestId": str(uuid.uuid4())},
            json={"title": title},
        )
        meeting_id = str(data["meeting"]["id"])
        self.meetings.append(meeting_id)
        return meeting_id

    async def upload(self, meeting_id: str, prefer: int, *, cut: bool = False) -> None:
        """Uploads WAV, resuming from the stored offset (HEAD) after a failed attempt.

        Args:
            meeting_id: The meeting awaiting audio.
            prefer: The gateway of the first attempt.
            cut: Upload `BIG_WAV`, dropping the first attempt's connection after
                `CUT_AT` bytes.
        """
        path = f"/v1/meetings/{meeting_id}/audio"
        data = BIG_WAV if cut else WAV
        attempt = 0

        async def once(gateway: int) -> bool:
            nonlocal attempt
            attempt += 1
            offset = 0
            if attempt > 1:
                _, headers = await self.request("HEAD", path, prefer=gateway)
                if headers.get("Upload-Complete") == "true":
                    return True
                offset = int(headers["Upload-Offset"])
            if offset:
                self.resumed_uploads.add(meeting_id)
            method, extra = ("PATCH", {"Upload-Offset": str(offset)}) if offset else ("PUT", {})
            body: bytes | AsyncIterator[bytes] = data[offset:]
            if cut and attempt == 1:
                body = _cut_body(data, CUT_AT)
                # A chunked body declares its length, as a resumable client does: without
                # it, the end of the stream is the end of the recording.
                extra["Upload-Length"] = str(len(data))
            try:
                async with self.session.request(
                    method,
                    self.urls[gateway] + path,
                    data=body,
                    headers={"Content-Type": "audio/wav", **extra},
                ) as response:
                    answer = await response.read()
                    if response.status != 200:
                        raise _Failed(
                            "failed", f"{response.status} {answer[:300]!r}", response.status
                        )
                    return True
            except _Cut as error:
                raise _Failed("cut", "cut on purpose") from error
            except aiohttp.ClientError as error:
                if isinstance(error.__cause__, _Cut):
                    raise _Failed("cut", "cut on purpose") from error
                raise

        await self._retried(f"upload {path}", prefer, once)

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

    async def live(self, meeting_id: str, prefer: int) -> None:
        """Streams `LIVE_PCM` over the live WebSocket and ends it, resuming after a drop.

        A socket opened after one that was open is a resume (a LIVE meeting is resumed
        whether or not `resume=true` is given); it sends the frames not yet sent (frames
        lost in the drop are just missing audio). Such a socket refused with 4400
        WRONG_STATE means the dropped session was finalised (after the end marker, or
        by the sweeper): the session is over.
        """
        path = f"/v1/meetings/{meeting_id}/live"
        sent = 0
        opened = False
        self.live_meetings.append(meeting_id)

        async def once(gateway: int) -> None:
            nonlocal sent, opened
            resume = opened
            if resume:
                self.live_resumes += 1
            async with self.session.ws_connect(
                self.urls[gateway] + path,
                timeout=WS_TIMEOUT,
            ) as ws:
                opened = True
                while sent < len(LIVE_PCM):
                    await ws.send_bytes(LIVE_PCM[sent : sent + LIVE_FRAME])
                    sent += LIVE_FRAME
                    await asyncio.sleep(LIVE_PACE_S)
                await ws.send_str(json.dumps({"type": "end"}))
                last: dict[str, Any] = {}
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        last = json.loads(message.data)
                code = int(ws.close_code or 0)
            if code == 1000:
                return
            details = last.get("error", {}).get("details") or [{}]
            reason = str(details[0].get("reason", ""))
            if resume and code == 4400 and reason == "WRONG_STATE":
                return
            raise _Failed("failed", f"closed {code} {str(last)[:300]}", _close_status(code))

        await self._retried(f"live {path}", prefer, once)

    async def worker(self, index: int) -> None:
        """Creates, uploads, follows, reads, renames and lists meetings until stopped."""
        turn = index
        while not self.stop.is_set():
            prefer = turn % len(self.urls)
            meeting_id = await self.create(prefer)
            self.subscribers.append(
                asyncio.create_task(self.follow(meeting_id, 1 - prefer), name=meeting_id)
            )
            cut = self.cut_every > 0 and turn % self.cut_every == self.cut_every - 1
            await self.upload(meeting_id, 1 - prefer, cut=cut)
            await self.crud(meeting_id, prefer, turn)
            turn += 1

    async def live_worker(self, index: int) -> None:
        """Transcribes meetings over the live WebSocket, one after another, until stopped."""
        turn = index
        while not self.stop.is_set():
            prefer = turn % len(self.urls)
            meeting_id = await self.create(prefer, title="live")
            self.subscribers.append(
                asyncio.create_task(self.follow(meeting_id, 1 - prefer), name=meeting_id)
            )
            await self.live(meeting_id, prefer)
            await self.crud(meeting_id, 1 - prefer, turn)
            turn += 1

    async def crud(self, meeting_id: str, prefer: int, turn: int) -> None:
        """Reads the meeting, renames it and lists a page of meetings."""
        await self.request("GET", f"/v1/meetings/{meeting_id}", prefer=prefer)
        await self.request(
            "PATCH",
            f"/v1/meetings/{meeting_id}",
            prefer=1 - prefer,
            params={"updateMask": "title"},
            json={"title": f"replicas {turn}"},
        )
        await self.request("GET", "/v1/meetings", prefer=prefer, params={"pageSize": "5"})


async def _cut_body(data: bytes, at: int) -> AsyncIterator[bytes]:
    step = 256 * 1024
    for start in range(0, at, step):
        yield data[start : min(start + step, at)]
    # Let the gateway pass the bytes on before the connection drops.
    await asyncio.sleep(0.5)
    raise _Cut


@contextlib.asynccontextmanager
async def running_load(load: Load, workers: int = 2, live_workers: int = 0) -> AsyncIterator[None]:
    """Runs the load's workers for the duration of the block, then lets them finish."""
    load.stop = asyncio.Event()
    tasks = [asyncio.create_task(load.worker(i)) for i in range(workers)]
    tasks += [asyncio.create_task(load.live_worker(i)) for i in range(live_workers)]
    try:
        yield
    finally:
        load.stop.set()
        async with asyncio.timeout(load.patience_s + 60):
            ended = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [e for e in ended if isinstance(e, BaseException)]
        if errors:
            raise errors[0]


async def every_meeting_completes_with_every_event_once(load: Load, within_s: float) -> None:
    """Waits for every subscriber; asserts each saw 1..n once and its meeting COMPLETED."""
    async with asyncio.timeout(within_s):
        await asyncio.gather(*load.subscribers)
    load.subscribers.clear()
    for meeting_id in load.meetings:
        seen = load.sequences[meeting_id]
        assert seen == list(range(1, len(seen) + 1)), (meeting_id, seen)
        assert load.finals[meeting_id] == "MEETING_STATUS_COMPLETED", meeting_id
