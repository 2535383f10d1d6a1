"""Checks values against the field rules a contract declares (proto/mesh/v1/validate.proto).

The rules live on the fields as `(mesh.v1.rules)` options; this module reads them from any
descriptor, so a service checks what its contract states and nothing else. A broken rule is
a `FieldViolation` naming the field; each service turns it into its own error.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Sequence
from typing import cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gen.mesh.v1 import validate_pb2

FieldRules = validate_pb2.FieldRules


class FieldViolation(ValueError):
    """A value that breaks its field's rules.

    Attributes:
        field: The path of the field in the request ("metadata.content_type").
        message: What is wrong, in words that name the field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def rules_of(field: FieldDescriptor) -> FieldRules:
    """Returns the rules declared on a field (empty rules when it declares none)."""
    options = field.GetOptions()
    if not options.HasExtension(validate_pb2.rules):
        return FieldRules()
    rules: FieldRules = options.Extensions[validate_pb2.rules]
    return rules


def check_value(rules: FieldRules, value: str | bytes | int, path: str) -> None:
    """Checks one value against rules.

    Args:
        rules: The rules.
        value: A string, bytes or an integer, as the field holds it.
        path: How the field is named in a violation.

    Raises:
        FieldViolation: The first rule the value breaks.
    """
    if isinstance(value, str):
        _check_text(rules, value, path)
        return
    if isinstance(value, bytes):
        _check_bytes(rules, value, path)
        return
    if rules.HasField("min") and rules.HasField("max") and not rules.min <= value <= rules.max:
        raise FieldViolation(path, f"{path} must be {rules.min} to {rules.max}")
    if rules.HasField("min") and value < rules.min:
        raise FieldViolation(path, f"{path} must be {rules.min} or more")
    if rules.HasField("max") and value > rules.max:
        raise FieldViolation(path, f"{path} must be {rules.max} or less")


def check_items(rules: FieldRules, values: Sequence[str | int], path: str) -> None:
    """Checks the values of a repeated field: their number, then each one.

    Args:
        rules: The field's rules.
        values: Its values.
        path: How the field is named in a violation; an item is `path[i]`.

    Raises:
        FieldViolation: The first rule broken.
    """
    if rules.HasField("max_items") and len(values) > rules.max_items:
        raise FieldViolation(path, f"{path} holds more than {rules.max_items} items")
    for position, value in enumerate(values):
        check_value(rules, value, f"{path}[{position}]")


def check_field(field: FieldDescriptor, value: str | bytes | int, path: str | None = None) -> None:
    """Checks a value against the rules of the field it is meant for.

    Args:
        field: The field's descriptor.
        value: The value.
        path: How the field is named in a violation; its name by default.

    Raises:
        FieldViolation: The first rule the value breaks.
    """
    check_value(rules_of(field), value, path or field.name)


def check_message(message: Message, prefix: str = "") -> None:
    """Checks every field of a message, and of the messages it holds, against its rules.

    Args:
        message: The message.
        prefix: The message's own path, for nested messages ("metadata.").

    Raises:
        FieldViolation: The first rule a field breaks, named by its dotted path.
    """
    descriptor = cast(Descriptor, message.DESCRIPTOR)
    for field in descriptor.fields:
        value = getattr(message, field.name)
        path = prefix + field.name
        if field.message_type is not None:
            if field.is_repeated:
                for item in value:
                    check_message(item, f"{path}.")
            elif message.HasField(field.name):
                check_message(value, f"{path}.")
            continue
        rules = rules_of(field)
        if rules == FieldRules():
            continue
        if field.has_presence and not message.HasField(field.name):
            continue  # an `optional` field left unset has no value to check
        if field.is_repeated:
            check_items(rules, list(value), path)
        elif isinstance(value, (str, bytes, int)):
            check_value(rules, value, path)


def _check_text(rules: FieldRules, value: str, path: str) -> None:
    if rules.plain_text and "\x00" in value:
        raise FieldViolation(path, f"{path} must not contain a NUL character")
    if not value:
        if rules.required:
            raise FieldViolation(path, f"{path} is required")
        return
    if rules.HasField("max_len") and len(value) > rules.max_len:
        raise FieldViolation(path, f"{path} is longer than {rules.max_len} characters")
    if rules.uuid and not _is_uuid(value):
        raise FieldViolation(path, f"{path} must be a UUID")
    if rules.pattern and not _compiled(rules.pattern).fullmatch(value):
        wanted = rules.pattern_description or f"text matching {rules.pattern}"
        raise FieldViolation(path, f"{path} must be {wanted}")


def _check_bytes(rules: FieldRules, value: bytes, path: str) -> None:
    if not value and rules.required:
        raise FieldViolation(path, f"{path} is required")
    if rules.HasField("max_bytes") and len(value) > rules.max_bytes:
        raise FieldViolation(path, f"{path} is longer than {rules.max_bytes} bytes")


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
