"""Scoped API keys: created and revoked by their owner over REST and the CLI, shown once,
stored hashed, checked on every route and RPC, with their last use recorded."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from typing import Any

import aiohttp
import grpc
import pytest
from loguru import logger

from gen.meeting.v1 import api_keys_pb2, meeting_service_pb2, meeting_service_pb2_grpc
from meeting_mesh.cli import main
from meeting_service.server import RunningMeetingService
from tests.support.gateway import RunningGateway, error_of, reason_of, route, wav_bytes
from tests.support.meeting import make_token
from tests.support.secrets import register_secret


async def create_key(
    http: aiohttp.ClientSession, headers: dict[str, str], *scopes: str, name: str = "ci"
) -> tuple[str, dict[str, Any]]:
    """Creates a key; returns the key itself (registered with the leak check) and its JSON."""
    async with http.post(
        "/v1/api-keys", json={"name": name, "scopes": list(scopes)}, headers=headers
    ) as r:
        assert r.status == 201, await r.text()
        body = await r.json()
    return register_secret(body["secret"]), body["apiKey"]


def as_key(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@route("POST", "/v1/api-keys", "success")
@route("GET", "/v1/api-keys", "success")
async def test_a_key_is_shown_once_listed_without_its_secret_and_stored_hashed(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_service: RunningMeetingService
) -> None:
    key, created = await create_key(http, as_user, "meetings:read", "meetings:write")
    assert key.startswith("mm_live_") and len(key) > 40
    assert created["prefix"] == key[:12]
    assert created["scopes"] == ["meetings:read", "meetings:write"]
    assert "lastUseTime" not in created
    async with http.get("/v1/api-keys", headers=as_user) as r:
        assert r.status == 200
        listed = (await r.json())["apiKeys"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert key not in str(listed) and "secret" not in listed[0]
    stored = await meeting_service.services.pool.fetchrow(
        "SELECT * FROM api_keys WHERE id = $1::uuid", created["id"]
    )
    assert stored is not None
    assert bytes(stored["key_hash"]) == hashlib.sha256(key.encode()).digest()
    assert key not in str(dict(stored))


async def test_a_read_only_key_lists_but_cannot_write_or_upload_over_rest(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    key, _ = await create_key(http, as_user, "meetings:read")
    async with http.get("/v1/meetings", headers=as_key(key)) as r:
        assert r.status == 200
        assert [m["id"] for m in (await r.json())["meetings"]] == [meeting_id]
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_key(key)) as r:
        assert r.status == 200
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=wav_bytes(seconds=1.0),
        headers={**as_key(key), "Content-Type": "audio/wav"},
    ) as r:
        assert r.status == 403
        error = await error_of(r)
    assert (error["status"], reason_of(error)) == ("PERMISSION_DENIED", "PERMISSION_DENIED")
    assert error["details"][0]["metadata"] == {"scope": "audio:upload"}
    async with http.post("/v1/meetings", json={}, headers=as_key(key)) as r:
        assert r.status == 403
    async with http.get(f"/v1/meetings/{meeting_id}", headers=as_user) as r:
        meeting = (await r.json())["meeting"]
    assert meeting["status"] == "MEETING_STATUS_AWAITING_AUDIO"  # nothing was stored


async def test_a_read_only_key_lists_but_cannot_upload_over_grpc(
    http: aiohttp.ClientSession,
    as_user: dict[str, str],
    meeting_id: str,
    meeting_service: RunningMeetingService,
) -> None:
    key, _ = await create_key(http, as_user, "meetings:read")
    metadata = (("authorization", f"Bearer {key}"),)
    async with grpc.aio.insecure_channel(meeting_service.address) as channel:
        stub = meeting_service_pb2_grpc.MeetingServiceStub(channel)
        page = await stub.ListMeetings(meeting_service_pb2.ListMeetingsRequest(), metadata=metadata)
        assert [m.id for m in page.meetings] == [meeting_id]

        async def upload() -> Any:
            yield meeting_service_pb2.UploadAudioRequest(
                metadata=meeting_service_pb2.UploadMetadata(
                    meeting_id=meeting_id, content_type="audio/wav"
                )
            )
            yield meeting_service_pb2.UploadAudioRequest(chunk=wav_bytes(seconds=1.0))

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.UploadAudio(upload(), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CreateApiKey(api_keys_pb2.CreateApiKeyRequest(), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_upload_key_uploads_and_a_user_token_has_every_scope(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_id: str
) -> None:
    key, _ = await create_key(http, as_user, "audio:upload")
    audio = wav_bytes(seconds=1.0)
    async with http.put(
        f"/v1/meetings/{meeting_id}/audio",
        data=audio,
        headers={**as_key(key), "Content-Type": "audio/wav"},
    ) as r:
        assert r.status == 200, await r.text()
    async with http.get("/v1/meetings", headers=as_key(key)) as r:
        assert r.status == 403  # uploading is not reading
    async with http.get("/v1/meetings", headers=as_user) as r:
        assert r.status == 200


@route("DELETE", "/v1/api-keys/{api_key_id}", "success")
async def test_a_revoked_key_is_refused_from_its_next_call(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    key, created = await create_key(http, as_user, "meetings:read")
    async with http.get("/v1/meetings", headers=as_key(key)) as r:
        assert r.status == 200
    async with http.delete(f"/v1/api-keys/{created['id']}", headers=as_user) as r:
        assert r.status == 204
    async with http.get("/v1/meetings", headers=as_key(key)) as r:
        assert r.status == 401
        assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
        assert (await error_of(r))["message"] == "unknown or revoked API key"
    async with http.get("/v1/api-keys", headers=as_user) as r:
        assert (await r.json()).get("apiKeys", []) == []


@route("DELETE", "/v1/api-keys/{api_key_id}", "failure")
async def test_a_key_of_someone_else_cannot_be_revoked(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    key, created = await create_key(http, as_user, "meetings:read")
    other = {"Authorization": f"Bearer {make_token('someone-else')}"}
    async with http.delete(f"/v1/api-keys/{created['id']}", headers=other) as r:
        assert r.status == 404
        assert reason_of(await error_of(r)) == "API_KEY_NOT_FOUND"
    async with http.get("/v1/meetings", headers=as_key(key)) as r:
        assert r.status == 200  # still valid


@route("POST", "/v1/api-keys", "failure")
async def test_unknown_scopes_and_scopes_beyond_the_creators_are_refused(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    async with http.post("/v1/api-keys", json={"scopes": ["meetings:admin"]}, headers=as_user) as r:
        assert r.status == 400
        error = await error_of(r)
    assert error["details"][0]["metadata"] == {"field": "api_key.scopes"}
    async with http.post("/v1/api-keys", json={"scopes": []}, headers=as_user) as r:
        assert r.status == 400
    manager, _ = await create_key(http, as_user, "keys:manage", "meetings:read")
    await create_key(http, as_key(manager), "meetings:read")  # within its own scopes
    async with http.post(
        "/v1/api-keys", json={"scopes": ["audio:upload"]}, headers=as_key(manager)
    ) as r:
        assert r.status == 400
        assert "lacks" in (await error_of(r))["message"]


@route("GET", "/v1/api-keys", "failure")
async def test_listing_keys_needs_keys_manage(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    key, _ = await create_key(http, as_user, "meetings:read")
    async with http.get("/v1/api-keys", headers=as_key(key)) as r:
        assert r.status == 403
        assert (await error_of(r))["details"][0]["metadata"] == {"scope": "keys:manage"}


async def test_the_last_use_is_recorded_at_most_once_a_minute(
    http: aiohttp.ClientSession, as_user: dict[str, str], meeting_service: RunningMeetingService
) -> None:
    key, created = await create_key(http, as_user, "meetings:read")
    for _ in range(3):
        async with http.get("/v1/meetings", headers=as_key(key)) as r:
            assert r.status == 200
    async with http.get("/v1/api-keys", headers=as_user) as r:
        listed = (await r.json())["apiKeys"]
    first_use = listed[0]["lastUseTime"]
    assert first_use >= created["createTime"]
    # The calls after the first within the minute left the recorded time alone.
    stored = await meeting_service.services.pool.fetchval(
        "SELECT last_use_time FROM api_keys WHERE id = $1::uuid", created["id"]
    )
    assert stored.isoformat().replace("+00:00", "Z")[:19] == first_use[:19]


async def test_keys_are_managed_with_the_cli(
    gateway: RunningGateway,
    user: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = make_token(user)
    monkeypatch.setenv("COLUMNS", "250")  # the table's width, as in a wide terminal

    async def cli(*args: str) -> tuple[int, str, str]:
        # In a thread: the command runs its own event loop, as from a terminal.
        argv = ["keys", "--url", gateway.url, "--token", token, *args]
        code = await asyncio.to_thread(main, argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = await cli("create", "--scope", "meetings:read", "--name", "reports")
    assert code == 0, err
    key = register_secret(out.strip())
    assert key.startswith("mm_live_")
    assert "shown only this once" in err
    async with aiohttp.ClientSession(gateway.url) as http:
        async with http.get("/v1/meetings", headers=as_key(key)) as r:
            assert r.status == 200
        code, out, err = await cli("list")
        assert code == 0, err
        assert "reports" in out and key[:12] in out and key not in out
        async with http.get("/v1/api-keys", headers={"Authorization": f"Bearer {token}"}) as r:
            (listed,) = (await r.json())["apiKeys"]
        assert listed["id"] in out
        code, _, err = await cli("revoke", listed["id"])
        assert code == 0, err
        async with http.get("/v1/meetings", headers=as_key(key)) as r:
            assert r.status == 401


async def test_the_access_line_names_the_keys_id_and_owner_never_the_key(
    http: aiohttp.ClientSession, as_user: dict[str, str], user: str
) -> None:
    key, created = await create_key(http, as_user, "meetings:read")
    sink = io.StringIO()
    handler = logger.add(sink, level="INFO", serialize=True)
    try:
        async with http.get("/v1/meetings", headers=as_key(key)) as r:
            assert r.status == 200
    finally:
        logger.remove(handler)
    records = [json.loads(line)["record"] for line in sink.getvalue().splitlines()]
    (access,) = [
        r["extra"]
        for r in records
        if r["extra"].get("method") == "/meeting.v1.MeetingService/ListMeetings"
    ]
    assert (access["user"], access["api_key_id"]) == (user, created["id"])
    assert key[12:] not in sink.getvalue()
