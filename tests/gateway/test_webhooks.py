"""The webhook routes over REST, and `meeting-mesh webhooks` against the real gateway.

Delivery itself is tested in tests/meeting_service/test_webhooks.py; the module's
meeting_service delivers nothing, so deliveries stay where the tests put them.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import aiohttp

from tests.support.gateway import RunningGateway, bearer, error_of, reason_of, route
from tests.support.meeting import make_token

PUBLIC_URL = "http://93.184.215.14/hooks"


async def _create(
    http: aiohttp.ClientSession, headers: dict[str, str], *types: str
) -> dict[str, Any]:
    body = {"url": PUBLIC_URL, "eventTypes": list(types or ["meeting.deleted"])}
    async with http.post("/v1/webhooks", json=body, headers=headers) as r:
        assert r.status == 201, await r.text()
        created: dict[str, Any] = await r.json()
        return created


async def _pending_delivery(
    http: aiohttp.ClientSession, headers: dict[str, str], webhook_id: str
) -> dict[str, Any]:
    """Deletes a new meeting, which queues a `meeting.deleted` delivery, and returns it."""
    async with http.post("/v1/meetings", json={"title": "gone"}, headers=headers) as r:
        meeting_id = (await r.json())["meeting"]["id"]
    async with http.delete(f"/v1/meetings/{meeting_id}", headers=headers) as r:
        assert r.status == 204
    async with http.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=headers) as r:
        assert r.status == 200
        [delivery] = (await r.json())["deliveries"]
    assert delivery["meetingId"] == meeting_id
    return dict(delivery)


@route("POST", "/v1/webhooks", "success")
@route("GET", "/v1/webhooks", "success")
async def test_create_returns_the_secret_once_and_list_never(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    created = await _create(http, as_user, "meeting.completed", "transcript.ready")
    assert created["secret"].startswith("whsec_")
    webhook = created["webhook"]
    assert webhook["eventTypes"] == ["meeting.completed", "transcript.ready"]
    assert webhook["disabled"] is False
    async with http.get("/v1/webhooks", headers=as_user) as r:
        assert r.status == 200
        listed = await r.json()
    assert listed["webhooks"] == [webhook]
    assert created["secret"] not in json.dumps(listed)


@route("POST", "/v1/webhooks", "failure")
async def test_create_refuses_a_private_address_and_an_unknown_event(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    for body, field in [
        ({"url": "http://127.0.0.1:8080/x", "eventTypes": ["meeting.completed"]}, "webhook.url"),
        ({"url": PUBLIC_URL, "eventTypes": ["meeting.started"]}, "webhook.event_types"),
    ]:
        async with http.post("/v1/webhooks", json=body, headers=as_user) as r:
            assert r.status == 400
            error = await error_of(r)
        assert reason_of(error) == "INVALID_FIELD"
        assert error["details"][0]["metadata"]["field"] == field


@route("GET", "/v1/webhooks", "failure")
async def test_list_needs_a_token(http: aiohttp.ClientSession) -> None:
    async with http.get("/v1/webhooks") as r:
        assert r.status == 401


@route("DELETE", "/v1/webhooks/{webhook_id}", "success")
@route("DELETE", "/v1/webhooks/{webhook_id}", "failure")
async def test_delete_is_the_owners_alone(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    webhook_id = (await _create(http, as_user))["webhook"]["id"]
    async with http.delete(f"/v1/webhooks/{webhook_id}", headers=bearer("someone-else")) as r:
        assert r.status == 404
        assert reason_of(await error_of(r)) == "WEBHOOK_NOT_FOUND"
    async with http.delete(f"/v1/webhooks/{webhook_id}", headers=as_user) as r:
        assert r.status == 204
    async with http.delete(f"/v1/webhooks/{webhook_id}", headers=as_user) as r:
        assert r.status == 404


@route("GET", "/v1/webhooks/{webhook_id}/deliveries", "success")
@route("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "success")
async def test_deliveries_are_listed_and_redeliverable(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    webhook_id = (await _create(http, as_user))["webhook"]["id"]
    delivery = await _pending_delivery(http, as_user, webhook_id)
    assert delivery["eventType"] == "meeting.deleted"
    assert delivery["status"] == "WEBHOOK_DELIVERY_STATUS_PENDING"
    assert delivery["eventId"].startswith("msg_")
    path = f"/v1/webhooks/{webhook_id}/deliveries/{delivery['id']}/redeliver"
    async with http.post(path, headers=as_user) as r:
        assert r.status == 201, await r.text()
        again = (await r.json())["delivery"]
    assert (again["id"], again["eventId"]) == (delivery["id"], delivery["eventId"])


@route("GET", "/v1/webhooks/{webhook_id}/deliveries", "failure")
@route("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver", "failure")
async def test_deliveries_of_another_users_endpoint_are_not_found(
    http: aiohttp.ClientSession, as_user: dict[str, str]
) -> None:
    webhook_id = (await _create(http, as_user))["webhook"]["id"]
    delivery = await _pending_delivery(http, as_user, webhook_id)
    other = bearer("someone-else")
    async with http.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=other) as r:
        assert r.status == 404
    path = f"/v1/webhooks/{webhook_id}/deliveries/{delivery['id']}/redeliver"
    async with http.post(path, headers=other) as r:
        assert r.status == 404
        assert reason_of(await error_of(r)) == "WEBHOOK_NOT_FOUND"
    async with http.get("/v1/webhooks/not-a-uuid/deliveries", headers=as_user) as r:
        assert r.status == 400


async def _cli(gateway: RunningGateway, user: str, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meeting_mesh.cli",
        "webhooks",
        "--url",
        gateway.url,
        "--token",
        make_token(user),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},  # room for the table's columns
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_the_cli_adds_lists_shows_deliveries_and_removes(
    gateway: RunningGateway, http: aiohttp.ClientSession, user: str, as_user: dict[str, str]
) -> None:
    code, out = await _cli(gateway, user, "--json", "add", PUBLIC_URL, "--event", "meeting.deleted")
    assert code == 0, out
    added = json.loads(out)
    webhook_id = added["webhook"]["id"]
    assert added["secret"].startswith("whsec_")
    code, out = await _cli(gateway, user, "--json", "list")
    assert [w["id"] for w in json.loads(out)["webhooks"]] == [webhook_id]
    delivery = await _pending_delivery(http, as_user, webhook_id)
    code, out = await _cli(gateway, user, "--json", "deliveries", webhook_id)
    assert [d["id"] for d in json.loads(out)["deliveries"]] == [delivery["id"]]
    code, out = await _cli(gateway, user, "deliveries", webhook_id)
    assert code == 0 and "meeting.deleted" in out and "pending" in out
    code, out = await _cli(gateway, user, "--json", "redeliver", webhook_id, delivery["id"])
    assert json.loads(out)["delivery"]["status"] == "WEBHOOK_DELIVERY_STATUS_PENDING"
    code, out = await _cli(gateway, user, "remove", webhook_id)
    assert code == 0, out
    code, out = await _cli(gateway, user, "remove", webhook_id)
    assert code == 1 and "404" in out
