"""The live WebSocket's failure paths: each closes with a clear code and reason.

The success path (audio in, transcript out) needs the GPU path: see test_full_path.py.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import aiohttp

from tests.support.gateway import bearer, route
from tests.support.log_capture import captured_logs
from tests.support.meeting import make_token

TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=30.0, ws_close=30.0)
PCM_FRAME = bytes(3200)  # 100 ms of 16 kHz 16-bit silence


async def session_end(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[list[dict[str, Any]], int, str]:
    """Reads until the server closes; returns the text frames, close code and reason."""
    texts: list[dict[str, Any]] = []
    while True:
        message = await ws.receive()
        if message.type == aiohttp.WSMsgType.TEXT:
            texts.append(json.loads(message.data))
        elif message.type == aiohttp.WSMsgType.CLOSE:
            return texts, int(message.data), str(message.extra or "")
        else:
            assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING), message
            return texts, int(ws.close_code or 0), ""


@route("GET", "/v1/meetings/{meeting_id}/live", "failure")
async def test_an_unsupported_sample_rate_closes_with_4400_and_the_reason(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.ws_connect(
        f"/v1/meetings/{meeting_id}/live",
        params={"sample_rate": "8000"},
        headers=as_user,
        timeout=TIMEOUT,
    ) as ws:
        await ws.send_bytes(PCM_FRAME)
        await ws.send_str(json.dumps({"type": "end"}))
        texts, code, reason = await session_end(ws)
    assert code == 4400, texts
    error = texts[-1]["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == "UNSUPPORTED_AUDIO"
    assert "16000" in str(error["message"])
    assert reason.startswith("INVALID_ARGUMENT: ")


async def test_without_a_gpu_service_the_session_closes_with_4503(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    # This module's meeting_service has no GPU path configured.
    async with http.ws_connect(
        f"/v1/meetings/{meeting_id}/live", headers=as_user, timeout=TIMEOUT
    ) as ws:
        await ws.send_bytes(PCM_FRAME)
        await ws.send_str(json.dumps({"type": "end"}))
        texts, code, reason = await session_end(ws)
    assert code == 4503, texts
    error = texts[-1]["error"]
    assert (error["status"], error["details"][0]["reason"]) == (
        "UNAVAILABLE",
        "BACKEND_UNAVAILABLE",
    )
    assert reason.startswith("UNAVAILABLE: ")


async def test_a_text_frame_that_is_not_the_end_marker_closes_with_1003(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.ws_connect(
        f"/v1/meetings/{meeting_id}/live", headers=as_user, timeout=TIMEOUT
    ) as ws:
        await ws.send_str("hello")
        _, code, reason = await session_end(ws)
    assert code == aiohttp.WSCloseCode.UNSUPPORTED_DATA
    assert "binary frames" in reason


async def test_a_text_frame_nested_beyond_the_json_depth_limit_closes_with_1003(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    with captured_logs() as logs:
        async with http.ws_connect(
            f"/v1/meetings/{meeting_id}/live", headers=as_user, timeout=TIMEOUT
        ) as ws:
            await ws.send_str("[" * 100_000 + "]" * 100_000)
            _, code, _ = await session_end(ws)
    assert code == aiohttp.WSCloseCode.UNSUPPORTED_DATA
    logs.assert_clean()


async def test_refusals_come_after_the_upgrade_as_close_codes_with_reasons(
    http: aiohttp.ClientSession, meeting_id: str, as_user: dict[str, str]
) -> None:
    # A browser sees no HTTP status of a refused upgrade (only 1006): every refusal is
    # a close code and a reason, after a last frame with the error body.
    url = f"/v1/meetings/{meeting_id}/live"
    unknown = f"/v1/meetings/{uuid.UUID(int=7)}/live"
    for path, headers, params, code, reason in [
        (url, {"Authorization": "Bearer forged"}, {}, 4401, "UNAUTHENTICATED"),
        (url, {}, {"access_token": "forged"}, 4401, "UNAUTHENTICATED"),
        (url, bearer("mallory"), {}, 4404, "MEETING_NOT_FOUND"),
        (unknown, as_user, {}, 4404, "MEETING_NOT_FOUND"),
        (url, as_user, {"sample_rate": "fast"}, 4400, "INVALID_FIELD"),
        (url, as_user, {"codec": "opus"}, 4400, "INVALID_FIELD"),
    ]:
        async with http.ws_connect(path, headers=headers, params=params, timeout=TIMEOUT) as ws:
            texts, closed_with, why = await session_end(ws)
        assert closed_with == code, (headers, params, texts)
        assert texts[-1]["error"]["details"][0]["reason"] == reason
        assert why.startswith(texts[-1]["error"]["status"] + ": ")


async def test_a_browser_authenticates_with_its_first_frame(
    http: aiohttp.ClientSession, meeting_id: str, user: str
) -> None:
    url = f"/v1/meetings/{meeting_id}/live"
    async with http.ws_connect(url, timeout=TIMEOUT) as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": make_token("mallory")}))
        texts, code, _ = await session_end(ws)
    assert code == 4404, texts  # authenticated as mallory, who does not own the meeting
    async with http.ws_connect(url, timeout=TIMEOUT) as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": "forged"}))
        _, code, reason = await session_end(ws)
    assert (code, reason.split(":")[0]) == (4401, "UNAUTHENTICATED")
    async with http.ws_connect(url, timeout=TIMEOUT) as ws:
        await ws.send_bytes(PCM_FRAME)  # audio before any token
        _, code, _ = await session_end(ws)
    assert code == 4401
    async with http.ws_connect(url, timeout=TIMEOUT) as ws:
        await ws.send_str(json.dumps({"type": "auth", "token": make_token(user)}))
        await ws.send_bytes(PCM_FRAME)
        await ws.send_str(json.dumps({"type": "end"}))
        texts, code, _ = await session_end(ws)
    # The owner got through to the service, which has no GPU path in this module.
    assert code == 4503, texts


async def test_a_plain_get_of_the_live_route_is_still_checked_by_http(
    http: aiohttp.ClientSession, meeting_id: str
) -> None:
    async with http.get(f"/v1/meetings/{meeting_id}/live") as r:
        assert r.status == 401
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
