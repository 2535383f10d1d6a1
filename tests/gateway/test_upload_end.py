"""An upload of unknown length whose client goes away completes nothing and loses nothing."""

from __future__ import annotations

import aiohttp

from tests.support.gateway import (
    RunningGateway,
    resume_upload,
    start_raw_put,
    wait_until,
    wav_bytes,
)


async def _offset(http: aiohttp.ClientSession, meeting_id: str, headers: dict[str, str]) -> int:
    async with http.head(f"/v1/meetings/{meeting_id}/audio", headers=headers) as r:
        assert r.status == 200
        # Whatever the drop left, the recording is not complete.
        assert r.headers["Upload-Complete"] == "false"
        return int(r.headers["Upload-Offset"])


async def test_a_chunked_upload_dropped_midway_completes_nothing_and_resumes(
    gateway: RunningGateway, as_user: dict[str, str], meeting_id: str
) -> None:
    audio = wav_bytes(seconds=30.0)
    cut = len(audio) // 2
    # No Content-Length, no Upload-Length: only the end of the body ends the recording.
    sent = audio[:cut]
    framed = f"{len(sent):x}\r\n".encode() + sent + b"\r\n"
    writer = await start_raw_put(gateway, meeting_id, as_user, "Transfer-Encoding: chunked", framed)
    async with aiohttp.ClientSession(gateway.url) as http:

        async def some_stored() -> bool:
            return await _offset(http, meeting_id, as_user) > 0

        await wait_until(some_stored)
        # The connection drops on a chunk boundary of the transfer encoding.
        writer.close()
        await writer.wait_closed()

        async def offset_now() -> int:
            offset = await _offset(http, meeting_id, as_user)
            assert 0 < offset <= cut
            async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
                meeting = await r.json()
            assert meeting["meeting"]["status"] == "MEETING_STATUS_UPLOADING", meeting
            return offset

        body = await resume_upload(http, meeting_id, as_user, audio, offset_now)
        assert body["complete"] is True
        assert body["duration"] == "30s"
