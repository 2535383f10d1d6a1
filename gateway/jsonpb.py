"""Protobuf messages to and from JSON, one way for the whole gateway.

Field names go out in lowerCamelCase (the protobuf JSON mapping's default); both
lowerCamelCase and the proto's snake_case names are accepted in. Fields with no presence are
always written, so clients see `"title": ""` rather than a missing key. Enums are written by
name, 64-bit integers as strings, timestamps as RFC 3339 and durations as "1.5s".
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from contract_errors.meeting import invalid_field

_FIELD_IN_MESSAGE = re.compile(r'no field named "([^"]+)"|parse (\w+) field|field "?([\w.]+)"?')


def to_json(message: Message) -> dict[str, Any]:
    """Returns the JSON object of a message.

    Args:
        message: Any protobuf message.

    Returns:
        A dict ready for `json.dumps`.
    """
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def to_json_text(message: Message) -> str:
    """Returns a message as compact one-line JSON (for SSE `data:` and WebSocket frames).

    Args:
        message: Any protobuf message.

    Returns:
        The JSON text.
    """
    return json.dumps(to_json(message), separators=(",", ":"))


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
        HttpError: 400 naming the parameter.
    """
    if not (value.isascii() and value.isdigit()) or int(value) > maximum:
        raise invalid_field(field, f"{field} must be an integer from 0 to {maximum}")
    return int(value)


def merge_json(value: Any, message: Message, where: str) -> None:
    """Merges a decoded JSON value into a message, rejecting unknown fields and bad types.

    Args:
        value: The decoded JSON.
        message: The message to fill.
        where: How the value is named in errors ("body", "query").

    Raises:
        HttpError: 400 naming the field that is unknown or has the wrong type.
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


def decode_json(raw: bytes) -> Any:
    """Decodes a JSON request body.

    Args:
        raw: The body bytes.

    Returns:
        The decoded value.

    Raises:
        HttpError: 400 when the body is not UTF-8 JSON.
    """
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise invalid_field("body", f"body is not valid JSON: {error}") from None
