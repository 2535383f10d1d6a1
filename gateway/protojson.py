"""The protobuf JSON mapping, decided once per message type instead of once per field printed.

`json_format.MessageToDict` works out, for every field of every message it prints, what
kind of field it is (map, repeated, message, enum, 64-bit...). `message_to_json` makes
those decisions once per message type and keeps a converter per field, so printing a
message is one pass over its set fields. The result is exactly
`MessageToDict(message, always_print_fields_with_no_presence=True)`, keys in the same order
(the set fields by number, then the unset fields without presence in declaration order);
tests/gateway/test_protojson.py holds it to that over every contract message. What it does
not specialise (well-known types other than Timestamp and Duration, extensions) it hands to
`json_format` itself.
"""

from __future__ import annotations

import base64
import datetime
import math
from collections.abc import Callable
from typing import Any, cast

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.internal import type_checkers
from google.protobuf.message import Message

Converter = Callable[[Any], Any]

_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"
# Timestamp's range (years 1 to 9999), as `Timestamp.ToJsonString` checks it.
_TIMESTAMP_SECONDS = range(-62135596800, 253402300799 + 1)
_EPOCH = datetime.datetime(1970, 1, 1)
# The other well-known types with a JSON form of their own (json_format's `_WKTJSONMETHODS`
# and wrappers): printed by json_format.
_WELL_KNOWN_PREFIX = "google.protobuf."
_INT64 = frozenset({FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64})
_PRINTERS: dict[str, Converter] = {}


def message_to_json(message: Message) -> Any:
    """Returns a message's JSON value, as `MessageToDict` with fields without presence printed.

    Args:
        message: Any protobuf message.

    Returns:
        A dict (a string or other value for a well-known type), ready for a JSON encoder.
    """
    return _printer(cast(Descriptor, message.DESCRIPTOR))(message)


def _printer(descriptor: Descriptor) -> Converter:
    found = _PRINTERS.get(descriptor.full_name)
    if found is not None:
        return found
    if descriptor.full_name == _TIMESTAMP:
        found = _timestamp
    elif descriptor.full_name == _DURATION:
        found = _to_json_string
    elif descriptor.full_name.startswith(_WELL_KNOWN_PREFIX) and descriptor.fields:
        found = _by_json_format
    else:
        found = _MessagePrinter(descriptor)  # registers itself before its fields
    _PRINTERS[descriptor.full_name] = found
    return found


def _to_json_string(message: Any) -> Any:
    # What json_format calls for Duration.
    return message.ToJsonString()


def _timestamp(message: Any) -> str:
    """`Timestamp.ToJsonString` (what json_format calls), without its float arithmetic."""
    seconds, nanos = message.seconds, message.nanos
    if seconds not in _TIMESTAMP_SECONDS or not 0 <= nanos < 1_000_000_000:
        return str(message.ToJsonString())  # raises its error
    text = (_EPOCH + datetime.timedelta(seconds=seconds)).isoformat()
    if nanos == 0:
        return text + "Z"
    if nanos % 1_000_000 == 0:
        return f"{text}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{text}.{nanos // 1000:06d}Z"
    return f"{text}.{nanos:09d}Z"


def _by_json_format(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


class _MessagePrinter:
    """Prints one message type: a converter per field (None where the value is its JSON)."""

    def __init__(self, descriptor: Descriptor) -> None:
        _PRINTERS[descriptor.full_name] = self  # a field of this very type finds it
        self._fields: dict[int, tuple[str, Converter | None]] = {}
        self._defaults: list[tuple[str, Callable[[], Any]]] = []
        for field in descriptor.fields:
            self._fields[field.number] = (field.json_name, _field_converter(field))
            if not field.has_presence:
                self._defaults.append((field.json_name, _default(field)))

    def __call__(self, message: Message) -> dict[str, Any]:
        js: dict[str, Any] = {}
        fields = self._fields
        for field, value in message.ListFields():
            entry = fields.get(field.number)
            if entry is None or field.is_extension:
                return _by_json_format(message)
            name, convert = entry
            try:
                js[name] = value if convert is None else convert(value)
            except ValueError as error:  # a well-known type with no JSON form (json_format's words)
                raise json_format.SerializeToJsonError(
                    f"Failed to serialize {field.name} field: {error}."
                ) from error
        for name, default in self._defaults:
            if name not in js:
                js[name] = default()
        return js


def _field_converter(field: FieldDescriptor) -> Converter | None:
    """The converter of a field's whole value (a list for repeated, a dict for maps)."""
    if _is_map(field):
        message_type = field.message_type
        assert message_type is not None
        value_of = _single_converter(message_type.fields_by_name["value"])
        if value_of is None:
            return lambda entries: {_map_key(k): v for k, v in entries.items()}
        return lambda entries: {_map_key(k): value_of(v) for k, v in entries.items()}
    convert = _single_converter(field)
    if field.is_repeated:
        if convert is None:
            return list
        return lambda values: [convert(v) for v in values]
    return convert


def _single_converter(field: FieldDescriptor) -> Converter | None:
    """The converter of one value of a field; None where the value is its own JSON."""
    cpp_type = field.cpp_type
    if cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        assert field.message_type is not None
        return _LazyPrinter(field.message_type)
    if cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return _enum_converter(field)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _bytes
    if cpp_type in _INT64:
        return str
    if cpp_type == FieldDescriptor.CPPTYPE_DOUBLE:
        return _double
    if cpp_type == FieldDescriptor.CPPTYPE_FLOAT:
        return _float
    return None  # str, bool, 32-bit integers


class _LazyPrinter:
    """A message field's printer, looked up on first use (message types may recurse)."""

    def __init__(self, descriptor: Descriptor) -> None:
        self._descriptor = descriptor
        self._printer: Converter | None = None

    def __call__(self, message: Message) -> Any:
        if self._printer is None:
            self._printer = _printer(self._descriptor)
        return self._printer(message)


def _enum_converter(field: FieldDescriptor) -> Converter:
    enum_type = field.enum_type
    assert enum_type is not None
    if enum_type.full_name == "google.protobuf.NullValue":
        return lambda _: None
    names = {value.number: value.name for value in enum_type.values}
    if enum_type.is_closed:

        def closed(number: int) -> str:
            name = names.get(number)
            if name is None:
                raise json_format.SerializeToJsonError(
                    "Enum field contains an integer value which can not mapped to an enum value."
                )
            return name

        return closed
    # An open enum's unknown number is printed as the number.
    return lambda number: names.get(number, number)


def _bytes(value: bytes) -> str:
    return base64.b64encode(value).decode("utf-8")


def _non_finite(value: float) -> str | None:
    if math.isinf(value):
        return "-Infinity" if value < 0.0 else "Infinity"
    if math.isnan(value):
        return "NaN"
    return None


def _double(value: float) -> float | str:
    special = _non_finite(value)
    return value if special is None else special


def _float(value: float) -> float | str:
    special = _non_finite(value)
    return type_checkers.ToShortestFloat(value) if special is None else special


def _map_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def _is_map(field: FieldDescriptor) -> bool:
    message_type = field.message_type
    return (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and message_type is not None
        and message_type.GetOptions().map_entry
    )


def _default(field: FieldDescriptor) -> Callable[[], Any]:
    """What an unset field without presence prints as (a fresh container for each)."""
    if _is_map(field):
        return dict
    if field.is_repeated:
        return list
    convert = _single_converter(field)
    value = field.default_value if convert is None else convert(field.default_value)
    return lambda: value
