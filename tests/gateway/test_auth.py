"""The auth matrix: every protected route refuses a missing or bad token with 401 and
WWW-Authenticate; public routes need none; query tokens only where browsers need them;
tokens never reach a log line."""

from __future__ import annotations

import io
import uuid

import aiohttp
import pytest
from loguru import logger

from gateway.app import create_app
from gateway.auth import PUBLIC_ROUTES
from gateway.openai_api import ROUTES as OPENAI_ROUTES
from tests.support.gateway import (
    RunningGateway,
    bearer,
    error_of,
    gateway_settings,
    reason_of,
    route,
)
from tests.support.meeting import make_token

_ID = str(uuid.UUID(int=1))
PROTECTED = [
    ("POST", "/v1/meetings"),
    ("GET", "/v1/meetings"),
    ("GET", f"/v1/meetings/{_ID}"),
    ("PATCH", f"/v1/meetings/{_ID}"),
    ("DELETE", f"/v1/meetings/{_ID}"),
    ("PUT", f"/v1/meetings/{_ID}/audio"),
    ("HEAD", f"/v1/meetings/{_ID}/audio"),
    ("PATCH", f"/v1/meetings/{_ID}/audio"),
    ("GET", f"/v1/meetings/{_ID}/transcript"),
    ("GET", f"/v1/meetings/{_ID}/summary"),
    ("GET", f"/v1/meetings/{_ID}/events"),
    ("GET", f"/v1/meetings/{_ID}/live"),
    ("POST", "/v1/api-keys"),
    ("GET", "/v1/api-keys"),
    ("DELETE", f"/v1/api-keys/{_ID}"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("DELETE", f"/v1/webhooks/{_ID}"),
    ("GET", f"/v1/webhooks/{_ID}/deliveries"),
    ("POST", f"/v1/webhooks/{_ID}/deliveries/{_ID}/redeliver"),
    ("GET", "/v1/events"),
    ("PATCH", f"/v1/meetings/{_ID}/speakers/SPEAKER_1"),
    ("POST", "/v1/voiceProfiles"),
    ("GET", "/v1/voiceProfiles"),
    ("POST", f"/v1/voiceProfiles/{_ID}/samples"),
    ("PATCH", f"/v1/voiceProfiles/{_ID}"),
    ("DELETE", f"/v1/voiceProfiles/{_ID}"),
    ("POST", "/v1/voiceProfiles:fromAudio?name=Maria"),
    ("POST", f"/v1/voiceProfiles/{_ID}/audio"),
    ("GET", "/v1/search?q=anything"),
]
BAD_CREDENTIALS = {
    "missing": {},
    "not bearer": {"Authorization": f"Basic {make_token('alice')}"},
    "empty bearer": {"Authorization": "Bearer "},
    "garbage": {"Authorization": "Bearer not.a.jwt"},
    "wrong secret": {"Authorization": f"Bearer {make_token('alice', secret='x' * 48)}"},
    "expired": {"Authorization": f"Bearer {make_token('alice', ttl_s=-3600)}"},
    "unknown API key": {"Authorization": f"Bearer mm_live_{'x' * 43}"},
}


def _template(path: str) -> str:
    path = path.split("?")[0].replace("/speakers/SPEAKER_1", "/speakers/{speaker}")
    if path.startswith("/v1/voiceProfiles/"):
        return path.replace(_ID, "{voice_profile_id}")
    if path.startswith("/v1/webhooks/"):
        return path.replace(_ID, "{webhook_id}", 1).replace(_ID, "{delivery_id}")
    return path.replace(_ID, "{api_key_id}" if "api-keys" in path else "{meeting_id}")


def test_the_matrix_names_every_protected_route() -> None:
    app = create_app(gateway_settings("127.0.0.1:1", "s" * 32))
    served = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None
        and r.name not in PUBLIC_ROUTES
        # The OpenAI-compatible routes answer in OpenAI's error shape; test_openai.py
        # checks that they need a token.
        and r.name not in OPENAI_ROUTES
    }
    named = {(m, _template(p)) for m, p in PROTECTED}
    assert served == named


@pytest.mark.parametrize("case", list(BAD_CREDENTIALS))
async def test_every_protected_route_answers_401_with_a_challenge(
    http: aiohttp.ClientSession, case: str
) -> None:
    for method, path in PROTECTED:
        # An API key is checked by meeting_service, so what the gateway checks on its own
        # (an upload's media type and offset) must pass for the request to get that far.
        headers = {**BAD_CREDENTIALS[case], "Content-Type": "audio/wav", "Upload-Offset": "0"}
        async with http.request(method, path, headers=headers) as r:
            assert r.status == 401, (case, method, path)
            challenge = r.headers["WWW-Authenticate"]
            assert challenge.startswith('Bearer realm="meeting-mesh"')
            if case != "missing":
                assert 'error="invalid_token"' in challenge
            if method != "HEAD":
                error = await error_of(r)
                assert (error["status"], reason_of(error)) == (
                    "UNAUTHENTICATED",
                    "UNAUTHENTICATED",
                )


@route("GET", "/healthz", "success")
@route("GET", "/readyz", "success")
@route("GET", "/openapi.json", "success")
@route("GET", "/metrics", "success")
async def test_public_routes_need_no_token(http: aiohttp.ClientSession) -> None:
    for path, kind in [
        ("/healthz", "application/json"),
        ("/readyz", "application/json"),
        ("/openapi.json", "application/json"),
        ("/metrics", "text/plain"),
    ]:
        async with http.get(path) as r:
            assert r.status == 200, path
            assert r.content_type == kind
    async with http.get("/readyz") as r:
        assert (await r.json())["meeting_service"] == "SERVING"
    async with http.get("/metrics") as r:
        assert "mesh_http_requests" in await r.text()


async def test_query_tokens_work_on_events_and_live_only(
    http: aiohttp.ClientSession, as_user: dict[str, str], user: str, meeting_id: str
) -> None:
    token = {"access_token": make_token(user)}
    async with http.get(f"/v1/meetings/{meeting_id}/events", params=token) as r:
        assert r.status == 200
    async with http.get(f"/v1/meetings/{meeting_id}", params=token) as r:
        assert r.status == 401
    # A header wins over the query: a forged header is not rescued by a good query token.
    async with http.get(
        f"/v1/meetings/{meeting_id}/events",
        params=token,
        headers={"Authorization": "Bearer forged"},
    ) as r:
        assert r.status == 401
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        assert r.status == 200


async def test_tokens_never_appear_in_logs(
    gateway: RunningGateway, user: str, meeting_id: str
) -> None:
    token = make_token(user)
    sink = io.StringIO()
    handler = logger.add(sink, level="DEBUG", serialize=True)
    try:
        async with aiohttp.ClientSession(gateway.url) as http:
            async with http.get(
                f"/v1/meetings/{meeting_id}/events", params={"access_token": token}
            ) as r:
                assert r.status == 200
            async with http.get("/v1/meetings", headers={"Authorization": f"Bearer {token}"}):
                pass
            async with http.get("/v1/meetings", params={"access_token": token}) as r:
                assert r.status == 401
    finally:
        logger.remove(handler)
    logged = sink.getvalue()
    assert "/v1/meetings" in logged  # the requests were logged...
    assert token not in logged  # ...without the token
    assert token.split(".")[2] not in logged


async def test_meetings_are_scoped_to_the_tokens_subject(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    async with http.get("/v1/meetings", headers=bearer("someone-else")) as r:
        ids = [m["id"] for m in (await r.json())["meetings"]]
    assert meeting_id not in ids
    async with http.get("/v1/meetings", headers=as_user) as r:
        assert [m["id"] for m in (await r.json())["meetings"]] == [meeting_id]


async def test_the_access_line_names_the_verified_caller(
    http: aiohttp.ClientSession, user: str
) -> None:
    lines: list[dict[str, object]] = []
    sink = logger.add(lambda m: lines.append(dict(m.record["extra"])), level="INFO")
    try:
        async with http.get("/v1/meetings", headers=bearer(user)) as ok:
            assert ok.status == 200
        async with http.get("/v1/meetings", headers=bearer(user, ttl_s=-3600)) as refused:
            assert refused.status == 401
    finally:
        logger.remove(sink)
    access = [
        (line["status"], line["user"]) for line in lines if line.get("route") == "/v1/meetings"
    ]
    assert access == [(200, user), (401, "")]
