"""Checks on request fields, each raising the domain error a caller can act on.

The limits are the contract's (`(mesh.v1.rules)` options in proto/meeting/v1/), read from
the descriptors by mesh_common.validation.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from contract_errors.meeting import invalid_field
from gen.meeting.v1 import api_keys_pb2, meeting_pb2, meeting_service_pb2, webhooks_pb2
from mesh_common import validation as rules

_MEETING = meeting_pb2.Meeting.DESCRIPTOR.fields_by_name
# Every request field that names a meeting carries these rules (tests/test_contracts.py).
_MEETING_ID = meeting_service_pb2.GetMeetingRequest.DESCRIPTOR.fields_by_name["meeting_id"]
_REQUEST_ID = meeting_service_pb2.CreateMeetingRequest.DESCRIPTOR.fields_by_name["request_id"]
_PAGE_SIZE = meeting_service_pb2.ListMeetingsRequest.DESCRIPTOR.fields_by_name["page_size"]
_UPLOAD = meeting_service_pb2.UploadMetadata.DESCRIPTOR.fields_by_name
_PLAIN_TEXT = rules.FieldRules(plain_text=True)
_WEBHOOK_ID = webhooks_pb2.DeleteWebhookRequest.DESCRIPTOR.fields_by_name["webhook_id"]
_DELIVERIES_PAGE_SIZE = webhooks_pb2.ListWebhookDeliveriesRequest.DESCRIPTOR.fields_by_name[
    "page_size"
]
_API_KEY_NAME = api_keys_pb2.ApiKey.DESCRIPTOR.fields_by_name["name"]
_API_KEY_ID = api_keys_pb2.RevokeApiKeyRequest.DESCRIPTOR.fields_by_name["api_key_id"]


def meeting_id(value: str, field: str = "meeting_id") -> uuid.UUID:
    """Parses a meeting id.

    Args:
        value: The id as sent.
        field: The request field it came from, for the error.

    Returns:
        The id.

    Raises:
        MeetingError: INVALID_FIELD when empty or not a UUID.
    """
    _check(_MEETING_ID, value, field)
    return uuid.UUID(value)


def webhook_id(value: str, field: str = "webhook_id") -> uuid.UUID:
    """Parses the id of a webhook endpoint or delivery (`field` names it in the error).

    Raises:
        MeshError: INVALID_FIELD when empty or not a UUID.
    """
    _check(_WEBHOOK_ID, value, field)
    return uuid.UUID(value)


def webhook_page_size(value: int) -> int:
    """Checks a page size against the rules of `ListWebhookDeliveriesRequest.page_size`."""
    return _check(_DELIVERIES_PAGE_SIZE, value)


def title(value: str) -> str:
    """Checks a title against the rules of `Meeting.title`."""
    return _check(_MEETING["title"], value)


def plain_text(value: str, field: str) -> str:
    """Checks that a string holds no NUL character, which PostgreSQL text cannot store."""
    return _apply(_PLAIN_TEXT, value, field)


def language(value: str) -> str:
    """Checks a language code against the rules of `Meeting.language` (empty: "detect")."""
    return _check(_MEETING["language"], value)


def vocabulary(values: Sequence[str]) -> list[str]:
    """Checks words against the rules of `Meeting.vocabulary` and returns them.

    Blanks around each word, empty words and repeated ones are dropped first.
    """
    words = list(dict.fromkeys(word.strip() for word in values if word.strip()))
    try:
        rules.check_items(rules.rules_of(_MEETING["vocabulary"]), words, "vocabulary")
    except rules.FieldViolation as violation:
        raise invalid_field(violation.field, violation.message) from None
    return words


def expected_speakers(value: int) -> int:
    """Checks a speaker count against the rules of `Meeting.expected_speakers`."""
    return _check(_MEETING["expected_speakers"], value)


def request_id(value: str) -> str | None:
    """Checks an idempotency key; empty means none."""
    return _check(_REQUEST_ID, value) or None


def sha256(value: str) -> str:
    """Checks a declared SHA-256 (lowercase hex, or empty for none)."""
    return _check(_UPLOAD["sha256"], value)


def page_size(value: int) -> int:
    """Checks a page size against the rules of `ListMeetingsRequest.page_size`."""
    return _check(_PAGE_SIZE, value)


def content_type(value: str) -> str:
    """Drops the blanks around an upload's media type and checks what is left, which it returns."""
    return _check(_UPLOAD["content_type"], value.strip(), "metadata.content_type")


def api_key_name(value: str) -> str:
    """Checks an API key's name against the rules of `ApiKey.name`."""
    return _check(_API_KEY_NAME, value, "api_key.name")


def api_key_id(value: str) -> uuid.UUID:
    """Parses an API key id under the rules of `RevokeApiKeyRequest.api_key_id`."""
    _check(_API_KEY_ID, value)
    return uuid.UUID(value)


def check(message: Message, name: str, path: str) -> None:
    """Checks one field of a request message against its rules.

    Args:
        message: The request (or the part of it that holds the field).
        name: The field's name in that message.
        path: The field's path in the request, for the error.

    Raises:
        MeetingError: INVALID_FIELD.
    """
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    _check(descriptor.fields_by_name[name], getattr(message, name), path)


def _check[T: (str, bytes, int)](descriptor: FieldDescriptor, value: T, path: str = "") -> T:
    return _apply(rules.rules_of(descriptor), value, path or descriptor.name)


def _apply[T: (str, bytes, int)](field_rules: rules.FieldRules, value: T, path: str) -> T:
    try:
        rules.check_value(field_rules, value, path)
    except rules.FieldViolation as violation:
        raise invalid_field(violation.field, violation.message) from None
    return value
