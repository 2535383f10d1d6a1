"""Hostile HTTP against the real gateway: every request is answered 4xx, never 5xx, and no
log line shows the caller's token.

Requests aiohttp's client refuses to send (a control character in a header, a bad byte in
the query) go over a raw socket.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import RunningGateway, error_of, reason_of, route
from tests.support.leak_check import LogCapture
from tests.support.meeting import make_token
from tests.support.secrets import leaks_in

WITHIN = 10.0


@pytest.fixture
def log_lines() -> Iterator[LogCapture]:
    """Every line logged during the test (Loguru and the standard library)."""
    capture = LogCapture()
    capture.install()
    try:
        yield capture
    finally:
        capture.uninstall()


async def _raw_exchange(gateway: RunningGateway, request: bytes) -> tuple[int, bytes]:
    """Sends bytes as they are; returns the answer's status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(WITHIN):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next(
                int(value)
                for name, _, value in (line.partition(":") for line in lines[1:])
                if name.strip().lower() == "content-length"
            )
            body = await reader.readexactly(length)
    finally:
        writer.close()
    return int(lines[0].split()[1]), body


def _assert_logged_without(capture: LogCapture, what: str, token: str) -> None:
    text = capture.take()
    assert what in text, text  # the rejection was logged, so the next line proves something
    assert token not in text and token.rsplit(".", 1)[1] not in text
    assert leaks_in(text) == []


async def test_a_control_character_in_the_authorization_header_is_400_and_never_logged(
    gateway: RunningGateway, user: str, log_lines: LogCapture
) -> None:
    token = make_token(user)
    request = (
        f"GET /v1/meetings HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\x01\r\n\r\n"
    ).encode()
    status, _ = await _raw_exchange(gateway, request)
    assert status == 400
    _assert_logged_without(log_lines, "Invalid header value char", token)


async def test_a_bad_byte_in_a_query_holding_the_token_is_400_and_never_logged(
    gateway: RunningGateway, user: str, log_lines: LogCapture
) -> None:
    token = make_token(user)
    request = (
        f"GET /v1/meetings/x/events?access_token={token}\x7f HTTP/1.1\r\nHost: gateway\r\n\r\n"
    ).encode()
    status, _ = await _raw_exchange(gateway, request)
    assert status == 400
    _assert_logged_without(log_lines, "Invalid char in url query", token)


async def _assert_invalid_body(
    http: aiohttp.ClientSession, headers: dict[str, str], body: bytes, message: str
) -> None:
    headers = {**headers, "Content-Type": "application/json"}
    async with http.post("/v1/meetings", data=body, headers=headers) as r:
        assert r.status == 400, await r.text()
        error = await error_of(r)
        assert reason_of(error) == "INVALID_FIELD"
        assert error["details"][0]["metadata"]["field"] == "body"
        assert message in error["message"]


@route("POST", "/v1/meetings", "failure")
async def test_json_nested_a_thousand_deep_is_400(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    for depth in (33, 1000, 100_000):
        deep = b'{"title": ' + b"[" * depth + b"]" * depth + b"}"
        await _assert_invalid_body(http, as_user, deep, "nests deeper than")
    unclosed = b"[" * 100_000
    await _assert_invalid_body(http, as_user, unclosed, "nests deeper than")


@route("POST", "/v1/meetings", "failure")
async def test_numbers_of_thousands_of_digits_are_400(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    for number in (b"9" * 5001, b"1." + b"5" * 5001, b"-" + b"1" * 100):
        body = b'{"expectedSpeakers": ' + number + b"}"
        await _assert_invalid_body(http, as_user, body, "number longer than")


@route("GET", "/v1/meetings", "failure")
async def test_a_query_number_of_thousands_of_digits_is_400(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with http.get("/v1/meetings", params={"pageSize": "9" * 5001}, headers=as_user) as r:
        assert r.status == 400, await r.text()
        assert reason_of(await error_of(r)) == "INVALID_FIELD"


@route("POST", "/v1/meetings", "failure")
async def test_a_body_its_content_encoding_does_not_decode_is_400(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    body = json.dumps({"title": "standup"}).encode()
    for coding in ("gzip", "deflate", "compress", "gzip, gzip", "br", "zstd"):
        headers = {**as_user, "Content-Encoding": coding, "Content-Type": "application/json"}
        async with http.post("/v1/meetings", data=body, headers=headers) as r:
            assert r.status == 400, (coding, await r.text())
            # Without the brotli or zstandard extras, aiohttp's parser refuses those codings
            # itself, in plain text, before the application sees the request.
            if coding not in ("br", "zstd"):
                assert reason_of(await error_of(r)) == "INVALID_FIELD"


@route("POST", "/v1/meetings", "success")
async def test_a_gzip_body_is_decoded(http: aiohttp.ClientSession, as_user: dict[str, str]) -> None:
    body = gzip.compress(json.dumps({"title": "zipped"}).encode())
    headers = {**as_user, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    async with http.post("/v1/meetings", data=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        meeting: dict[str, Any] = (await r.json())["meeting"]
        assert meeting["title"] == "zipped"


@route("POST", "/v1/meetings", "failure")
async def test_a_json_body_declared_over_the_limit_is_413_before_it_is_sent(
    gateway: RunningGateway, user: str
) -> None:
    # Only the headers go out: the answer must not wait for ten gigabytes.
    request = (
        "POST /v1/meetings HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {make_token(user)}\r\nContent-Length: {10 * 1024**3}\r\n\r\n"
    ).encode()
    status, body = await _raw_exchange(gateway, request)
    assert status == 413
    assert json.loads(body)["error"]["status"] == "RESOURCE_EXHAUSTED"
