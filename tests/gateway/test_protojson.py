"""The gateway's compiled JSON mapping prints every contract message as json_format does.

Random messages of every type in the contract (every field kind: maps, oneofs, repeated,
enums with unknown numbers, 64-bit integers, non-finite floats, bytes, nested and
well-known types) print to the same JSON as `MessageToDict` with fields without presence
printed, keys in the same order, and the encoded body decodes to it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.jsonpb import to_json, to_json_bytes
from gen.gpu.v1 import gpu_pb2
from gen.meeting.v1 import (
    api_keys_pb2,
    exports_pb2,
    live_audio_pb2,
    meeting_pb2,
    meeting_service_pb2,
    search_pb2,
    speakers_pb2,
    user_events_pb2,
)
from gen.mesh.v1 import errors_pb2

_FILES = (
    api_keys_pb2,
    exports_pb2,
    live_audio_pb2,
    meeting_pb2,
    meeting_service_pb2,
    search_pb2,
    speakers_pb2,
    user_events_pb2,
    errors_pb2,
    gpu_pb2,
)
_MAX_DEPTH = 3
_INTS = {
    FieldDescriptor.CPPTYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: st.integers(0, 2**64 - 1),
}


def _all_messages() -> list[Descriptor]:
    found: list[Descriptor] = []

    def walk(descriptor: Descriptor) -> None:
        if descriptor.GetOptions().map_entry:
            return
        found.append(descriptor)
        for nested in descriptor.nested_types:
            walk(nested)

    for module in _FILES:
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            walk(descriptor)
    return found


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    cpp = field.cpp_type
    if cpp in _INTS:
        return _INTS[cpp]
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if cpp == FieldDescriptor.CPPTYPE_DOUBLE:
        return st.floats()
    if cpp == FieldDescriptor.CPPTYPE_FLOAT:
        return st.floats(width=32)
    if cpp == FieldDescriptor.CPPTYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        # An open enum holds numbers it does not name (a newer peer's values).
        unknown = [] if field.enum_type.is_closed else [max(numbers) + 7]
        return st.sampled_from(numbers + unknown)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=12)
    return st.text(st.characters(codec="utf-8"), max_size=12)


def _fill(draw: st.DrawFn, message: Any, depth: int) -> None:
    descriptor: Descriptor = message.DESCRIPTOR
    full_name = descriptor.full_name
    if full_name == "google.protobuf.Timestamp":
        message.seconds = draw(st.integers(-62135596800, 253402300799))
        exact = st.sampled_from([0, 1000, 120_000_000, 999_999_999])
        message.nanos = draw(exact | st.integers(0, 10**9 - 1))
        return
    if full_name == "google.protobuf.Duration":
        seconds = draw(st.integers(-315576000000, 315576000000))
        nanos = draw(st.sampled_from([0, 5_000_000, 999_999_999]))
        message.seconds, message.nanos = seconds, -nanos if seconds < 0 else nanos
        return
    chosen_oneofs = {o.name: draw(st.sampled_from([None, *o.fields])) for o in descriptor.oneofs}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen_oneofs.get(oneof.name) is not field:
            continue
        if oneof is None and not draw(st.booleans()):
            continue
        _fill_field(draw, message, field, depth)


def _fill_field(draw: st.DrawFn, message: Message, field: FieldDescriptor, depth: int) -> None:
    target: Any = getattr(message, field.name)
    sub = field.message_type
    if sub is not None and sub.GetOptions().map_entry:
        key_field, value_field = sub.fields_by_name["key"], sub.fields_by_name["value"]
        for key in draw(st.lists(_scalar(key_field), max_size=3, unique=True)):
            if value_field.message_type is not None:
                if depth < _MAX_DEPTH:
                    _fill(draw, target[key], depth + 1)
                else:
                    target[key].Clear()  # an empty message, still an entry
            else:
                target[key] = draw(_scalar(value_field))
        return
    if sub is not None:
        if depth >= _MAX_DEPTH:
            return
        if field.is_repeated:
            for _ in range(draw(st.integers(0, 2))):
                _fill(draw, target.add(), depth + 1)
        else:
            target.SetInParent()
            _fill(draw, target, depth + 1)
        return
    if field.is_repeated:
        target.extend(draw(st.lists(_scalar(field), max_size=3)))
    else:
        setattr(message, field.name, draw(_scalar(field)))


@st.composite
def _messages(draw: st.DrawFn) -> Message:
    descriptor = draw(st.sampled_from(_all_messages()))
    message = message_factory.GetMessageClass(descriptor)()
    _fill(draw, message, 0)
    return message


def _expected(message: Message) -> Any:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_messages())
def test_prints_as_json_format_does(message: Message) -> None:
    try:
        expected = _expected(message)
    except (json_format.SerializeToJsonError, ValueError) as error:
        with pytest.raises(type(error)):
            to_json(message)
        return
    printed = to_json(message)
    # Order-sensitive, and True and 1 differ: the same text, not only equal values.
    assert json.dumps(printed) == json.dumps(expected)
    assert orjson.loads(to_json_bytes(message)) == json.loads(json.dumps(expected))


def test_every_contract_message_is_covered() -> None:
    names = {d.full_name for d in _all_messages()}
    assert "meeting.v1.GetMeetingResponse" in names
    assert "meeting.v1.TranscriptEvent" in names
    assert len(names) > 50
