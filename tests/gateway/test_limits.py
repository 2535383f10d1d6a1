"""The limits the served OpenAPI document states are the ones meeting_service enforces.

Both come from the contract's `(mesh.v1.rules)`: a value at a documented limit is accepted
through the gateway, one past it is refused with 400 INVALID_FIELD naming the field.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp

from tests.support.gateway import error_of, reason_of, route


async def _document(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get("/openapi.json") as r:
        assert r.status == 200
        document: dict[str, Any] = await r.json()
        return document


async def _refused_field(response: aiohttp.ClientResponse) -> str | None:
    """None for a success; the field named by a 400 INVALID_FIELD otherwise."""
    if response.status < 300:
        return None
    assert response.status == 400, await response.text()
    error = await error_of(response)
    assert reason_of(error) == "INVALID_FIELD"
    field: str = error["details"][0]["metadata"]["field"]
    return field


@route("POST", "/v1/meetings", "failure")
async def test_meeting_fields_are_accepted_up_to_the_documented_limits_and_refused_past_them(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    meeting = (await _document(http))["components"]["schemas"]["Meeting"]["properties"]
    longest = meeting["title"]["maxLength"]
    fewest = meeting["expectedSpeakers"]["minimum"]
    most = meeting["expectedSpeakers"]["maximum"]
    language = re.compile(meeting["language"]["pattern"])
    cases: list[tuple[dict[str, Any], str | None]] = [
        # Characters, not bytes, on both sides.
        ({"title": "é" * longest}, None),
        ({"title": "x" * (longest + 1)}, "title"),
        ({"expectedSpeakers": fewest}, None),
        ({"expectedSpeakers": most}, None),
        ({"expectedSpeakers": most + 1}, "expected_speakers"),
        ({"expectedSpeakers": fewest - 1}, "expected_speakers"),
    ]
    for code in ("", "en", "pt-BR", "zh-Hant-TW", "e", "english", "not a language", "en_US"):
        cases.append(({"language": code}, None if language.search(code) else "language"))
    for body, refused in cases:
        async with http.post("/v1/meetings", json=body, headers=as_user) as r:
            assert await _refused_field(r) == refused, body


@route("GET", "/v1/meetings", "failure")
async def test_page_size_is_accepted_up_to_the_documented_limit_and_refused_past_it(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    operation = (await _document(http))["paths"]["/v1/meetings"]["get"]
    schema = next(p["schema"] for p in operation["parameters"] if p["name"] == "pageSize")
    for size, refused in [
        (schema["minimum"], None),
        (schema["maximum"], None),
        (schema["maximum"] + 1, "page_size"),
        (schema["minimum"] - 1, "page_size"),
    ]:
        async with http.get("/v1/meetings", params={"pageSize": str(size)}, headers=as_user) as r:
            assert await _refused_field(r) == refused, size
