"""The live WebSocket's failure paths: each closes with a clear code and reason.

The success path (audio in, transcript out) needs the GPU path: see test_full_path.py.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import bearer, route

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


async def test_live_is_refused_before_the_upgrade_for_strangers_and_bad_parameters(
    http: aiohttp.ClientSession, meeting_id: str, as_user: dict[str, str]
) -> None:
    url = f"/v1/meetings/{meeting_id}/live"
    for headers, params, status in [
        ({}, {}, 401),
        ({}, {"access_token": "forged"}, 401),
        (bearer("mallory"), {}, 404),
        (as_user, {"sample_rate": "fast"}, 400),
        (as_user, {"codec": "opus"}, 400),
    ]:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with http.ws_connect(url, headers=headers, params=params):
                pass
        assert refused.value.status == status, (headers, params)
