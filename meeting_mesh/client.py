"""A small asynchronous client of the gateway's HTTP API, for the `meeting-mesh` commands.

It speaks only HTTP, like any other client: meetings, search, transcripts and summaries,
uploads with resume (HEAD for the stored offset, PATCH for the rest), and the event stream
with `Last-Event-ID` reconnects.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from mesh_common.retry import RETRYABLE_CODES, backoff_delay

READ_BLOCK_BYTES = 256 * 1024

# A `stream_error` with one of these statuses means the gateway lost its way to the service
# (a replica died, a peer went silent): the stream resumes from `Last-Event-ID` like after a
# dropped connection. Any other status would fail the same way again.
_RESUMABLE_STREAM_ERRORS = frozenset(
    {code.name for code in RETRYABLE_CODES} | {"DEADLINE_EXCEEDED"}
)


class GatewayError(Exception):
    """The gateway answered with an error body.

    Attributes:
        status: The HTTP status.
        message: The server's message.
        reason: The ErrorInfo reason, when the body had one.
    """

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class SseEvent:
    """One Server-Sent Event.

    Attributes:
        id: The `id:` field ("" when absent).
        event: The `event:` field ("message" when absent).
        data: The decoded `data:` JSON.
    """

    id: str
    event: str
    data: dict[str, Any]


async def _raise_for_error(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    message, reason = response.reason or "error", ""
    try:
        body = await response.json(content_type=None)
        error = body["error"]
        message = str(error["message"])
        reason = next((d.get("reason", "") for d in error.get("details", [])), "")
    except (ValueError, KeyError, TypeError, aiohttp.ContentTypeError):
        pass
    raise GatewayError(response.status, message, reason)


async def parse_sse(content: aiohttp.StreamReader) -> AsyncIterator[SseEvent]:
    """Parses a `text/event-stream` body into events (comments are skipped).

    Args:
        content: The response body stream.

    Yields:
        Each event once its blank line arrives.
    """
    event_id, name = "", ""
    data: list[str] = []
    async for raw in content:
        line = raw.decode().rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event_id, name or "message", json.loads("\n".join(data)))
            event_id, name, data = "", "", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data.append(value)


class GatewayClient:
    """The gateway's API for one user.

    Args:
        session: The HTTP session (the caller closes it).
        base_url: The gateway's URL ("http://127.0.0.1:8080").
        token: The bearer token.
    """

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._auth = {"Authorization": f"Bearer {token}"}

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Calls a unary REST route.

        Args:
            method: "GET", "POST", "DELETE"...
            path: The route's path ("/v1/webhooks").
            body: The JSON body, if any.
            params: Query parameters (pairs, for a repeated one).

        Returns:
            The JSON answer ({} for an empty one).

        Raises:
            GatewayError: The gateway refused.
        """
        async with self._session.request(
            method, f"{self._base}{path}", json=body, params=params, headers=self._auth
        ) as response:
            await _raise_for_error(response)
            if response.status == 204:
                return {}
            answer: dict[str, Any] = await response.json()
            return answer

    async def send_body(
        self, path: str, body: bytes, *, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """POSTs bytes as they are (a recording) to a route whose body is a `bytes` field.

        Args:
            path: The route's path.
            body: The bytes.
            params: Query parameters.

        Returns:
            The JSON answer.

        Raises:
            GatewayError: The gateway refused.
        """
        headers = {**self._auth, "Content-Type": "application/octet-stream"}
        async with self._session.post(
            f"{self._base}{path}", data=body, params=params, headers=headers
        ) as response:
            await _raise_for_error(response)
            answer: dict[str, Any] = await response.json()
            return answer

    async def create_meeting(
        self, title: str, *, language: str = "", expected_speakers: int = 0
    ) -> dict[str, Any]:
        """Creates a meeting.

        Args:
            title: Its title.
            language: Its spoken language (BCP-47), "" to detect it.
            expected_speakers: How many people speak, 0 when unknown.

        Returns:
            The meeting JSON.

        Raises:
            GatewayError: The gateway refused.
        """
        body: dict[str, Any] = {"title": title}
        if language:
            body["language"] = language
        if expected_speakers:
            body["expectedSpeakers"] = expected_speakers
        meeting: dict[str, Any] = (await self.call("POST", "/v1/meetings", body=body))["meeting"]
        return meeting

    async def meeting(self, meeting_id: str) -> dict[str, Any]:
        """Returns one meeting's JSON.

        Raises:
            GatewayError: The gateway refused (404 for a meeting that is not the caller's).
        """
        meeting: dict[str, Any] = (await self.call("GET", f"/v1/meetings/{meeting_id}"))["meeting"]
        return meeting

    async def list_meetings(self, page_size: int = 0, page_token: str = "") -> dict[str, Any]:
        """Returns one page of the caller's meetings, newest first (ListMeetings' JSON).

        Raises:
            GatewayError: The gateway refused.
        """
        params = {"pageSize": str(page_size)} if page_size else {}
        if page_token:
            params["pageToken"] = page_token
        return await self.call("GET", "/v1/meetings", params=params)

    async def delete_meeting(self, meeting_id: str) -> None:
        """Deletes a meeting with its audio and transcript.

        Raises:
            GatewayError: The gateway refused.
        """
        await self.call("DELETE", f"/v1/meetings/{meeting_id}")

    async def search(self, params: list[tuple[str, str]]) -> dict[str, Any]:
        """Returns one page of a search across the caller's meetings (its JSON).

        Args:
            params: The query parameters of `GET /v1/search` ("q", "pageToken"...).

        Raises:
            GatewayError: The gateway refused.
        """
        return await self.call("GET", "/v1/search", params=params)

    async def transcript(self, meeting_id: str) -> dict[str, Any]:
        """Returns the meeting's current transcript (GetTranscript's JSON).

        Args:
            meeting_id: The meeting.

        Returns:
            The transcript JSON.

        Raises:
            GatewayError: The gateway refused.
        """
        return await self.call("GET", f"/v1/meetings/{meeting_id}/transcript")

    async def summary(self, meeting_id: str) -> dict[str, Any]:
        """Returns the meeting's summary JSON (a 400 NOT_READY before it is written).

        Raises:
            GatewayError: The gateway refused.
        """
        summary: dict[str, Any] = (await self.call("GET", f"/v1/meetings/{meeting_id}/summary"))[
            "summary"
        ]
        return summary

    async def export(self, meeting_id: str, export_format: str) -> tuple[bytes, str]:
        """Returns the meeting's transcript as a file (`?format=`).

        Args:
            meeting_id: The meeting.
            export_format: "srt", "vtt", "text", "markdown" or "json".

        Returns:
            The file's bytes and the file name the gateway suggests.

        Raises:
            GatewayError: The gateway refused.
        """
        async with self._session.get(
            f"{self._base}/v1/meetings/{meeting_id}/transcript",
            params={"format": export_format},
            headers=self._auth,
        ) as response:
            await _raise_for_error(response)
            disposition = response.content_disposition
            filename = disposition.filename if disposition and disposition.filename else ""
            return await response.read(), filename

    async def create_api_key(self, name: str, scopes: list[str]) -> dict[str, Any]:
        """Creates an API key for this user.

        Args:
            name: The key's name.
            scopes: What it may do.

        Returns:
            CreateApiKey's JSON: `apiKey` and `secret` (the key, shown this once).

        Raises:
            GatewayError: The gateway refused.
        """
        async with self._session.post(
            f"{self._base}/v1/api-keys",
            json={"name": name, "scopes": scopes},
            headers=self._auth,
        ) as response:
            await _raise_for_error(response)
            created: dict[str, Any] = await response.json()
            return created

    async def api_keys(self) -> list[dict[str, Any]]:
        """Lists this user's API keys (never the keys themselves).

        Raises:
            GatewayError: The gateway refused.
        """
        async with self._session.get(f"{self._base}/v1/api-keys", headers=self._auth) as response:
            await _raise_for_error(response)
            keys: list[dict[str, Any]] = (await response.json()).get("apiKeys", [])
            return keys

    async def revoke_api_key(self, key_id: str) -> None:
        """Revokes one of this user's API keys.

        Raises:
            GatewayError: The gateway refused (404 for a key that is not the user's).
        """
        async with self._session.delete(
            f"{self._base}/v1/api-keys/{key_id}", headers=self._auth
        ) as response:
            await _raise_for_error(response)

    async def stored_offset(self, meeting_id: str) -> tuple[int, bool]:
        """Asks how much of the recording is stored.

        Args:
            meeting_id: The meeting.

        Returns:
            (bytes stored, whether the upload is complete).

        Raises:
            GatewayError: The gateway refused.
        """
        async with self._session.head(
            f"{self._base}/v1/meetings/{meeting_id}/audio", headers=self._auth
        ) as response:
            await _raise_for_error(response)
            complete = response.headers.get("Upload-Complete") == "true"
            return int(response.headers["Upload-Offset"]), complete

    async def upload(
        self,
        meeting_id: str,
        path: Path,
        content_type: str,
        *,
        on_progress: Callable[[int], None] = lambda _: None,
        attempts: int = 5,
        resume: bool = False,
    ) -> dict[str, Any]:
        """Uploads a file, resuming from the stored offset after a dropped connection.

        Args:
            meeting_id: The meeting.
            path: The recording.
            content_type: Its media type ("audio/wav").
            on_progress: Called with the number of bytes the server has or was sent.
            attempts: How many connections to try before giving up.
            resume: Continue an upload an earlier run started: ask for the stored size
                first and send only the rest.

        Returns:
            The UploadAudioResponse JSON of the final request.

        Raises:
            GatewayError: The gateway refused (only a 409 offset mismatch is retried).
            aiohttp.ClientError: The connection failed `attempts` times.
        """
        size = (await asyncio.to_thread(path.stat)).st_size
        url = f"{self._base}/v1/meetings/{meeting_id}/audio"
        offset = 0
        if resume:
            offset, complete = await self.stored_offset(meeting_id)
            on_progress(offset)
            if complete:
                return {"storedSize": str(offset), "complete": True}
            if offset > size:
                raise ValueError(
                    f"the server holds {offset} bytes, more than {path.name} has ({size})"
                )
        for attempt in range(attempts):
            headers = {
                **self._auth,
                "Content-Type": content_type,
                "Content-Length": str(size - offset),
            }
            if offset:
                headers["Upload-Offset"] = str(offset)
                headers["Upload-Length"] = str(size)
            try:
                async with self._session.request(
                    "PATCH" if offset else "PUT",
                    url,
                    data=_file_blocks(path, offset, on_progress),
                    headers=headers,
                ) as response:
                    await _raise_for_error(response)
                    body: dict[str, Any] = await response.json()
                    return body
            except GatewayError as error:
                # 409: the stored size moved (e.g. a cancelled stream's last chunk landed
                # after our HEAD); ask again. Any other refusal would not change.
                if error.status != 409 or attempt == attempts - 1:
                    raise
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError):
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(backoff_delay(attempt + 1, initial=0.5, maximum=8.0))
            offset, complete = await self.stored_offset(meeting_id)
            on_progress(offset)
            if complete:
                return {"storedSize": str(offset), "complete": True}
        raise AssertionError("unreachable")  # pragma: no cover

    async def events(
        self, meeting_id: str, after: int = 0, *, reconnects: int = 5
    ) -> AsyncIterator[SseEvent]:
        """Follows the meeting's events, reconnecting with `Last-Event-ID` when cut off.

        Args:
            meeting_id: The meeting.
            after: Sequence of the last event already seen.
            reconnects: How many consecutive failed connections to tolerate.

        Yields:
            Each event once; the stream ends when the server ends it: after the final
            status (COMPLETED or FAILED) or `deleted`, or at once (204) when the meeting
            had ended before `after`. A `stream_error` that may pass (UNAVAILABLE, ...) is
            not yielded: the stream reconnects as after a dropped connection; any other
            `stream_error` is yielded and ends the stream.

        Raises:
            GatewayError: The gateway refused the stream.
            aiohttp.ClientError: The connection failed too often.
        """
        last, failures = after, 0
        url = f"{self._base}/v1/meetings/{meeting_id}/events"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        while True:
            headers = {**self._auth, "Accept": "text/event-stream"}
            if last:
                headers["Last-Event-ID"] = str(last)
            try:
                async with self._session.get(url, headers=headers, timeout=timeout) as response:
                    await _raise_for_error(response)
                    failures = 0
                    async for event in parse_sse(response.content):
                        if event.id:
                            last = int(event.id)
                        if _resumable(event):
                            raise aiohttp.ClientPayloadError(event.data["error"]["message"])
                        yield event
                        if event.event == "deleted":
                            return
                return
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError):
                failures += 1
                if failures > reconnects:
                    raise
                await asyncio.sleep(backoff_delay(failures, initial=1.0, maximum=8.0))


def _resumable(event: SseEvent) -> bool:
    if event.event != "stream_error":
        return False
    error = event.data.get("error")
    return isinstance(error, dict) and error.get("status") in _RESUMABLE_STREAM_ERRORS


async def _file_blocks(
    path: Path, offset: int, on_progress: Callable[[int], None]
) -> AsyncIterator[bytes]:
    sent = offset
    file = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(file.seek, offset)
        while block := await asyncio.to_thread(file.read, READ_BLOCK_BYTES):
            yield block
            sent += len(block)
            on_progress(sent)
    finally:
        await asyncio.to_thread(file.close)
