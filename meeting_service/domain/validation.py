"""Checks on request fields, each raising the domain error a caller can act on."""

from __future__ import annotations

import re
import uuid

from meeting_service.errors import invalid_field

TITLE_MAX_CHARS = 200
REQUEST_ID_MAX_CHARS = 64
MAX_EXPECTED_SPEAKERS = 100
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def meeting_id(value: str, field: str = "meeting_id") -> uuid.UUID:
    """Parses a meeting id.

    Args:
        value: The id as sent.
        field: The request field it came from, for the error.

    Returns:
        The id.

    Raises:
        MeshError: INVALID_FIELD when empty or not a UUID.
    """
    if not value:
        raise invalid_field(field, f"{field} is required")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise invalid_field(field, f"{field} must be a UUID") from None


def title(value: str) -> str:
    """Checks a title (at most 200 characters)."""
    if len(value) > TITLE_MAX_CHARS:
        raise invalid_field("title", f"title is longer than {TITLE_MAX_CHARS} characters")
    return plain_text(value, "title")


def plain_text(value: str, field: str) -> str:
    """Checks that a string holds no NUL character, which PostgreSQL text cannot store."""
    if "\x00" in value:
        raise invalid_field(field, f"{field} must not contain a NUL character")
    return value


def language(value: str) -> str:
    """Checks a language code (BCP-47 shaped, or empty for "detect")."""
    if value and not _LANGUAGE.fullmatch(value):
        raise invalid_field("language", "language must be a BCP-47 code such as 'en' or 'pt-BR'")
    return value


def expected_speakers(value: int) -> int:
    """Checks a speaker count (0 for unknown)."""
    if not 0 <= value <= MAX_EXPECTED_SPEAKERS:
        raise invalid_field(
            "expected_speakers", f"expected_speakers must be 0 to {MAX_EXPECTED_SPEAKERS}"
        )
    return value


def request_id(value: str) -> str | None:
    """Checks an idempotency key; empty means none."""
    if len(value) > REQUEST_ID_MAX_CHARS:
        raise invalid_field(
            "request_id", f"request_id is longer than {REQUEST_ID_MAX_CHARS} characters"
        )
    return plain_text(value, "request_id") or None


def sha256(value: str) -> str:
    """Checks a declared SHA-256 (lowercase hex, or empty for none)."""
    if value and not _SHA256.fullmatch(value):
        raise invalid_field("sha256", "sha256 must be 64 lowercase hexadecimal characters")
    return value
