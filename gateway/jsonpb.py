"""Protobuf messages to and from JSON, one way for the whole gateway.

Field names go out in lowerCamelCase (the protobuf JSON mapping's default); both
lowerCamelCase and the proto's snake_case names are accepted in. Fields with no presence are
always written, so clients see `"title": ""` rather than a missing key. Enums are written by
name, 64-bit integers as strings, timestamps as RFC 3339 and durations as "1.5s".

Request bodies are read here too (`read_json_body`, `read_body`), within limits of size,
content coding, nesting and number length that answer a hostile body with 400 or 413, never
500.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

import orjson
from aiohttp import hdrs, web
from google.protobuf import json_format
from google.protobuf.message import Message

from contract_errors.meeting import MeetingError, invalid_field
from gateway import state
from gateway.http_errors import HttpError, request_timeout
from gateway.protojson import message_to_json

_FIELD_IN_MESSAGE = re.compile(r'no field named "([^"]+)"|parse (\w+) field|field "?([\w.]+)"?')

# Deeper than any request message nests, and far shallower than the recursion limit of the
# code that walks a decoded value (`_path_to_nul`, `json_format`).
MAX_JSON_DEPTH = 32
# Room for any int64 or double as JSON writes them; longer digit strings only cost time
# (`int` is quadratic in the digits).
MAX_JSON_NUMBER_CHARS = 64
# The codings aiohttp's parser decodes (br and zstd only with their extras installed;
# without them reading the body fails, and is refused like any undecodable body).
_CONTENT_CODINGS = frozenset({"identity", "gzip", "deflate", "br", "zstd"})


def to_json(message: Message) -> dict[str, Any]:
    """Returns the JSON object of a message.

    Args:
        message: Any protobuf message.

    Returns:
        A dict ready for a JSON encoder.
    """
    return cast(dict[str, Any], message_to_json(message))


def to_json_bytes(message: Message) -> bytes:
    """Returns a message as compact one-line UTF-8 JSON (REST bodies, SSE `data:` lines).

    Args:
        message: Any protobuf message.

    Returns:
        The JSON text, encoded.
    """
    return orjson.dumps(message_to_json(message))


def json_body(
    message: Message, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Returns the JSON response of a message.

    Args:
        message: The message answered.
        status: The HTTP status.
        headers: Headers besides `Content-Type`.

    Returns:
        The response (`application/json; charset=utf-8`, as `web.json_response` answers).
    """
    return web.Response(
        body=to_json_bytes(message),
        status=status,
        headers=headers,
        content_type="application/json",
        charset="utf-8",
    )


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def non_negative_int(value: str, field: str, maximum: int = INT64_MAX) -> int:
    """Parses a header or query parameter that holds a non-negative decimal integer.

    Only ASCII digits count ("²" is a digit to `str.isdigit` but no number), and the value
    must fit the protobuf field it goes to.

    Args:
        value: The text as sent.
        field: The parameter's name, for the error.
        maximum: The largest value the field holds.

    Returns:
        The number.

    Raises:
        MeetingError: INVALID_FIELD (400) naming the parameter.
    """
    digits_ok = value.isascii() and value.isdigit() and len(value) <= len(str(maximum))
    if not digits_ok or int(value) > maximum:
        raise invalid_field(field, f"{field} must be an integer from 0 to {maximum}")
    return int(value)


def merge_json(value: Any, message: Message, where: str) -> None:
    """Merges a decoded JSON value into a message, rejecting unknown fields and bad types.

    Args:
        value: The decoded JSON.
        message: The message to fill.
        where: How the value is named in errors ("body", "query").

    Raises:
        MeetingError: INVALID_FIELD (400) naming the field that is unknown or has the wrong type.
    """
    if not isinstance(value, dict):
        raise invalid_field(where, f"{where} must be a JSON object")
    nul = _path_to_nul(value)
    if nul is not None:
        # Valid JSON and a valid protobuf string, but no text PostgreSQL can store.
        raise invalid_field(nul, f"invalid {where}: {nul} contains a NUL character")
    try:
        json_format.ParseDict(value, message)
    except json_format.ParseError as error:
        text = str(error).split("\n", 1)[0]
        match = _FIELD_IN_MESSAGE.search(text)
        field = next((g for g in match.groups() if g), where) if match else where
        raise invalid_field(field, f"invalid {where}: {text}") from None
    except (ValueError, TypeError, OverflowError) as error:
        raise invalid_field(where, f"invalid {where}: {error}") from None


def _path_to_nul(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding U+0000 in a JSON value."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            if "\x00" in str(key):
                return here
            found = _path_to_nul(item, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for item in value:
            found = _path_to_nul(item, path)
            if found is not None:
                return found
    return None


async def read_json_body(request: web.Request) -> Any:
    """Reads and decodes a JSON request body, within the application's `client_max_size`.

    Args:
        request: The HTTP request.

    Returns:
        The decoded value; an empty object for an empty body.

    Raises:
        MeetingError, HttpError: INVALID_FIELD (400) when the body cannot be decoded.
        web.HTTPRequestEntityTooLarge: The body is longer than the limit.
    """
    raw = await read_body(request)
    return decode_json(raw) if raw.strip() else {}


async def read_body(request: web.Request, limit: int | None = None) -> bytes:
    """Reads a whole request body, refusing one over a size limit.

    A body whose declared length is over the limit is refused before any of it is read.

    Args:
        request: The HTTP request.
        limit: Most bytes of the (decoded) body; the application's `client_max_size` by
            default.

    Returns:
        The body.

    Raises:
        MeetingError, HttpError: INVALID_FIELD (400) when the body cannot be decoded.
        web.HTTPRequestEntityTooLarge: The body is longer than the limit.
    """
    if limit is None:
        limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    coding = request.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    if coding not in _CONTENT_CODINGS:
        raise invalid_field("body", f"unsupported Content-Encoding {coding!r}")
    within_s = state.settings(request).body_timeout_s
    # A clone reads the same body under its own limit.
    reader = request if limit == request.client_max_size else request.clone(client_max_size=limit)
    try:
        async with asyncio.timeout(within_s):
            return await reader.read()
    except TimeoutError:
        request.content.feed_eof()  # the rest is not waited for; the connection closes
        raise request_timeout("the request body", within_s) from None
    except web.RequestPayloadError:
        # Nothing more of this body can be read: ending it keeps aiohttp from draining it
        # after the answer (which fails again, and logs), and the connection is closed.
        request.content.feed_eof()
        raise HttpError(
            invalid_field("body", f"body cannot be decoded as {coding}"),
            {hdrs.CONNECTION: "close"},
        ) from None


def decode_json(raw: bytes) -> Any:
    """Decodes a JSON document.

    Numbers longer than `MAX_JSON_NUMBER_CHARS` and nesting deeper than `MAX_JSON_DEPTH` are
    refused, so no document costs more than its length to decode and walk.

    Args:
        raw: The body bytes.

    Returns:
        The decoded value.

    Raises:
        MeetingError: INVALID_FIELD (400) when the body is not UTF-8 JSON within those limits.
    """
    try:
        value = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise invalid_field("body", f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise _too_deep() from None
    # A document with few brackets cannot nest deeply: most bodies skip the walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
        raise _too_deep()
    return value


def _too_deep() -> MeetingError:
    return invalid_field("body", f"body nests deeper than {MAX_JSON_DEPTH} levels")


def _bounded_number[T](convert: Callable[[str], T]) -> Callable[[str], T]:
    def parse(text: str) -> T:
        if len(text) > MAX_JSON_NUMBER_CHARS:
            raise invalid_field(
                "body", f"body holds a number longer than {MAX_JSON_NUMBER_CHARS} characters"
            )
        return convert(text)

    return parse


_parse_int = _bounded_number(int)
_parse_float = _bounded_number(float)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects in a decoded value nest more than `limit` levels."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False
