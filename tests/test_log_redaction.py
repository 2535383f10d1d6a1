"""No secret in any log line: the logging layer masks credentials in every record, and the
suite's leak check fails a test that lets one through."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh_common.logging import logger, redact
from tests.support.leak_check import LogCapture
from tests.support.meeting import make_token
from tests.support.secrets import leaks_in, register_secret

TOKEN = make_token("redacted-user")
SIGNATURE = TOKEN.rsplit(".", 1)[1]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"b'Authorization: Bearer {TOKEN}\\x01'", "b'Authorization: ***'"),
        ("{'Authorization': 'Basic dXNlcjpwYXNz', 'Host': 'x'}", "{'Authorization': '***', "),
        ("(('authorization', 'Bearer abc'),)", "(('authorization', '***'),)"),
        ("AUTHORIZATION: Basic dXNlcjpwYXNz", "AUTHORIZATION: ***"),
        ("sent bearer abc.def-ghi to the node", "sent bearer *** to the node"),
        (f"GET /v1/meetings/m/events?access_token={TOKEN}&x=1", "access_token=***&x=1"),
        (f"b'GET /x?access_token={TOKEN}\\x7f HTTP/1.1'", "access_token=*** HTTP/1.1'"),
        (f"token {TOKEN} refused", "token *** refused"),
        (f"signature cut by a control byte {TOKEN}\\x01x", "byte ***"),
        ("key mm_0123456789abcdefghijABCDEF used", "key mm_*** used"),
        ("signed with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "signed with whsec_***"),
        ("postgresql://mesh:hunter2@db:5432/mesh", "postgresql://mesh:***@db:5432/mesh"),
        ("postgresql+asyncpg://u:p%40ss@h/db?x=1", "postgresql+asyncpg://u:***@h/db?x=1"),
    ],
)
def test_every_kind_of_credential_is_masked_and_what_names_it_stays(text: str, masked: str) -> None:
    redacted = redact(text)
    assert masked in redacted
    assert SIGNATURE not in redacted
    assert redact(redacted) == redacted


@pytest.mark.parametrize(
    "text",
    [
        "POST /v1/meetings 201",
        "missing authorization header",
        "http://127.0.0.1:8080/v1/meetings?page_size=2",
        "postgresql://postgres@127.0.0.1:5432/test_0123",
        "mm_short and whsec_short",
    ],
)
def test_text_without_credentials_is_returned_as_it_is(text: str) -> None:
    assert redact(text) is text


@pytest.fixture
def log_lines() -> Iterator[LogCapture]:
    capture = LogCapture()
    capture.install()
    try:
        yield capture
    finally:
        capture.uninstall()


def _fail_with(token: str) -> None:
    raise ValueError(f"Invalid header value char: b'Authorization: Bearer {token}'")


def test_loguru_messages_fields_and_tracebacks_are_redacted(log_lines: LogCapture) -> None:
    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(str(message)), format="{message} {extra}")
    try:
        logger.bind(dsn="postgresql://u:pw@h/db", header=f"Bearer {TOKEN}").info("got {}", TOKEN)
        try:
            _fail_with(TOKEN)
        except ValueError:
            logger.exception("request failed")
    finally:
        logger.remove(sink)
    rendered = "".join(seen)
    assert "got *** " in rendered and "u:***@h" in rendered and "'Bearer ***'" in rendered
    # The traceback is printed, without the token and without frame variables.
    assert "ValueError: Invalid header value char: b'Authorization: ***'" in rendered
    assert SIGNATURE not in rendered
    assert leaks_in(rendered + log_lines.take()) == []


def test_standard_library_records_are_redacted_with_their_tracebacks(
    log_lines: LogCapture,
) -> None:
    server = logging.getLogger("aiohttp.server")
    server.error("Error handling %s", f"/events?access_token={TOKEN}")
    try:
        _fail_with(TOKEN)
    except ValueError as error:
        server.exception("Error handling request from %s", "127.0.0.1", exc_info=error)
    text = log_lines.take()
    assert "access_token=***" in text
    assert "b'Authorization: ***'" in text
    assert SIGNATURE not in text


def test_the_scanner_finds_a_minted_token_and_any_credential_shaped_value() -> None:
    secret = register_secret("plain-secret-0123456789")
    assert leaks_in(f"cut short: ...{SIGNATURE} ...")  # a minted token's signature alone
    assert leaks_in(f"password was {secret}")  # a registered secret of no known shape
    assert leaks_in("Authorization: Basic dXNlcjpwYXNz")  # minted elsewhere, caught by shape
    assert leaks_in(redact(f"Authorization: Bearer {TOKEN}")) == []


def test_a_test_that_leaks_a_token_fails_the_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    pytester.makeconftest('pytest_plugins = ["tests.support.leak_check"]')
    pytester.makepyfile(
        """
        from tests.support.meeting import make_token

        def test_prints_a_token():
            print("token:", make_token("leaky"))

        def test_keeps_it_to_itself():
            make_token("quiet")
        """
    )
    # The inner run must not print the captured token itself: this test's output is scanned.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--show-capture=no")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*a secret reached a log line or captured output*"])
