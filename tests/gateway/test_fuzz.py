"""Property-based fuzzing of the gateway from its own OpenAPI document (schemathesis).

Schemathesis generates requests from the document the app serves at `/openapi.json`,
valid ones and invalid ones, sends them to the real app in front of a real meeting_service
and PostgreSQL, and checks every answer: never a 5xx; the status code, headers, content type
and body are ones the document declares for the operation; a request the document calls
valid is not refused with 400; a request without the token is refused with 401.

Two passes: every operation with the meeting ids schemathesis makes up (which exist for
nobody, so the meeting routes answer 404 once the parameters are valid), and the routes of
one meeting on a meeting that exists, a fresh one for each request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case

from gateway.openapi import build_openapi
from meeting_service.db.database import Database
from meeting_service.server import run_meeting_service
from tests.support.gateway import bearer, gateway_settings, run_gateway
from tests.support.meeting import TEST_JWT_SECRET, meeting_settings

START_WITHIN = 60.0
CALL_WITHIN = 10.0
FUZZ_USER = "fuzz-user"
AS_FUZZ_USER = bearer(FUZZ_USER)


class _ThreadedMesh:
    """meeting_service and the gateway, served by an event loop in a thread of their own.

    Schemathesis calls the API synchronously (with requests) from the test's thread, so the
    servers cannot run on the test's event loop, which does not run during a sync test.
    """

    def __init__(self, database_url: str, data_dir: Path) -> None:
        self.database_url = database_url
        self.data_dir = data_dir
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="fuzzed-gateway", daemon=True)

    def start(self) -> str:
        self._thread.start()
        if not self._ready.wait(START_WITHIN):
            raise TimeoutError("the fuzzed gateway did not start")
        if self._error is not None:
            raise RuntimeError("the fuzzed gateway failed to start") from self._error
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(START_WITHIN)
        assert not self._thread.is_alive(), "the fuzzed gateway did not stop"

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        service_settings = meeting_settings(self.database_url, self.data_dir, pipeline_workers=0)
        async with run_meeting_service(
            service_settings, database=Database(self.database_url)
        ) as service:
            settings = gateway_settings(
                service.address,
                TEST_JWT_SECRET,
                upload_chunk_bytes=64 * 1024,
                max_upload_bytes=16 * 1024 * 1024,
                shutdown_grace_s=1.0,
                # No worker runs here: a transcription that were accepted would wait in vain.
                openai_wait_s=2.0,
            )
            async with run_gateway(settings) as gateway:
                self.url = gateway.url
                self._ready.set()
                await self._stop.wait()


@pytest.fixture(scope="module")
def fuzzed_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a gateway in front of a meeting_service on the module's database."""
    mesh = _ThreadedMesh(database_url, tmp_path_factory.mktemp("fuzz-meeting-service"))
    url = mesh.start()
    try:
        yield url
    finally:
        mesh.stop()


CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # The gateway reads JSON with the protobuf JSON mapping, which accepts more
            # than the canonical form the document describes (null for a default,
            # numbers for 64-bit integers, snake_case names), so "a request outside the
            # schema was accepted" is by design. Invalid requests are still sent, and
            # every other check holds for them, "no 5xx" first.
            "negative_data_rejection": {"enabled": False},
        },
        "operations": [
            {
                # A page token is opaque and issued by the server: one made up is rightly
                # refused (400), however well it fits the schema's `string`.
                "include-operation-id": ["ListMeetings", "SearchTranscripts"],
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
            },
            {
                # The same of a delivery page token, on an endpoint that may not exist.
                "include-operation-id": "ListWebhookDeliveries",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}
                },
            },
            {
                # Before the recording is processed there is no transcript and no summary:
                # 400 (FAILED_PRECONDITION, "the meeting is in the wrong state").
                "include-operation-id": ["GetTranscript", "GetSummary"],
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404"]}
                },
            },
            {
                # Bytes that are not a recording the service can decode are refused with
                # its 400; the size limit is the deployment's (`max_upload_bytes`), not the
                # document's, so an offset past it is 413 before any byte is read.
                "include-operation-id": ["UploadAudio", "ResumeUpload"],
                "checks": {
                    "positive_data_acceptance": {
                        "expected-statuses": ["2xx", "400", "404", "409", "413"]
                    }
                },
            },
            {
                # Whether a URL can be delivered to is the network's answer, not the
                # document's: a host that does not resolve, or resolves to a private
                # address, is refused with 400 naming `webhook.url`.
                "include-operation-id": "CreateWebhook",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400"]}},
            },
            {
                # A random file is no recording: 400, or 413 past the deployment's limit.
                "include-operation-id": "CreateTranscription",
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "413"]}
                },
            },
            {
                # Random bytes are no recording of a voice (400 NOT_AUDIO); a profile made
                # up does not exist (404); the body's limit is the field's `max_bytes` (413).
                "include-operation-id": ["CreateVoiceProfileFromAudio", "AddVoiceAudio"],
                "checks": {
                    "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "413"]}
                },
            },
            {
                # The recognizer does not translate: every request is refused with 400.
                "include-operation-id": "CreateTranslation",
                "checks": {"positive_data_acceptance": {"expected-statuses": ["400"]}},
            },
        ],
    }
)
# The document the app serves at /openapi.json is `build_openapi(<its URL>)`. Schemathesis
# needs it when pytest collects the tests, to make one test per operation, before any server
# runs; `test_the_fuzzed_document_is_the_served_one` shows it is the same document.
# (`schemathesis.pytest.from_fixture` would load it from the server at run time, but it
# reads `Function._nodeid`, which pytest 9.2 no longer has.)
schema = schemathesis.openapi.from_dict(build_openapi(), config=CONFIG)

# Upload bodies go as the bytes generated: random bytes labelled as audio are for the service
# to refuse, not for schemathesis to refuse to send.
schemathesis.serializer.alias(
    ["audio/wav", "audio/*", "video/*", "application/offset+octet-stream"],
    "application/octet-stream",
)

FUZZ = settings(
    max_examples=15,
    deadline=None,  # a bound on the number of requests, not on their time
    suppress_health_check=list(HealthCheck),
    database=None,  # nothing written to the working tree
)


# What fuzzing found answered with 500 (or a broken stream), kept as plain cases: each is
# refused with 400 naming the parameter. `{id}` is an existing meeting of the fuzz user.
FOUND: list[tuple[str, str, dict[str, str], dict[str, str | bytes], Any, str]] = [
    # "²" is a digit to str.isdigit() but no number to int().
    ("GET", "/v1/meetings/{id}/events", {"after": "²"}, {}, None, "after"),
    # (headers as UTF-8 bytes: requests would send a str in Latin-1)
    ("GET", "/v1/meetings/{id}/events", {}, {"Last-Event-ID": "²".encode()}, None, "Last-Event-ID"),
    ("GET", "/v1/meetings/{id}/live", {"sample_rate": "²"}, {}, None, "sample_rate"),
    # Numbers too large for the protobuf field they go to.
    ("GET", "/v1/meetings/{id}/live", {"sample_rate": str(2**31)}, {}, None, "sample_rate"),
    ("GET", "/v1/meetings/{id}/events", {"after": str(2**63)}, {}, None, "after"),
    (
        "PATCH",
        "/v1/meetings/{id}/audio",
        {},
        {"Upload-Offset": "0", "Upload-Length": str(2**63), "Content-Type": "audio/wav"},
        b"x",
        "Upload-Length",
    ),
    (
        "PATCH",
        "/v1/meetings/{id}/audio",
        {},
        {"Upload-Offset": "²".encode(), "Content-Type": "audio/wav"},
        b"x",
        "Upload-Offset",
    ),
    # Text PostgreSQL cannot store.
    ("POST", "/v1/meetings", {}, {}, {"title": "a\x00b"}, "title"),
    ("POST", "/v1/meetings", {"requestId": "a\x00b"}, {}, {}, "requestId"),
    ("PATCH", "/v1/meetings/{id}", {}, {}, {"title": "a\x00b"}, "title"),
]


@pytest.mark.parametrize(
    ("method", "path", "params", "headers", "body", "field"),
    FOUND,
    ids=[f"{case[0]} {case[1]} {case[5]}" for case in FOUND],
)
def test_what_fuzzing_found_is_refused_with_400(
    fuzzed_url: str,
    method: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str | bytes],
    body: Any,
    field: str,
) -> None:
    created = requests.post(
        f"{fuzzed_url}/v1/meetings", json={}, headers=AS_FUZZ_USER, timeout=CALL_WITHIN
    )
    url = fuzzed_url + path.format(id=created.json()["meeting"]["id"])
    content = {"data": body} if isinstance(body, bytes) else {"json": body}
    answer = requests.request(
        method,
        url,
        params=params,
        headers={**AS_FUZZ_USER, **headers},
        timeout=CALL_WITHIN,
        **content,
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["details"][0]["metadata"]["field"] == field, error


def test_the_fuzzed_document_is_the_served_one(fuzzed_url: str) -> None:
    served = requests.get(f"{fuzzed_url}/openapi.json", timeout=CALL_WITHIN).json()
    assert served.pop("servers") == [{"url": fuzzed_url}]
    assert served == schema.raw_schema


# The caller's feed (`/v1/events`) is an endless event stream for every caller, which
# schemathesis would read until its timeout; test_browser.py tests it, its refusals too.
@schema.exclude(path_regex=r"^/v1/events$").parametrize()
@FUZZ
def test_every_operation_holds_to_the_document(case: Case[Any], fuzzed_url: str) -> None:
    case.call_and_validate(base_url=fuzzed_url, headers=AS_FUZZ_USER, timeout=CALL_WITHIN)


# On a meeting that exists, two routes are no request-response: `events` is an endless
# event stream (schemathesis would read each until its timeout) and `live` a WebSocket,
# which plain HTTP cannot open (the upgrade is refused with 400). Both are fuzzed above, up
# to the ownership check that precedes the stream, and tested in test_events.py and
# test_live.py.
# (A document of its own: schemathesis does not apply `include` filters to a schema loaded
# with a config that has per-operation settings.)
_MEETING_ROUTES = {
    path: item
    for path, item in build_openapi()["paths"].items()
    if path.startswith("/v1/meetings/{meeting_id}") and not path.endswith(("/events", "/live"))
}
ON_A_MEETING = schemathesis.openapi.from_dict(
    {**build_openapi(), "paths": _MEETING_ROUTES}, config=CONFIG
)


@ON_A_MEETING.parametrize()
@settings(FUZZ, max_examples=8)
def test_the_routes_of_a_meeting_hold_to_the_document_on_a_meeting_that_exists(
    case: Case[Any], fuzzed_url: str
) -> None:
    created = requests.post(
        f"{fuzzed_url}/v1/meetings", json={}, headers=AS_FUZZ_USER, timeout=CALL_WITHIN
    )
    assert created.status_code == 201, created.text
    case.path_parameters = {
        **(case.path_parameters or {}),
        "meeting_id": created.json()["meeting"]["id"],
    }
    case.call_and_validate(base_url=fuzzed_url, headers=AS_FUZZ_USER, timeout=CALL_WITHIN)
